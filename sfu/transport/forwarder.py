"""The forwarding core: producers (published streams) fan packets out to consumers.

No asyncio, no aiortc: packets come in through ``Producer.on_rtp`` and leave through a
``PacketSink``. A producer parses nothing again once the endpoint parsed the packet; each
consumer only decides (forward, drop, re-anchor) and rewrites the fixed header.

Outgoing continuity belongs to an ``OutStream`` (one sending m-line of a subscriber, one SSRC):
when the source behind it changes (a recycled m-line, a pause) a new anchor keeps sequence
numbers contiguous and timestamps moving forward, so the receiver sees one unbroken stream.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple, Protocol

from sfu.transport.counters import Counters
from sfu.transport.packetcache import PacketCache
from sfu.transport.packets import (
    RtpPacket,
    SenderReport,
    abs_send_time,
    build_nack,
    build_pli,
    build_remb,
    build_rtp,
    ext_block,
    ext_block_twcc,
    ext_element,
    unwrap_rtx,
    vp8_frame_info,
    vp8_keyframe_size,
    vp8_picture_fields,
)
from sfu.transport.stats import ReceiveStats
from sfu.transport.transportcc import HISTORY_MASK, SendHistory

# Extension ids the server offers (aiortc's): the same for every peer, since the server always offers.
EXT_MID = 1
EXT_AUDIO_LEVEL = 2
EXT_ABS_SEND_TIME = 3

ARRIVALS_MAX = 8192  # arrivals a watched producer keeps between two takes; later ones are dropped


class PacketSink(Protocol):
    def ready(self) -> bool: ...

    def send_rtp(self, data: bytes) -> None: ...

    def send_rtcp(self, data: bytes) -> None: ...


Defer = Callable[[float, Callable[[float], None]], None]


class Receiving(Protocol):
    """What a producer hands its packets to: a consumer, or a simulcast consumer's tap."""

    def forward(self, packet: RtpPacket, now: float) -> None: ...

    def close(self) -> None: ...


class Arrival(NamedTuple):
    """One video packet as it arrived, for the uplink estimator."""

    at: float
    seq: int
    size: int  # bytes on the wire, header included
    abs_send_time: int | None  # the sender's 24-bit abs-send-time, when the packet carries it


