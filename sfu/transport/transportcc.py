"""Transport-wide congestion control, the sender's half: sequence numbers and what they carried.

Every RTP packet an endpoint sends (all its outgoing streams share one sequence) carries the
transport-wide sequence number extension (draft-holmer-rmcat-transport-wide-cc-extensions-01)
when its peer negotiated it. ``SendHistory`` hands out the numbers and remembers, in a bounded
ring, when each packet was sent and how big it was, so that the receiver's transport feedback
can be matched against it. A leaf: no asyncio, no aiortc; the clock is passed in.

The packet path (``Consumer._emit``) writes the ring directly, without a method call: it
increments ``count``, writes the element with ``packets.ext_block_twcc`` (in the same block as
the other extensions, one allocation) and stores into the two lists at ``count & HISTORY_MASK``.
"""

from __future__ import annotations

from typing import NamedTuple

from sfu.transport.packets import (
    TWCC_DELTA_TICK,
    TWCC_REFERENCE_TICK,
    TWCC_REFERENCE_WRAP,
    TransportFeedback,
)

# the id the server offers for the extension: aiortc's own are mid=1, audio level=2, abs-send-time=3
EXT_TRANSPORT_CC = 5
HISTORY_SIZE = 4096  # a power of two
HISTORY_MASK = HISTORY_SIZE - 1


class PacketResult(NamedTuple):
    """One packet the endpoint sent, as its receiver's transport feedback reports it."""

    seq: int  # transport-wide sequence number, unwrapped (the wire carries ``seq & 0xFFFF``)
    send_time: float  # the server's monotonic clock, seconds
    size: int  # bytes of the RTP packet (header and extensions included, SRTP not)
    arrival: float | None  # the receiver's clock, seconds; None when reported lost


class SendHistory:
    """One endpoint's transport-wide sequence and the last ``size`` packets sent with it."""

    __slots__ = ("header", "count", "times", "sizes", "_ref_last", "_ref_unwrapped", "unmatched")

    def __init__(self, ext_id: int = EXT_TRANSPORT_CC) -> None:
        self.header = ext_id << 4 | 1  # the one-byte-form header of a 2-byte element
        # the last sequence number handed out (unwrapped); the first sent is 1. Slot
        # ``n & HISTORY_MASK`` holds packet n while ``count - HISTORY_SIZE < n <= count``.
        self.count = 0
        self.times = [0.0] * HISTORY_SIZE
        self.sizes = [0] * HISTORY_SIZE
        self._ref_last: int | None = None
        self._ref_unwrapped = 0
        self.unmatched = 0  # reported sequence numbers no longer (or never) in the ring

    def set_ext_id(self, ext_id: int) -> None:
        self.header = ext_id << 4 | 1

    def record(self, size: int, now: float) -> int:
        """Take the next sequence number for a packet of ``size`` bytes sent at ``now`` (the
        packet path inlines this); returns the unwrapped number."""
        n = self.count = self.count + 1
        i = n & HISTORY_MASK
        self.times[i] = now
        self.sizes[i] = size
        return n

    def _reference_seconds(self, reference_time: int) -> float:
        """The reference time unwrapped across feedback packets (24 bits of 64 ms wrap every
        12.4 days of the receiver's clock), in seconds."""
        last = self._ref_last
        if last is None:
            self._ref_unwrapped = reference_time
        else:
            step = (reference_time - last) % TWCC_REFERENCE_WRAP
            if step >= TWCC_REFERENCE_WRAP // 2:
                step -= TWCC_REFERENCE_WRAP  # an older feedback packet, reordered
            self._ref_unwrapped += step
        self._ref_last = reference_time
        return self._ref_unwrapped * TWCC_REFERENCE_TICK

    def match(self, fb: TransportFeedback) -> list[PacketResult]:
        """Each packet ``fb`` reports that the ring still holds, in sequence order. Arrival
        times are on the receiver's clock: the reference time (unwrapped) plus the deltas."""
        base = self._reference_seconds(fb.reference_time)
        latest = self.count
        oldest = max(1, latest - HISTORY_SIZE + 1)
        times, sizes = self.times, self.sizes
        out: list[PacketResult] = []
        n = latest - ((latest - fb.base_seq) & 0xFFFF)
        ticks = 0
        for delta in fb.deltas:
            arrival: float | None = None
            if delta is not None:
                ticks += delta
                arrival = base + ticks * TWCC_DELTA_TICK
            if oldest <= n <= latest:
                i = n & HISTORY_MASK
                out.append(PacketResult(n, times[i], sizes[i], arrival))
            else:
                self.unmatched += 1
            n += 1
        return out


