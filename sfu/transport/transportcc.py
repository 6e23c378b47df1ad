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

from itertools import accumulate
from typing import cast

from sfu.transport.packets import (
    TWCC_DELTA_TICK,
    TWCC_REFERENCE_TICK,
    TWCC_REFERENCE_WRAP,
    TransportFeedback,
    build_transport_feedback,
)

# the id the server offers for the extension: aiortc's own are mid=1, audio level=2, abs-send-time=3
EXT_TRANSPORT_CC = 5
HISTORY_SIZE = 4096  # a power of two
HISTORY_MASK = HISTORY_SIZE - 1


# One packet the endpoint sent, as its receiver's transport feedback reports it:
# (seq, send_time, size, arrival)
# - seq: transport-wide sequence number, unwrapped (the wire carries ``seq & 0xFFFF``)
# - send_time: the server's monotonic clock, seconds
# - size: bytes of the RTP packet (header and extensions included, SRTP not)
# - arrival: the receiver's clock, seconds; None when reported lost
# A plain tuple, not a NamedTuple: one is made per packet forwarded, and a NamedTuple's
# constructor is a Python-level call (about 7x the cost of building the tuple).
PacketResult = tuple[int, float, int, float | None]


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
        tick = TWCC_DELTA_TICK
        n = latest - ((latest - fb.base_seq) & 0xFFFF)
        deltas = fb.deltas
        count = len(deltas)
        start = n & HISTORY_MASK
        if (oldest <= n and n + count - 1 <= latest and start + count <= HISTORY_SIZE
                and None not in deltas):
            # the common case: every packet received, all still held, in one stretch of the
            # ring; the same values as the loop below, built by C-level iteration
            received = cast("list[int]", deltas)  # no None in it
            arrivals = [base + ticks * tick for ticks in accumulate(received)]
            return list(zip(range(n, n + count), times[start:start + count],
                            sizes[start:start + count], arrivals, strict=True))
        out: list[PacketResult] = []
        append = out.append
        ticks = 0
        unmatched = 0
        for delta in fb.deltas:
            arrival: float | None = None
            if delta is not None:
                ticks += delta
                arrival = base + ticks * tick
            if oldest <= n <= latest:
                i = n & HISTORY_MASK
                append((n, times[i], sizes[i], arrival))
            else:
                unmatched += 1
            n += 1
        self.unmatched += unmatched
        return out


# ------------------------------------------------------------------------- the receiver's half

TICKS_PER_SECOND = round(1 / TWCC_DELTA_TICK)  # 4000: receive deltas are 250 us ticks
TICKS_PER_REFERENCE = round(TWCC_REFERENCE_TICK / TWCC_DELTA_TICK)  # 256 ticks in 64 ms
MAX_PER_FEEDBACK = 1000  # statuses in one feedback packet (about 1.2 kB at most: fits a datagram)
MAX_PENDING = 8192  # sequence numbers one round of feedback reports at most; older ones are skipped


class ReceiveHistory:
    """Arrival times of transport-wide sequence numbers, turned into transport feedback packets
    as a receiver sends them (libwebrtc's ``RemoteEstimatorProxy`` in periodic mode).

    ``add`` per received packet that carries the extension (16-bit number, arrival time in
    seconds on the receiver's clock); ``feedback`` about every 100 ms reports every sequence
    number from the one after the last report up to the highest received, as received (with
    its arrival time) or not. Numbers are unwrapped around the highest seen; before the first
    report a reordered packet moves the start back. A packet that arrives after its number was
    reported (as lost) is not reported again, a duplicate counts once (both are counted in
    ``late``). A report that would span ``MAX_PENDING`` numbers or more (a sender that jumped)
    starts at the oldest arrival within that span. Packets are built by
    ``packets.build_transport_feedback`` (libwebrtc's chunk encoding), at most
    ``MAX_PER_FEEDBACK`` statuses each; a receive delta that does not fit 16 bits starts a new
    feedback packet, as libwebrtc does, instead of being reported as lost.
    """

    __slots__ = ("sender_ssrc", "fb_count", "packets", "late", "reported_lost", "_arrivals",
                 "_highest", "_next", "_reported")

    def __init__(self, sender_ssrc: int) -> None:
        self.sender_ssrc = sender_ssrc
        self.fb_count = 0  # the 8-bit feedback packet count of the next packet
        self.packets = 0  # feedback packets built
        self.late = 0  # arrivals for numbers already reported, skipped or seen
        self.reported_lost = 0  # numbers reported as not received
        self._arrivals: dict[int, int] = {}  # unwrapped seq -> arrival, in 250 us ticks
        self._highest: int | None = None  # unwrapped
        self._next: int | None = None  # the first unwrapped seq of the next report
        self._reported = False

    def add(self, seq: int, now: float) -> None:
        highest = self._highest
        if highest is None:
            unwrapped = seq & 0xFFFF
            self._highest = self._next = unwrapped
        else:
            delta = (seq - highest) & 0xFFFF
            unwrapped = highest + (delta - 0x10000 if delta >= 0x8000 else delta)
            if unwrapped > highest:
                self._highest = unwrapped
            elif unwrapped < self._next:  # type: ignore[operator]
                if self._reported:
                    self.late += 1
                    return
                self._next = unwrapped  # reordered before the first report
        arrivals = self._arrivals
        if unwrapped in arrivals:
            self.late += 1
            return
        arrivals[unwrapped] = int(now * TICKS_PER_SECOND)

    def feedback(self, media_ssrc: int) -> list[bytes]:
        """The feedback packets for what arrived since the last call (none if nothing did)."""
        arrivals = self._arrivals
        highest, seq = self._highest, self._next
        if not arrivals or highest is None or seq is None:
            return []
        if highest - seq >= MAX_PENDING:
            oldest = min(s for s in arrivals if s > highest - MAX_PENDING)
            seq = oldest
        out: list[bytes] = []
        while seq <= highest:
            first = seq
            while first not in arrivals:  # the reference time is the first arrival's
                first += 1
            reference = arrivals[first] // TICKS_PER_REFERENCE
            previous = reference * TICKS_PER_REFERENCE
            start = seq
            deltas: list[int | None] = []
            while seq <= highest and len(deltas) < MAX_PER_FEEDBACK:
                at = arrivals.get(seq)
                if at is None:
                    deltas.append(None)
                    self.reported_lost += 1
                else:
                    delta = at - previous
                    if deltas and not -0x8000 <= delta <= 0x7FFF:
                        break  # more than 8 s from the previous arrival: a new packet
                    deltas.append(delta)
                    previous = at
                seq += 1
            out.append(build_transport_feedback(TransportFeedback(
                self.sender_ssrc, media_ssrc, start & 0xFFFF, reference & 0xFFFFFF,
                self.fb_count, deltas)))
            self.fb_count = (self.fb_count + 1) & 0xFF
        arrivals.clear()
        self._next = highest + 1
        self._reported = True
        self.packets += len(out)
        return out