class Producer:
    """One published track of one participant: an SSRC, cache and statistics."""

    def __init__(self, *, producer_id: str, owner: str, kind: str, clock_rate: int, ssrc: int | None,
                 payload_type: int, feedback: PacketSink, rtcp_ssrc: int, counters: Counters,
                 defer: Defer, ext_ids: dict[str, int], cache_size: int = 512,
                 pli_interval: float = 1.0) -> None:
        self.id = producer_id
        self.owner = owner
        self.kind = kind
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.consumers: list[Receiving] = []
        self.stats = ReceiveStats(clock_rate)
        self.cache = PacketCache(cache_size) if kind == "video" else None
        self._feedback = feedback
        self._rtcp_ssrc = rtcp_ssrc
        self._counters = counters
        self._defer = defer
        self._pli_interval = pli_interval
        self._last_pli = -1e9
        self._pli_pending = False
        self._in_audio_level = ext_ids.get("audio_level")
        self._in_abs_send_time = ext_ids.get("abs_send_time")
        self.ext_mid_id = ext_ids.get("mid")
        self.mid = ""
        self._is_video = kind == "video"
        # NTP/RTP mapping from the publisher's last sender report: (ntp, rtp_ts, received at)
        self.sr: tuple[int, int, float] | None = None
        self.packets = 0
        self.octets = 0
        self.closed = False
        # Arrivals recorded once someone watches them (raw: converted when taken, off the
        # packet path); audio-level sums for the active-speaker choice, taken once per tick.
        self._arrivals: list[tuple[float, int, int, bytes | None]] | None = None
        self._level_sum = 0
        self._level_count = 0
        # where the last keyframe starts in the cache: a new subscriber starts from it at once
        # instead of waiting for the next one
        self.keyframe_seq = 0
        self.keyframe_at = -1e9
        # a simulcast layer (sfu/transport/simulcast.py): its RID, RTX SSRC and the size of its
        # last keyframe (read from the VP8 frame header, for reports; nothing is decoded)
        self.rid = ""
        self.rtx_ssrc: int | None = None
        self.width: int | None = None
        self.height: int | None = None

    # -- the packet path -----------------------------------------------------------------
    def on_rtp(self, packet: RtpPacket, now: float) -> None:
        stats = self.stats
        if self._is_video and stats.started:
            gap = (packet.seq - stats.max_seq) & 0xFFFF
            if 1 < gap <= 32:  # packets went missing on the way in: ask the publisher once
                self.nack_upstream([(stats.max_seq + i) & 0xFFFF for i in range(1, gap)])
        stats.add(packet.seq, packet.ts, now)
        self.packets += 1
        self.octets += len(packet.data)
        ext = packet.ext
        if self._is_video:
            packet.frame_start, packet.keyframe = vp8_frame_info(packet.data, packet.payload_offset)
            if self.rid:  # a simulcast layer: its consumers renumber picture ids
                packet.picture = vp8_picture_fields(packet.data, packet.payload_offset)
            if packet.keyframe and packet.frame_start:
                self.keyframe_seq, self.keyframe_at = packet.seq, now
                size = vp8_keyframe_size(packet.data, packet.payload_offset)
                if size is not None:
                    self.width, self.height = size
            self.cache.add(packet)  # type: ignore[union-attr]
            arrivals = self._arrivals
            if arrivals is not None:
                if len(arrivals) < ARRIVALS_MAX:
                    ast = self._in_abs_send_time
                    arrivals.append((now, packet.seq, len(packet.data),
                                     ext.get(ast) if ast is not None else None))
                else:
                    self._counters.drop("arrivals_overflow")
            packet.shared_ext = ext_element(EXT_ABS_SEND_TIME, abs_send_time(now))
        elif self._in_audio_level is not None and ext:
            level = ext.get(self._in_audio_level)
            if level is not None:
                packet.shared_ext = ext_element(EXT_AUDIO_LEVEL, level)
                self._level_sum += 127 - (level[0] & 0x7F)
                self._level_count += 1
        for consumer in self.consumers:
            consumer.forward(packet, now)

    def on_rtx(self, packet: RtpPacket, now: float) -> None:
        if self.ssrc is None:
            return
        try:
            original = unwrap_rtx(packet, self.payload_type, self.ssrc)
        except ValueError:
            self._counters.drop("rtx_padding")
            return
        if self.cache is not None and self.cache.get(original.seq) is not None:
            self._counters.drop("duplicate")
            return
        self.on_rtp(original, now)

    # -- what the control plane reads ---------------------------------------------------------
    def watch_arrivals(self) -> None:
        """Record each arriving video packet from now on, for :meth:`take_arrivals` (at most
        ``ARRIVALS_MAX`` between two takes; more are dropped and counted). Idempotent."""
        if self._is_video and self._arrivals is None:
            self._arrivals = []

    def take_arrivals(self) -> list[Arrival]:
        """What arrived since the last take, oldest first; empty unless watched."""
        raw = self._arrivals
        if not raw:
            return []
        self._arrivals = []
        return [Arrival(at, seq, size,
                        int.from_bytes(ast, "big") if ast is not None and len(ast) == 3 else None)
                for at, seq, size, ast in raw]

    def take_audio_level(self) -> float | None:
        """Mean loudness (0 silent .. 127 loudest) of the packets since the last take, or None
        when none carried an audio level."""
        if not self._level_count:
            return None
        level = self._level_sum / self._level_count
        self._level_sum = self._level_count = 0
        return level

    @property
    def rids(self) -> list[str]:
        return []  # one encoding (a simulcast track is sfu/transport/simulcast.py)

    def layer_octets(self) -> list[int]:
        return []

    def layer_sizes(self) -> list[tuple[int, int] | None]:
        return [None if self.width is None or self.height is None else (self.width, self.height)]

    # -- feedback towards the publisher ----------------------------------------------------
    def request_keyframe(self, now: float) -> None:
        """Ask the publisher for a keyframe, at most once per ``pli_interval``."""
        if not self._is_video or self.closed or self.ssrc is None:
            return
        if not self._feedback.ready():
            return  # the publisher's transport is not up: its first frames will be a keyframe
        wait = self._last_pli + self._pli_interval - now
        if wait <= 0:
            self._last_pli = now
            self._pli_pending = False
            self._counters.plis += 1
            self._feedback.send_rtcp(build_pli(self._rtcp_ssrc, self.ssrc))
        elif not self._pli_pending:
            self._pli_pending = True
            self._defer(wait, self._flush_pli)

    def _flush_pli(self, now: float) -> None:
        if self._pli_pending and not self.closed:
            self._pli_pending = False
            self._last_pli = -1e9
            self.request_keyframe(now)

    def send_remb(self, kbps: float) -> None:
        """Ask the publisher to send at most ``kbps`` on this stream."""
        if self.ssrc is not None and not self.closed:
            self._feedback.send_rtcp(build_remb(self._rtcp_ssrc, int(kbps * 1000), [self.ssrc]))

    def nack_upstream(self, lost: list[int]) -> None:
        """Ask the publisher to resend what it sent and we lost (it answers on its RTX stream)."""
        if self.ssrc is not None and lost:
            self._counters.nacks_sent += 1
            self._feedback.send_rtcp(build_nack(self._rtcp_ssrc, self.ssrc, lost))

    def on_sender_report(self, sr: SenderReport, now: float) -> None:
        self.sr = (sr.ntp, sr.rtp_ts, now)
        self.stats.on_sender_report(sr.ntp, now)

    def close(self) -> None:
        self.closed = True
        self._counters.retire_producer(self)
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()


