"""A participant's media endpoint: one peer, what it publishes, what it is sent.

Owns the WebRTC peer, the producers of the participant's own tracks, the outgoing streams
towards it, its RTCP timer and its liveness check. Negotiation is serialized here: never two
offers in flight; a change during one marks the endpoint dirty and re-offers after the answer.
Knows nothing about clinics or rooms: the owner wires endpoints together with ``subscribe``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCIceServer
from aiortc.exceptions import InvalidStateError

from sfu.errors import NegotiationError
from sfu.transport import packets as P
from sfu.transport.aiortc_glue import IceSettings, sender_ssrcs
from sfu.transport.counters import Counters
from sfu.transport.forwarder import Consumer, OutStream, Producer
from sfu.transport.peer import CLOCK_RATES, AnswerInfo, PublishInfo, SendSlot, WebRtcPeer
from sfu.transport.settings import MediaSettings, parse_port_range
from sfu.transport.simulcast import SimulcastConsumer, SimulcastTrack
from sfu.transport.transportcc import PacketResult, ReceiveHistory, SendHistory

log = logging.getLogger(__name__)


RTCP_INTERVAL = 1.0  # seconds between the endpoint's RTCP compounds (SR, RR, SDES)
PADDING_BURST_S = 0.01  # probe padding is paced in bursts this far apart
PADDING_BODY = bytes(254) + bytes([255])  # 255 bytes of padding, the last one saying so
FEEDBACK_INTERVAL = 0.1  # seconds between transport feedback to a publisher (libwebrtc: 100 ms)
ARRIVALS_PENDING_MAX = 4096  # transport-wide arrivals kept between two feedback rounds
LIVENESS_TICK = 1.0  # seconds between two checks of the connect and inactivity timeouts
# a check this much later than its tick means the server itself stalled: the excess is not
# counted against the peer (each tick still advances the timers by at least TICK + SLACK)
STALL_SLACK = 0.25


@dataclass(frozen=True)
class TrackInfo:
    mid: str
    participant: str
    kind: str


class EndpointListener:
    """What an endpoint tells its owner. Every method has a do-nothing default."""

    async def send_offer(self, endpoint: Endpoint, sdp: str, tracks: list[TrackInfo]) -> None:
        return None

    def producers_changed(self, endpoint: Endpoint) -> None:
        return None

    def failed(self, endpoint: Endpoint, reason: str) -> None:
        return None

    def first_media(self, endpoint: Endpoint) -> None:
        return None

    def connected(self, endpoint: Endpoint) -> None:
        """ICE and DTLS completed: the media connection is up."""
        return None


# a report block about one of our outgoing streams, when it arrived, the RTT it gave (if any)
ReportListener = Callable[[P.ReportBlock, float, float | None], None]
# a receiver's estimate in bit/s (REMB), when it arrived
RembListener = Callable[[int, float], None]
# what one transport feedback packet says about the packets sent (matched, in sequence order),
# when it arrived
TransportFeedbackListener = Callable[[list[PacketResult], float], None]


class Endpoint:
    def __init__(self, endpoint_id: str, settings: MediaSettings, listener: EndpointListener,
                 counters: Counters, clock: Callable[[], float] = time.monotonic) -> None:
        self.id = endpoint_id
        self.settings = settings
        self.listener = listener
        self.counters = counters
        self.clock = clock
        ice = IceSettings(tuple(settings.ice_addresses), settings.announced_address,
                          parse_port_range(settings.udp_ports))
        ice_servers = [RTCIceServer(urls=s.urls, username=s.username or None,
                                    credential=s.credential or None)
                       for s in settings.ice_servers]
        self.peer = WebRtcPeer(ice=ice, ice_servers=ice_servers,
                               on_rtp=self._on_rtp, on_rtcp=self._on_rtcp,
                               on_state=self._on_state, clock=clock, on_drop=counters.drop,
                               simulcast=settings.simulcast)
        # kind -> what the participant publishes: a stream, or a simulcast track of layers
        self.producers: dict[str, Producer | SimulcastTrack] = {}
        self._by_ssrc: dict[int, Producer] = {}
        self._by_rtx: dict[int, Producer] = {}
        self.out_by_ssrc: dict[int, OutStream] = {}
        self._slots: dict[Producer | SimulcastTrack, tuple[SendSlot, OutStream, Consumer]] = {}
        self._rid_ext = 0  # the RID extensions' ids in what the participant publishes (0: none)
        self._rrid_ext = 0
        self._offer_in_flight = False
        self._dirty = False
        self._offered_at: float | None = None  # when the first offer went out
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self.last_rx = clock()
        self.created = clock()
        self.connected = False
        self.got_media = False
        self.closed = False
        self.rtt: float | None = None
        self._report_listeners: list[ReportListener] = []
        self._remb_listeners: list[RembListener] = []
        self._feedback_listeners: list[TransportFeedbackListener] = []
        # the transport-wide sequence of every packet sent, once the peer accepted transport-cc
        self.twcc = SendHistory()
        # padding for bandwidth probes (send_padding)
        self._rtx_pts: dict[str, int] = {}  # mid -> RTX payload type the peer accepted
        self._padding_seq = random.randint(0, 0xFFFF)
        self._padding_until = 0.0  # padding is sent until then (our clock) ...
        self._padding_rate = 0.0  # ... at this many bytes per second
        self._padding_last: float | None = None  # when the last burst went
        self._padding_credit = 0.0  # bytes due (negative: sent ahead)
        self._padding_running = False
        self.padding_octets = 0
        self.transport_cc = False
        # answer the peer's NACKs with retransmissions (a pre-call test's echo does not: behind a
        # link its probe floods, retransmissions of retransmissions would multiply its budget)
        self.retransmit = True
        # transport-cc on what the participant publishes: the extension's id in its packets (0:
        # not negotiated), arrivals noted raw on the packet path, turned into feedback each round
        self._twcc_in_id = 0
        # two flat lists, not a list of tuples: no object the garbage collector tracks per packet
        self._twcc_seqs: list[bytes] = []
        self._twcc_times: list[float] = []
        self._rx_time = self.peer.rx_time  # arrivals are the kernel's receive times
        self.twcc_in: ReceiveHistory | None = None
        self.twcc_in_packets = 0  # packets that arrived with a transport-wide sequence number
        self.feedback_sent = 0  # transport feedback packets sent to the participant

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn(self._run_rtcp(), "rtcp")
        self._spawn(self._watch_liveness(), "liveness")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"endpoint-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def defer(self, delay: float, fn: Callable[[float], None]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            fn(self.clock())

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._report_listeners.clear()
        self._remb_listeners.clear()
        self._feedback_listeners.clear()
        for producer in self.producers.values():
            producer.close()
        for _, _, consumer in self._slots.values():
            consumer.close()
        self._slots.clear()
        for out in self.out_by_ssrc.values():
            self.counters.retire_stream(out)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.peer.close()

    def _on_state(self, state: str) -> None:
        if state == "connected":
            self.connected = True
            self.last_rx = self.clock()
            self.listener.connected(self)
        elif state in ("failed", "closed") and not self.closed:
            self.listener.failed(self, f"transport {state}")

    async def _watch_liveness(self) -> None:
        s = self.settings
        now = self.clock()
        while True:
            before = now
            await asyncio.sleep(LIVENESS_TICK)
            now = self.clock()
            # a tick that comes late measures the server's own stall (a blocked event loop, a
            # paused VM), not the peer: that time is not counted against it
            stalled = now - before - LIVENESS_TICK - STALL_SLACK
            if stalled > 0:
                self.last_rx = min(now, self.last_rx + stalled)
                if self._offered_at is not None:
                    self._offered_at += stalled
            if not self.connected:
                # from the first offer: a peer that never answers holds a port and queues too
                offered = self._offered_at
                if offered is not None and now - offered > s.connect_timeout:
                    self.listener.failed(self, "connect timeout")
                    return
            elif now - self.last_rx > s.inactivity_timeout:
                self.listener.failed(self, "no media or RTCP")
                return

    # -- negotiation --------------------------------------------------------------------------
    def renegotiate(self) -> None:
        """Offer again when possible; never two offers in flight."""
        if self.closed:
            return
        if self._offer_in_flight:
            self._dirty = True
            return
        self._offer_in_flight = True
        self._dirty = False
        self._spawn(self._offer(), "offer")

    async def _offer(self) -> None:
        try:
            sdp = await self.peer.create_offer()
            for slot, out, _ in self._slots.values():
                if slot.mid is not None and out.mid != slot.mid:
                    out.set_mid(slot.mid)
            if self._offered_at is None:
                self._offered_at = self.clock()
            await self.listener.send_offer(self, sdp, self.tracks())
        except InvalidStateError:
            # the connection closed under the offer (its transport failed, the endpoint is
            # closing): its state change has told the failure already (``_on_state``)
            if not self.closed:
                log.info("endpoint %s: no offer made, its connection is closed", self.id)
        except Exception as exc:  # noqa: BLE001 - a failure at the participant's boundary
            log.exception("endpoint %s: offer failed", self.id)
            self.listener.failed(self, f"offer failed: {exc}")

    def tracks(self) -> list[TrackInfo]:
        return [TrackInfo(slot.mid or "", c.producer.owner, slot.kind)
                for slot, _, c in self._slots.values() if slot.mid is not None]

    async def apply_answer(self, sdp: str) -> None:
        if self.closed:  # a pre-call test that ended, a participant put out: nothing to apply
            return
        if not self._offer_in_flight:
            raise NegotiationError("no offer is waiting for an answer")
        try:
            info = await self.peer.apply_answer(sdp)
        except NegotiationError:
            if self.closed:  # aiortc refuses it because the endpoint closed meanwhile
                return
            raise
        if self.closed:  # closed while aiortc applied it: no producers, no subscriptions
            return
        self._offer_in_flight = False
        self._apply_transport_cc(info.transport_cc)
        self._apply_transport_cc_in(info.transport_cc_in)
        self._apply_payload_types(info)
        if self._update_producers(info):
            self.listener.producers_changed(self)
        if self._dirty:
            self.renegotiate()

    def _apply_transport_cc(self, ext_id: int | None) -> None:
        """Stamp every outgoing packet with the transport-wide sequence number while the peer
        accepts it (the answer's id), or none."""
        self.transport_cc = ext_id is not None
        if ext_id is not None:
            self.twcc.set_ext_id(ext_id)
        for out in self.out_by_ssrc.values():
            out.twcc = self.twcc if ext_id is not None else None

    def _apply_transport_cc_in(self, ext_id: int | None) -> None:
        """Note the transport-wide sequence number of what the participant publishes, and send
        it transport feedback every ``FEEDBACK_INTERVAL``, while its answer accepts it."""
        self._twcc_in_id = ext_id or 0
        if ext_id is not None and self.twcc_in is None:
            self.twcc_in = ReceiveHistory(self.peer.rtcp_ssrc)
            self._spawn(self._run_transport_feedback(), "transport-feedback")

    async def _run_transport_feedback(self) -> None:
        while True:
            await asyncio.sleep(FEEDBACK_INTERVAL)
            if self.peer.wire.ready():
                self.send_transport_feedback()

    def send_transport_feedback(self) -> None:
        """Report what arrived since the last round to the publisher (off the packet path)."""
        history = self.twcc_in
        seqs, times = self._twcc_seqs, self._twcc_times
        if history is None or not seqs:
            return
        self._twcc_seqs, self._twcc_times = [], []
        self.twcc_in_packets += len(seqs)
        for value, at in zip(seqs, times, strict=True):
            if len(value) == 2:
                history.add(value[0] << 8 | value[1], at)
            else:
                self.counters.drop("malformed_transport_seq")
        video = self.producers.get("video") or self.producers.get("audio")
        media_ssrc = (video.ssrc if video is not None else None) or 0
        for packet in history.feedback(media_ssrc):
            self.peer.wire.send_rtcp(packet)
            self.feedback_sent += 1

    def _apply_payload_types(self, info: AnswerInfo) -> None:
        self._rtx_pts = {mid: names["rtx"] for mid, names in info.payload_types.items()
                         if "rtx" in names}
        for slot, out, consumer in self._slots.values():
            names = info.payload_types.get(slot.mid or "", {})
            producer = consumer.producer
            name = "opus" if slot.kind == "audio" else "vp8"
            if name in names:
                out.pt_map[producer.payload_type] = names[name]
                consumer.refresh_payload_type()

    def _update_producers(self, info: AnswerInfo) -> bool:
        changed = False
        for kind, pub in info.publish.items():
            current = self.producers.get(kind)
            if current is not None and (not pub.active or self._differs(current, pub)):
                self._drop_producer(kind)
                changed = True
            if pub.active and kind not in self.producers:
                if pub.rids:
                    self._rid_ext = pub.ext_ids.get("rid", 0)
                    self._rrid_ext = pub.ext_ids.get("repaired_rid", 0)
                    layers = [self._new_producer(pub, f"{self.id}:{kind}:{rid}", None)
                              for rid in pub.rids]
                    for layer, rid in zip(layers, pub.rids, strict=True):
                        layer.rid = rid
                    self.producers[kind] = SimulcastTrack(
                        track_id=f"{self.id}:{kind}", owner=self.id, layers=layers,
                        feedback=self.peer.wire, rtcp_ssrc=self.peer.rtcp_ssrc)
                else:
                    producer = self._new_producer(pub, f"{self.id}:{kind}", pub.ssrc)
                    self.producers[kind] = producer
                    if pub.ssrc is not None:
                        self._by_ssrc[pub.ssrc] = producer
                    if pub.rtx_ssrc is not None:
                        self._by_rtx[pub.rtx_ssrc] = producer
                changed = True
        return changed

    @staticmethod
    def _differs(current: Producer | SimulcastTrack, pub: PublishInfo) -> bool:
        """Whether an answer changes what is published (another SSRC, simulcast or not)."""
        if isinstance(current, SimulcastTrack):
            return current.rids != pub.rids
        return bool(pub.rids) or current.ssrc != pub.ssrc

    def _new_producer(self, pub: PublishInfo, producer_id: str, ssrc: int | None) -> Producer:
        producer = Producer(
            producer_id=producer_id, owner=self.id, kind=pub.kind,
            clock_rate=CLOCK_RATES[pub.kind], ssrc=ssrc, payload_type=pub.payload_type,
            feedback=self.peer.wire, rtcp_ssrc=self.peer.rtcp_ssrc, counters=self.counters,
            defer=self.defer, ext_ids=pub.ext_ids,
            cache_size=self.settings.packet_cache_size, pli_interval=self.settings.pli_interval)
        producer.mid = pub.mid
        self.counters.track_producer(producer)
        return producer

    def streams(self) -> list[Producer]:
        """Every stream received from the participant: its producers, simulcast layers apart."""
        out: list[Producer] = []
        for producer in self.producers.values():
            if isinstance(producer, SimulcastTrack):
                out.extend(producer.layers)
            else:
                out.append(producer)
        return out

    def _drop_producer(self, kind: str) -> None:
        producer = self.producers.pop(kind)
        gone = set(producer.layers) if isinstance(producer, SimulcastTrack) else {producer}
        self._by_ssrc = {k: v for k, v in self._by_ssrc.items() if v not in gone}
        self._by_rtx = {k: v for k, v in self._by_rtx.items() if v not in gone}
        producer.close()

    async def add_candidate(self, candidate: str, sdp_mid: str | None) -> None:
        await self.peer.add_ice_candidate(candidate, sdp_mid)

    # -- subscriptions ------------------------------------------------------------------------
    def subscribe(self, producer: object) -> Consumer:
        """Forward ``producer`` to this endpoint on a (possibly recycled) m-line. The control
        plane holds producers through a Protocol; an endpoint forwards only this transport's."""
        if not isinstance(producer, Producer | SimulcastTrack):
            raise TypeError(f"cannot forward {type(producer).__name__}: not a transport Producer")
        existing = self._slots.get(producer)
        if existing is not None:
            return existing[2]
        slot = self.peer.acquire_slot(producer.kind, producer.owner, producer.id)
        out = self.out_by_ssrc.get(slot.ssrc)
        if out is None:
            out = OutStream(ssrc=slot.ssrc, mid=slot.mid or "", kind=slot.kind, sink=self.peer.wire,
                            clock_rate=CLOCK_RATES[slot.kind], pt_map={},
                            twcc=self.twcc if self.transport_cc else None)
            self.out_by_ssrc[slot.ssrc] = out
            self.counters.track_stream(out)
        consumer = (SimulcastConsumer(producer, out, self.counters)
                    if isinstance(producer, SimulcastTrack) else Consumer(producer, out, self.counters))
        self._slots[producer] = (slot, out, consumer)
        self.renegotiate()
        if self.peer.wire.ready():
            producer.request_keyframe(self.clock())
        # else: the consumer asks for one as soon as this peer's transport is up (a keyframe
        # asked for now would arrive before it could be forwarded, and the next would wait
        # for the one-per-second limit)
        return consumer

    def unsubscribe(self, producer: object) -> None:
        entry = (self._slots.pop(producer, None)
                 if isinstance(producer, Producer | SimulcastTrack) else None)
        if entry is None:
            return
        slot, _, consumer = entry
        consumer.close()
        self.peer.release_slot(slot)
        self.renegotiate()

    # -- probing ------------------------------------------------------------------------------
    def send_padding(self, kbps: float, seconds: float) -> None:
        """Send padding at ``kbps`` for ``seconds`` on top of the media: a bandwidth probe.

        Padding-only RTP packets (RFC 3550 5.1, as libwebrtc sends them) go on the RTX stream of
        one of the video m-lines sent to this peer (its own SSRC, payload type and sequence, so
        the media streams' numbering is untouched), carry the transport-wide sequence number
        when transport-cc is negotiated, and are paced in 10 ms bursts. Nothing is sent when no
        video m-line with RTX is negotiated, or while the transport is not up. A rate or duration
        of 0 stops the padding under way."""
        if self.closed or kbps <= 0 or seconds <= 0:
            self._padding_until = 0.0
            return
        carrier = self._padding_carrier()
        if carrier is None:
            return
        self._padding_rate = kbps * 1000 / 8
        self._padding_until = self.clock() + seconds
        if not self._padding_running:
            self._padding_running = True
            self._padding_last = None
            self._padding_credit = 0.0
            self.defer(0.0, self._pad)

    @property
    def padding_ready(self) -> bool:
        """Padding sent now would reach the peer: the transport is up and a video m-line with
        RTX is negotiated towards it."""
        return not self.closed and self.peer.wire.ready() and self._padding_carrier() is not None

    def _padding_carrier(self) -> tuple[OutStream, int, int] | None:
        """(the m-line's out-stream, its RTX SSRC, the RTX payload type) of a video m-line."""
        for slot, out, _ in self._slots.values():
            pt = self._rtx_pts.get(slot.mid or "")
            if slot.kind == "video" and pt is not None:
                return out, sender_ssrcs(slot.transceiver)[1], pt
        return None

    def _pad(self, now: float) -> None:
        """One burst: the bytes due since the last one (a late timer is caught up, up to five
        bursts' worth, so that a busy event loop does not lower the rate asked for; a packet
        sent beyond what was due is owed by the next burst)."""
        carrier = self._padding_carrier()
        if self.closed or carrier is None or now >= self._padding_until:
            self._padding_running = False
            return
        elapsed = PADDING_BURST_S if self._padding_last is None else now - self._padding_last
        self._padding_last = now
        out, ssrc, pt = carrier
        if self.peer.wire.ready():
            self._padding_credit = min(
                self._padding_credit + self._padding_rate * max(elapsed, 0.0),
                self._padding_rate * 5 * PADDING_BURST_S)
            while self._padding_credit > 0:
                self._padding_seq = (self._padding_seq + 1) & 0xFFFF
                size = out.send_extra(0x20, False, pt, self._padding_seq, out.last_ts, ssrc, b"",
                                      PADDING_BODY, now)
                self.padding_octets += size
                self._padding_credit -= size
        self.defer(PADDING_BURST_S, self._pad)

    # -- what the control plane reads ---------------------------------------------------------
    def listen_reports(self, listener: ReportListener) -> None:
        """Call ``listener`` with each report block the receiver sends about a stream it is sent,
        until the endpoint closes."""
        if not self.closed:
            self._report_listeners.append(listener)

    def listen_remb(self, listener: RembListener) -> None:
        """Call ``listener`` with each REMB estimate the receiver sends, until the endpoint closes."""
        if not self.closed:
            self._remb_listeners.append(listener)

    def listen_transport_feedback(self, listener: TransportFeedbackListener) -> None:
        """Call ``listener`` with what each transport feedback packet from the receiver says
        about the packets sent to it (``transport_cc`` tells whether it will send any), until
        the endpoint closes. Each result is (transport-wide sequence number, unwrapped; send
        time on our monotonic clock; RTP bytes; arrival time in seconds on the receiver's clock,
        or None if lost), in sequence order; packets the history no longer holds are left out."""
        if not self.closed:
            self._feedback_listeners.append(listener)

    def sent_octets(self) -> dict[int, int]:
        """Bytes sent so far on each outgoing stream, by its SSRC."""
        return {ssrc: out.octets for ssrc, out in self.out_by_ssrc.items()}

    def consumers(self) -> list[Consumer]:
        return [c for _, _, c in self._slots.values()]

    def subscribed(self) -> list[Producer | SimulcastTrack]:
        return list(self._slots)

    # -- packets in -----------------------------------------------------------------------------
    def _on_rtp(self, data: bytes, now: float) -> None:
        self.last_rx = now
        try:
            packet = P.parse_rtp(data)
        except ValueError:
            self.counters.drop("malformed")
            return
        if self._twcc_in_id:  # note (number, arrival) raw: turned into feedback each round
            value = packet.ext.get(self._twcc_in_id)
            if value is not None:
                seqs = self._twcc_seqs
                if len(seqs) < ARRIVALS_PENDING_MAX:
                    seqs.append(value)
                    self._twcc_times.append(self._rx_time.at or now)
                else:
                    self.counters.drop("transport_arrivals_overflow")
        producer = self._by_ssrc.get(packet.ssrc)
        if producer is not None:
            if not self.got_media:
                self.got_media = True
                self.listener.first_media(self)
            producer.on_rtp(packet, now)
            return
        producer = self._by_rtx.get(packet.ssrc)
        if producer is not None:
            producer.on_rtx(packet, now)
            return
        self._learn_ssrc(packet, now)

    def _learn_ssrc(self, packet: P.RtpPacket, now: float) -> None:
        """A publisher that announced no SSRC: a simulcast layer by its RID (or, for its RTX
        stream, the repaired RID), else match by the mid extension, then payload type."""
        if self._rid_ext and self._learn_layer(packet, now):
            return
        for producer in self.producers.values():
            if isinstance(producer, SimulcastTrack):
                continue
            mid_id = producer.ext_mid_id
            if producer.ssrc is None and (
                    (mid_id is not None and packet.ext.get(mid_id) == producer.mid.encode())
                    or packet.pt == producer.payload_type):
                producer.ssrc = packet.ssrc
                self._by_ssrc[packet.ssrc] = producer
                producer.on_rtp(packet, now)
                return
        self.counters.drop("unknown_ssrc")

    def _learn_layer(self, packet: P.RtpPacket, now: float) -> bool:
        track = self.producers.get("video")
        if not isinstance(track, SimulcastTrack):
            return False
        rid = packet.ext.get(self._rid_ext)
        if rid is not None:
            layer = track.layer_by_rid(rid.decode("ascii", "replace"))
            if layer is None or layer.ssrc is not None:
                return False  # a RID not negotiated, or a layer whose SSRC changed
            layer.ssrc = packet.ssrc
            self._by_ssrc[packet.ssrc] = layer
            if not self.got_media:
                self.got_media = True
                self.listener.first_media(self)
            layer.on_rtp(packet, now)
            return True
        repaired = packet.ext.get(self._rrid_ext) if self._rrid_ext else None
        if repaired is not None:
            layer = track.layer_by_rid(repaired.decode("ascii", "replace"))
            if layer is None or layer.rtx_ssrc is not None:
                return False
            layer.rtx_ssrc = packet.ssrc
            self._by_rtx[packet.ssrc] = layer
            layer.on_rtx(packet, now)
            return True
        return False

    def _on_rtcp(self, data: bytes, now: float) -> None:
        self.last_rx = now
        try:
            messages = P.parse_rtcp(data)
        except ValueError:
            self.counters.drop("malformed_rtcp")
            return
        for msg in messages:
            if isinstance(msg, P.SenderReport):
                producer = self._by_ssrc.get(msg.ssrc)
                if producer is not None:
                    producer.on_sender_report(msg, now)
                self._on_report_blocks(msg.reports, now)
            elif isinstance(msg, P.ReceiverReport):
                self._on_report_blocks(msg.reports, now)
            elif isinstance(msg, P.Nack):
                out = self.out_by_ssrc.get(msg.media_ssrc)
                if out is not None and out.consumer is not None and self.retransmit:
                    self.counters.nacks += 1
                    for seq in msg.lost[:64]:
                        out.consumer.retransmit(seq, now, self.rtt)
            elif isinstance(msg, P.Pli):
                self._keyframe_for(msg.media_ssrc, now)
            elif isinstance(msg, P.Fir):
                for ssrc in msg.media_ssrcs:
                    self._keyframe_for(ssrc, now)
            elif isinstance(msg, P.Remb):
                for listener in self._remb_listeners:
                    listener(msg.bitrate, now)
            elif isinstance(msg, P.TransportFeedback):
                if self.transport_cc:
                    results = self.twcc.match(msg)
                    if results:
                        for feedback_listener in self._feedback_listeners:
                            feedback_listener(results, now)

    def _keyframe_for(self, ssrc: int, now: float) -> None:
        out = self.out_by_ssrc.get(ssrc)
        if out is not None and out.consumer is not None:
            out.consumer.request_keyframe(now)

    def _on_report_blocks(self, blocks: list[P.ReportBlock], now: float) -> None:
        for block in blocks:
            out = self.out_by_ssrc.get(block.ssrc)
            if out is None:
                continue
            rtt = None
            sent_at = out.sent_srs.get(block.lsr) if block.lsr else None
            if sent_at is not None:
                rtt = max(0.0, now - sent_at - block.dlsr / 65536)
                self.rtt = rtt if self.rtt is None else 0.8 * self.rtt + 0.2 * rtt
            for listener in self._report_listeners:
                listener(block, now, rtt)

    # -- RTCP out -------------------------------------------------------------------------------
    def rtcp_compound(self, now: float) -> bytes:
        parts: list[bytes] = []
        for out in self.out_by_ssrc.values():
            sr = out.sender_report(now)
            if sr is not None:
                parts.append(P.build_sr(sr))
        blocks = [p.stats.report(p.ssrc, now) for p in self.streams()
                  if p.ssrc is not None and p.stats.started]
        if blocks or not parts:
            parts.insert(0, P.build_rr(P.ReceiverReport(self.peer.rtcp_ssrc, blocks)))
        parts.append(P.build_sdes_cname(self.peer.rtcp_ssrc, f"sfu-{self.id}"))
        return b"".join(parts)

    async def _run_rtcp(self) -> None:
        while True:
            await asyncio.sleep(RTCP_INTERVAL)
            if self.connected:
                self.peer.wire.send_rtcp(self.rtcp_compound(self.clock()))
