"""Fakes of the media seam (sfu.calls.media) and of the edge (sfu.calls.events): no sockets.

A ``FakeEndpoint`` records the commands the control plane gives it (subscribe, pause, REMB) and
lets a test play the media side: publish tracks, send a receiver report or REMB, count bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sfu.calls.events import CallKey, Member, QualityNotice
from sfu.transport.endpoint import EndpointListener, TrackInfo
from sfu.transport.packets import ReportBlock


class FakeProducer:
    def __init__(self, owner: str, kind: str, rids: Sequence[str] = ()) -> None:
        self.id = f"{owner}:{kind}"
        self.owner = owner
        self.kind = kind
        self.octets = 0
        # simulcast: the layers' RIDs (lowest first), bytes per layer, keyframe sizes
        self.rids = list(rids)
        self.layers_octets = [0] * len(self.rids)
        self.sizes: list[tuple[int, int] | None] = [None] * max(1, len(self.rids))
        self.rembs: list[float] = []
        self.watching = False
        self.arrivals: list[tuple[float, int, int, int | None]] = []
        self.levels: list[float] = []

    def send_remb(self, kbps: float) -> None:
        self.rembs.append(kbps)

    def watch_arrivals(self) -> None:
        self.watching = True

    def take_arrivals(self) -> Sequence[tuple[float, int, int, int | None]]:
        out, self.arrivals = self.arrivals, []
        return out

    def layer_octets(self) -> Sequence[int]:
        return list(self.layers_octets)

    def layer_sizes(self) -> Sequence[tuple[int, int] | None]:
        return list(self.sizes)

    def send_layers(self, kbps: Sequence[float], seconds: float = 1.0) -> None:
        """Simulcast: each layer sends ``kbps`` for ``seconds`` (the total too)."""
        for index, rate in enumerate(kbps):
            self.layers_octets[index] += int(rate * 1000 / 8 * seconds)
        self.octets += int(sum(kbps) * 1000 / 8 * seconds)

    def take_audio_level(self) -> float | None:
        if not self.levels:
            return None
        level = sum(self.levels) / len(self.levels)
        self.levels.clear()
        return level

    def __repr__(self) -> str:
        return f"FakeProducer({self.id})"


class FakeConsumer:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.paused = False
        # simulcast: the layer asked for and (a keyframe later, here at once) forwarded
        self.target: int | None = len(producer.rids) - 1 if producer.rids else None
        self.layer: int | None = self.target

    def set_paused(self, paused: bool, now: float) -> None:
        self.paused = paused

    def set_layer(self, layer: int, now: float) -> None:
        if self.producer.rids:
            self.target = self.layer = layer


class FakeEndpoint:
    def __init__(self, endpoint_id: str, listener: EndpointListener) -> None:
        self.id = endpoint_id
        self.listener = listener
        self.producers: dict[str, FakeProducer] = {}
        self.got_media = False
        self.rtt: float | None = None
        self.started = False
        self.closed = False
        self.offers = 0
        self._consumers: dict[FakeProducer, FakeConsumer] = {}
        self._ssrc_of: dict[FakeProducer, int] = {}
        self._sent: dict[int, int] = {}
        self._reports: list[Callable[[ReportBlock, float, float | None], None]] = []
        self._rembs: list[Callable[[int, float], None]] = []
        self._feedback: list[Callable[[Sequence[tuple[int, float, int, float | None]], float],
                                      None]] = []
        self.paddings: list[tuple[float, float]] = []  # (kbps, seconds) asked for

    # -- the seam -----------------------------------------------------------------------------
    def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True
        self._reports.clear()
        self._rembs.clear()

    def renegotiate(self) -> None:
        self.offers += 1

    async def apply_answer(self, sdp: str) -> None:
        return None

    async def add_candidate(self, candidate: str, sdp_mid: str | None) -> None:
        return None

    def subscribe(self, producer: Any) -> FakeConsumer:
        consumer = self._consumers.get(producer)
        if consumer is None:
            consumer = self._consumers[producer] = FakeConsumer(producer)
            ssrc = self._ssrc_of.setdefault(producer, 1000 + len(self._ssrc_of))
            self._sent.setdefault(ssrc, 0)
        return consumer

    def unsubscribe(self, producer: Any) -> None:
        self._consumers.pop(producer, None)

    def subscribed(self) -> list[FakeProducer]:
        return list(self._consumers)

    def consumers(self) -> list[FakeConsumer]:
        return list(self._consumers.values())

    def sent_octets(self) -> Mapping[int, int]:
        return dict(self._sent)

    def listen_reports(self, listener: Callable[[ReportBlock, float, float | None], None]) -> None:
        self._reports.append(listener)

    def listen_remb(self, listener: Callable[[int, float], None]) -> None:
        self._rembs.append(listener)

    def listen_transport_feedback(
            self, listener: Callable[[Sequence[tuple[int, float, int, float | None]], float],
                                     None]) -> None:
        self._feedback.append(listener)

    retransmit = True

    @property
    def padding_ready(self) -> bool:
        return self.got_media and not self.closed

    def send_padding(self, kbps: float, seconds: float) -> None:
        self.paddings.append((kbps, seconds))

    # -- playing the media side ----------------------------------------------------------------
    def publish(self, *kinds: str) -> None:
        for kind in kinds:
            self.producers[kind] = FakeProducer(self.id, kind)
        self.listener.producers_changed(self)

    def unpublish(self, kind: str) -> None:
        del self.producers[kind]
        self.listener.producers_changed(self)

    def receives(self) -> set[str]:
        """Ids of the producers forwarded to this endpoint and not paused."""
        return {p.id for p, c in self._consumers.items() if not c.paused}

    def consumer_of(self, producer_id: str) -> FakeConsumer:
        return next(c for p, c in self._consumers.items() if p.id == producer_id)

    def send_media(self, kbps_by_producer: Mapping[str, float], seconds: float = 1.0) -> None:
        """Account ``kbps`` of each subscribed producer as sent to this endpoint."""
        for producer, ssrc in self._ssrc_of.items():
            if producer in self._consumers and not self._consumers[producer].paused:
                self._sent[ssrc] += int(kbps_by_producer.get(producer.id, 0) * 1000 / 8 * seconds)

    def report(self, fraction_lost: float, now: float, rtt: float | None = 0.05,
               kinds: tuple[str, ...] = ("audio", "video")) -> None:
        """A receiver report on every stream of ``kinds`` sent to it."""
        for producer, ssrc in self._ssrc_of.items():
            if producer in self._consumers and producer.kind in kinds:
                block = ReportBlock(ssrc=ssrc, fraction_lost=int(fraction_lost * 256),
                                    packets_lost=0, highest_seq=0, jitter=0, lsr=0, dlsr=0)
                for listener in list(self._reports):
                    listener(block, now, rtt)

    def remb(self, kbps: float, now: float) -> None:
        for listener in list(self._rembs):
            listener(int(kbps * 1000), now)


class Endpoints:
    """The endpoint factory of a test: remembers every endpoint it made."""

    def __init__(self) -> None:
        self.made: dict[str, FakeEndpoint] = {}

    def __call__(self, endpoint_id: str, listener: EndpointListener) -> FakeEndpoint:
        endpoint = self.made[endpoint_id] = FakeEndpoint(endpoint_id, listener)
        return endpoint


@dataclass
class RecordingClient:
    """A participant's client that keeps what it was told."""

    messages: list[tuple[str, Any]] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.messages]

    def last(self, kind: str) -> Any:
        return next(value for k, value in reversed(self.messages) if k == kind)

    def joined(self, me: Member, key: CallKey, others: list[Member]) -> None:
        self.messages.append(("joined", (me, key, others)))

    def offer(self, sdp: str, tracks: list[TrackInfo]) -> None:
        self.messages.append(("offer", tracks))

    def member_joined(self, member: Member) -> None:
        self.messages.append(("member_joined", member))

    def member_left(self, member: Member) -> None:
        self.messages.append(("member_left", member))

    def quality(self, notice: QualityNotice) -> None:
        self.messages.append(("quality", notice))

    def publish_layers(self, layers: dict[str, bool]) -> None:
        self.messages.append(("publish_layers", layers))

    def video_layers(self, layers: dict[str, Any]) -> None:
        self.messages.append(("video_layers", layers))

    def failed(self, code: str, message: str) -> None:
        self.messages.append(("failed", (code, message)))

    def ended(self, reason: str) -> None:
        self.messages.append(("ended", reason))

    def precall_result(self, result: dict[str, Any]) -> None:
        self.messages.append(("precall_result", result))

    def precall_upload(self, kbps: float, seconds: float) -> None:
        self.messages.append(("precall_upload", (kbps, seconds)))

    def precall_uploaded(self, total: int) -> None:
        self.messages.append(("precall_uploaded", total))


@dataclass
class RecordingEvents:
    """The server's observers, as a list of (name, details)."""

    seen: list[tuple[str, Any]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    def participant_joined(self, key: CallKey, participant: str, role: str) -> None:
        self.seen.append(("joined", (participant, role)))

    def participant_left(self, key: CallKey, participant: str, reason: str) -> None:
        self.seen.append(("left", (participant, reason)))

    def join_refused(self, role: str, code: str, ids: dict[str, str]) -> None:
        self.seen.append(("refused", (role, code, ids)))

    def quality_changed(self, participant: str, level: str) -> None:
        self.seen.append(("quality", (participant, level)))

    def estimates(self, up_kbps: float | None, down_kbps: float | None,
                  rtt: float | None) -> None:
        return None

    def first_media(self, seconds: float) -> None:
        self.seen.append(("first_media", seconds))

    def patient_waited(self, seconds: float) -> None:
        self.seen.append(("patient_waited", seconds))


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