class Anchor(NamedTuple):
    """Where a source joined an outgoing stream: its packets from ``first_seq`` on are sent with
    these offsets added to their sequence numbers and timestamps."""

    first_seq: int
    seq_offset: int
    ts_offset: int


class PastAnchor(NamedTuple):
    """An anchor as NACKs need it: from which outgoing sequence number it applied."""

    out_start: int
    in_start: int
    seq_offset: int
    ts_offset: int


MAX_RETRANSMITS = 3  # times one packet is retransmitted at most
RETRANSMIT_INTERVAL_S = 0.1  # not again within this (or twice the RTT, if shorter)
RETRANSMIT_MEMORY = 1024  # retransmitted sequence numbers remembered per stream


class OutStream:
    """One sending m-line of a subscriber: its SSRC, and continuity across sources."""

    __slots__ = ("ssrc", "mid", "kind", "sink", "mid_element", "last_seq", "last_ts",
                 "last_sent_at", "packets", "octets", "consumer", "clock_rate", "pt_map", "sent_srs",
                 "twcc", "retransmits", "last_pid", "last_tl0")

    def __init__(self, *, ssrc: int, mid: str, kind: str, sink: PacketSink, clock_rate: int,
                 pt_map: dict[int, int], twcc: SendHistory | None = None) -> None:
        self.ssrc = ssrc
        self.mid = mid
        self.kind = kind
        self.sink = sink
        self.clock_rate = clock_rate
        self.pt_map = pt_map
        self.mid_element = b""
        self.set_mid(mid)
        self.last_seq = random.randint(0, 0x7FFF)
        self.last_ts = random.randint(0, 0x7FFFFFFF)
        self.last_sent_at: float | None = None
        self.packets = 0
        self.octets = 0
        self.consumer: Consumer | None = None
        self.sent_srs: dict[int, float] = {}  # middle 32 bits of NTP -> send time, for RTT
        # the endpoint's transport-wide sequence (shared by all its streams) while its peer
        # negotiated transport-cc; None: packets carry no transport-wide sequence number
        self.twcc = twcc
        # outgoing seq -> (last retransmitted at, times): a receiver re-asks for a packet every
        # RTT until it arrives; under congestion, answering each ask multiplies the overload
        self.retransmits: dict[int, tuple[float, int]] = {}
        # the VP8 picture id and TL0PICIDX last sent, once a simulcast consumer rewrites them
        # (a layer switch must not make the picture ids jump); None: sent as they came
        self.last_pid: int | None = None
        self.last_tl0: int | None = None

    def may_retransmit(self, seq: int, now: float, rtt: float | None) -> bool:
        """Whether a NACKed packet may be sent again now, and note it if so: not within
        ``min(100 ms, 2 x RTT)`` of its last retransmission, and at most
        ``MAX_RETRANSMITS`` times (LiveKit's sequencer does the same)."""
        seen = self.retransmits.get(seq)
        if seen is not None:
            at, times = seen
            if times >= MAX_RETRANSMITS:
                return False
            if now - at < (RETRANSMIT_INTERVAL_S if rtt is None
                           else min(RETRANSMIT_INTERVAL_S, 2 * rtt)):
                return False
            self.retransmits[seq] = (now, times + 1)
            return True
        retransmits = self.retransmits
        retransmits[seq] = (now, 1)
        if len(retransmits) > RETRANSMIT_MEMORY:
            for old in list(retransmits)[:RETRANSMIT_MEMORY // 4]:  # the oldest asked
                del retransmits[old]
        return True

    def send_extra(self, b0_flags: int, marker: bool, pt: int, seq: int, ts: int, ssrc: int,
                   shared_ext: bytes, body: bytes | memoryview, now: float) -> int:
        """Send a packet that is not this stream's media flow (a retransmission, probe padding)
        on its m-line: with its mid and, when negotiated, the next transport-wide number.
        Returns the packet's size. (The media flow inlines the same in ``Consumer._emit``.)"""
        twcc = self.twcc
        if twcc is None:
            ext = ext_block(self.mid_element + shared_ext)
        else:
            ext = ext_block_twcc(self.mid_element, shared_ext, twcc.header,
                                 (twcc.count + 1) & 0xFFFF)
        wire = build_rtp(b0_flags, marker, pt, seq, ts, ssrc, ext, body)
        if twcc is not None:
            twcc.record(len(wire), now)
        self.sink.send_rtp(wire)
        return len(wire)

    def set_mid(self, mid: str) -> None:
        """The mid is known once the offer that adds the m-line is made."""
        self.mid = mid
        self.mid_element = ext_element(EXT_MID, mid.encode()) if mid else b""

    def sender_report(self, now: float) -> SenderReport | None:
        """An SR translated from the current source's own SR, or None without a mapping."""
        consumer = self.consumer
        if consumer is None or self.last_sent_at is None:
            return None
        anchor = consumer.anchor
        sr = consumer.source_sr()
        if anchor is None or sr is None:
            return None
        ntp, rtp_ts, at = sr
        elapsed = now - at
        # NTP time wraps at 64 bits (a publisher's SR may say anything, 2^64 - 1 included)
        ntp_now = (ntp + int(elapsed * (1 << 32))) & 0xFFFFFFFFFFFFFFFF
        rtp_now = (rtp_ts + int(elapsed * self.clock_rate) + anchor.ts_offset) & 0xFFFFFFFF
        self.sent_srs[(ntp_now >> 16) & 0xFFFFFFFF] = now
        if len(self.sent_srs) > 8:
            self.sent_srs.pop(next(iter(self.sent_srs)))
        return SenderReport(self.ssrc, ntp_now, rtp_now, self.packets, self.octets)


class Consumer:
    """A producer's forwarded copy towards one subscriber, through one ``OutStream``."""

    __slots__ = ("producer", "out", "paused", "need_keyframe", "_anchor", "anchors", "_pt",
                 "_counters", "closed", "_video", "keyframe_asked")

    def __init__(self, producer: Producer, out: OutStream, counters: Counters) -> None:
        self.producer = producer
        self.out = out
        self.paused = False
        self._video = producer.kind == "video"
        self.need_keyframe = self._video
        # The current anchor as a plain tuple, read by index on the packet path: a NamedTuple
        # costs there (its index and attribute reads are not specialized like a tuple's); named
        # as ``anchor`` for everyone else. Older anchors are kept for NACKs.
        self._anchor: tuple[int, int, int] | None = None
        self.anchors: list[PastAnchor] = []
        self._pt = out.pt_map.get(producer.payload_type, producer.payload_type)
        self._counters = counters
        self.keyframe_asked = -1e9
        self.closed = False
        out.consumer = self
        producer.consumers.append(self)

    def forward(self, packet: RtpPacket, now: float) -> None:
        if self.paused:
            return
        anchor = self._anchor
        if anchor is None or self.need_keyframe:
            if not self.out.sink.ready():
                return  # the subscriber's transport is not up: start later, on a keyframe
            if self._video and not (packet.keyframe and packet.frame_start):
                if self._replay_keyframe(packet, now):
                    return
                self._counters.drop("waiting_keyframe")
                if now - self.keyframe_asked > 1.0:  # keep asking while we wait
                    self.keyframe_asked = now
                    self.producer.request_keyframe(now)
                return
            anchor = self._start_anchor(packet, now)
        elif (packet.seq - anchor[0]) & 0xFFFF >= 0x8000:
            self._counters.drop("before_anchor")
            return  # older than the point where this stream joined the outgoing one
        self._emit(packet, anchor, now)

    def _replay_keyframe(self, packet: RtpPacket, now: float) -> bool:
        """Start from the keyframe the cache holds when it is recent (under half a second, at
        most 64 packets back): the subscriber sees video now, not after the next keyframe."""
        return self._replay_recent(self.producer, packet, now,
                                   lambda first: self._start_anchor(first, now))

    def _replay_recent(self, producer: Producer, packet: RtpPacket, now: float,
                       begin: Callable[[RtpPacket], tuple[int, int, int]]) -> bool:
        """If ``producer``'s last keyframe is recent: ``begin`` the outgoing stream at it (the
        anchor), send it and what followed it from the cache, then ``packet``; else False."""
        start = producer.keyframe_seq
        span = (packet.seq - start) & 0xFFFF
        cache = producer.cache
        if now - producer.keyframe_at > 0.5 or span > 64 or cache is None:
            return False
        first = cache.get(start)
        if first is None or not first.keyframe:
            return False
        anchor = begin(first)
        for offset in range(span):
            cached = cache.get((start + offset) & 0xFFFF)
            if cached is not None:
                self._emit(cached, anchor, now)
        self._emit(packet, anchor, now)
        return True

    def _emit(self, packet: RtpPacket, anchor: tuple[int, int, int], now: float) -> None:
        out = self.out
        seq = (packet.seq + anchor[1]) & 0xFFFF
        ts = (packet.ts + anchor[2]) & 0xFFFFFFFF
        data = packet.data
        body = memoryview(data)[packet.payload_offset:]
        twcc = out.twcc
        if twcc is None:
            ext = ext_block(out.mid_element + packet.shared_ext)
        else:  # the next transport-wide sequence number (SendHistory.record, inlined)
            n = twcc.count = twcc.count + 1
            ext = ext_block_twcc(out.mid_element, packet.shared_ext, twcc.header, n & 0xFFFF)
        wire = build_rtp(data[0], packet.marker, self._pt, seq, ts, out.ssrc, ext, body)
        size = len(wire)
        if twcc is not None:
            i = n & HISTORY_MASK
            twcc.times[i] = now
            twcc.sizes[i] = size
        out.sink.send_rtp(wire)
        if ((seq - out.last_seq) & 0xFFFF) < 0x8000:
            out.last_seq = seq
            out.last_ts = ts
        out.last_sent_at = now
        out.packets += 1
        out.octets += size

    @property
    def anchor(self) -> Anchor | None:
        """Where this consumer joined its outgoing stream, or None before its first packet."""
        return None if self._anchor is None else Anchor(*self._anchor)

    def _start_anchor(self, packet: RtpPacket, now: float) -> tuple[int, int, int]:
        out = self.out
        seq_off = (out.last_seq + 1 - packet.seq) & 0xFFFF
        if out.last_sent_at is None:
            advance = 1
        else:
            advance = max(1, int((now - out.last_sent_at) * out.clock_rate))
        ts_off = (out.last_ts + advance - packet.ts) & 0xFFFFFFFF
        anchor = self._anchor = (packet.seq, seq_off, ts_off)
        self.anchors.append(PastAnchor((packet.seq + seq_off) & 0xFFFF, packet.seq, seq_off, ts_off))
        if len(self.anchors) > 4:
            del self.anchors[0]
        self.need_keyframe = False
        return anchor

    def retransmit(self, out_seq: int, now: float, rtt: float | None = None) -> bool:
        """Answer a NACK for an outgoing sequence number from the producer's cache (with a new
        transport-wide sequence number, as any packet sent), unless the same packet was just
        retransmitted or already three times (``OutStream.may_retransmit``)."""
        cache = self.producer.cache
        if cache is None or self.closed:
            return False
        if not self.out.may_retransmit(out_seq, now, rtt):
            self._counters.retransmits_suppressed += 1
            return False
        for past in reversed(self.anchors):
            if (out_seq - past.out_start) & 0xFFFF < 0x8000:
                in_seq = (out_seq - past.seq_offset) & 0xFFFF
                packet = cache.get(in_seq)
                if packet is None or (in_seq - past.in_start) & 0xFFFF >= 0x8000:
                    return False
                out = self.out
                out.send_extra(packet.data[0], packet.marker, self._pt, out_seq,
                               (packet.ts + past.ts_offset) & 0xFFFFFFFF, out.ssrc,
                               packet.shared_ext, memoryview(packet.data)[packet.payload_offset:],
                               now)
                self._counters.retransmitted += 1
                return True
        return False

    @property
    def layer(self) -> int | None:
        return None  # one encoding: no layers

    @property
    def target(self) -> int | None:
        return None

    def set_layer(self, layer: int, now: float) -> None:
        return None  # one encoding: nothing to choose

    def source_sr(self) -> tuple[int, int, float] | None:
        """The NTP/RTP mapping of what is forwarded now (the current layer, with simulcast)."""
        return self.producer.sr

    def request_keyframe(self, now: float) -> None:
        """The subscriber asked for a keyframe (PLI/FIR): ask the publisher of what it gets."""
        self.producer.request_keyframe(now)

    def refresh_payload_type(self) -> None:
        self._pt = self.out.pt_map.get(self.producer.payload_type, self.producer.payload_type)

    def set_paused(self, paused: bool, now: float) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused and self._video:
            self.need_keyframe = True
            self.producer.request_keyframe(now)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self in self.producer.consumers:
            self.producer.consumers.remove(self)
        if self.out.consumer is self:
            self.out.consumer = None
