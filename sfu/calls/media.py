"""The media seam: what the control plane uses of an endpoint, a producer and a consumer.

In the spirit of Galene's up/down track interfaces (``conn/conn.go``): the calls, the quality
controller and the pre-call test see media only through these Protocols, and every change is a
command (subscribe, pause, cap, watch). ``sfu.transport`` implements them structurally, and the
unit tests of ``sfu.calls`` implement them with fakes that need no sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from sfu.transport.endpoint import EndpointListener
from sfu.transport.forwarder import Arrival
from sfu.transport.packets import ReportBlock

# what transport-cc feedback says of one packet sent: (transport-wide seq, send time on our
# clock, bytes, arrival time on the receiver's clock or None when lost)
Feedback = tuple[int, float, int, float | None]


class MediaProducer(Protocol):
    """One published track."""

    @property
    def id(self) -> str: ...
    @property
    def owner(self) -> str: ...  # the publishing endpoint's id (the participant id)
    @property
    def kind(self) -> str: ...  # "audio" or "video"
    @property
    def octets(self) -> int: ...  # received so far

    def send_remb(self, kbps: float) -> None:
        """Cap the publisher's rate for this track."""

    def watch_arrivals(self) -> None:
        """Start recording arrivals (bounded) for :meth:`take_arrivals`."""

    def take_arrivals(self) -> Sequence[tuple[float, int, int, int | None]]:
        """Arrivals recorded since the last call, as :class:`Arrival` tuples."""
        ...

    def take_audio_level(self) -> float | None:
        """Mean loudness (0-127) since the last call, or None without samples."""
        ...

    @property
    def rids(self) -> Sequence[str]: ...  # simulcast layers, lowest first; empty: one encoding

    def layer_octets(self) -> Sequence[int]:
        """Bytes received so far on each simulcast layer (empty: one encoding)."""
        ...

    def layer_sizes(self) -> Sequence[tuple[int, int] | None]:
        """(width, height) of each layer's last keyframe (one entry without simulcast)."""
        ...


class MediaConsumer(Protocol):
    """A producer's forwarded copy towards one subscriber."""

    @property
    def producer(self) -> MediaProducer: ...
    @property
    def paused(self) -> bool: ...

    @property
    def layer(self) -> int | None: ...  # the simulcast layer forwarded now (None: none/single)
    @property
    def target(self) -> int | None: ...  # the simulcast layer asked for (None: single)

    def set_paused(self, paused: bool, now: float) -> None: ...
    def set_layer(self, layer: int, now: float) -> None:
        """Forward this simulcast layer from its next keyframe on (nothing without simulcast)."""


class MediaEndpoint(Protocol):
    """One participant's media: a peer, its producers, the consumers towards it."""

    @property
    def id(self) -> str: ...
    @property
    def producers(self) -> Mapping[str, MediaProducer]: ...  # kind -> producer
    @property
    def got_media(self) -> bool: ...
    @property
    def rtt(self) -> float | None: ...

    def start(self) -> None: ...
    async def close(self) -> None: ...
    def renegotiate(self) -> None: ...
    async def apply_answer(self, sdp: str) -> None: ...
    async def add_candidate(self, candidate: str, sdp_mid: str | None) -> None: ...

    def subscribe(self, producer: MediaProducer) -> MediaConsumer: ...
    def unsubscribe(self, producer: MediaProducer) -> None: ...
    def subscribed(self) -> Sequence[MediaProducer]: ...
    def consumers(self) -> Sequence[MediaConsumer]: ...

    def sent_octets(self) -> Mapping[int, int]: ...  # per outgoing SSRC, so far
    def listen_reports(self, listener: Callable[[ReportBlock, float, float | None], None]) -> None: ...
    def listen_remb(self, listener: Callable[[int, float], None]) -> None: ...
    def listen_transport_feedback(
        self, listener: Callable[[Sequence[Feedback], float], None]) -> None: ...

    @property
    def padding_ready(self) -> bool: ...  # send_padding would reach the peer now

    retransmit: bool  # answer the peer's NACKs

    def send_padding(self, kbps: float, seconds: float) -> None:
        """Send padding at ``kbps`` for ``seconds`` on top of the media (a bandwidth probe);
        nothing when the peer offers no way to (no RTX stream to carry it). 0 stops it."""


# Makes the endpoint of a participant (or of a pre-call test): ``(id, listener)``. The edge
# passes one in, bound to the media settings; tests pass one that makes fakes.
EndpointFactory = Callable[[str, EndpointListener], MediaEndpoint]

__all__ = ["Arrival", "EndpointFactory", "Feedback", "EndpointListener", "MediaConsumer", "MediaEndpoint",
           "MediaProducer", "ReportBlock"]
