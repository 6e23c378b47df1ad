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