class ArrivalRecorder:
    """Transport-cc, the receiver's half: the arrivals of transport-wide sequence numbers on
    what a peer sends us, turned into feedback packets (RTPFB FMT=15) for its send-side
    estimate. ``on_packet`` per packet that carries the extension (our clock, seconds);
    ``feedback`` every 50-100 ms reports every number from the one after the last report up to
    the highest received (a packet that arrives after its number was reported lost is not
    reported again). Used by the pre-call test only: a browser whose uplink gets feedback
    probes it within a second or two, so its own estimate becomes worth reporting."""

    def __init__(self, sender_ssrc: int, max_per_packet: int = 1000) -> None:
        self.sender_ssrc = sender_ssrc
        self.max_per_packet = max_per_packet
        self.fb_count = 0
        self.packets = 0  # feedback packets built
        self._arrivals: dict[int, int] = {}  # unwrapped seq -> arrival (microseconds)
        self._highest: int | None = None
        self._next: int | None = None  # the first unwrapped seq of the next report
        self._reported = False

    def on_packet(self, seq: int, now: float) -> None:
        if self._highest is None:
            unwrapped = seq
        else:
            delta = (seq - self._highest) & 0xFFFF
            unwrapped = self._highest + (delta - 0x10000 if delta >= 0x8000 else delta)
        if self._next is not None and unwrapped < self._next:
            if self._reported:
                return  # already reported (as lost)
            self._next = unwrapped  # reordered before the first report
        if self._highest is None or unwrapped > self._highest:
            self._highest = unwrapped
        if self._next is None:
            self._next = unwrapped
        if len(self._arrivals) < 4 * self.max_per_packet:  # bounded between reports
            self._arrivals.setdefault(unwrapped, int(now * 1_000_000))

    def feedback(self, media_ssrc: int) -> list[TransportFeedback]:
        """The feedback for what arrived since the last call (none if nothing did)."""
        out: list[TransportFeedback] = []
        if self._highest is None or self._next is None:
            return out
        next_seq = self._next
        while self._arrivals:
            end = min(self._highest, next_seq + self.max_per_packet - 1)
            arrivals = [self._arrivals.pop(s, None) for s in range(next_seq, end + 1)]
            received = [a for a in arrivals if a is not None]
            if received:
                tick_us = round(TWCC_DELTA_TICK * 1_000_000)
                ref_us = round(TWCC_REFERENCE_TICK * 1_000_000)
                reference = received[0] // ref_us
                previous = reference * ref_us
                deltas: list[int | None] = []
                for arrival in arrivals:
                    if arrival is None:
                        deltas.append(None)
                        continue
                    ticks = round((arrival - previous) / tick_us)
                    if not -0x8000 <= ticks <= 0x7FFF:
                        deltas.append(None)  # more than 8 s apart: reported as not received
                        continue
                    deltas.append(ticks)
                    previous += ticks * tick_us
                out.append(TransportFeedback(self.sender_ssrc, media_ssrc, next_seq & 0xFFFF,
                                             reference % TWCC_REFERENCE_WRAP, self.fb_count,
                                             deltas))
                self.fb_count = (self.fb_count + 1) & 0xFF
            next_seq = end + 1
        self._next = next_seq
        self._reported = True
        self.packets += len(out)
        return out
