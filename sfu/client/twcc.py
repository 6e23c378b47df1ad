"""Transport-wide congestion control feedback, as a receiver sends it (draft-holmer-rmcat-
transport-wide-cc-extensions-01, section 3.1), for the synthetic client. Pure: times are passed in.

A minimal stand-in for the shared builder being written in ``sfu/transport/packets.py``; the bytes
follow the draft: RTPFB (PT 205) FMT 15; base sequence number, packet status count, 24-bit
reference time in 64 ms units, feedback packet count; packet status chunks (run length, or status
vectors of 14 one-bit or 7 two-bit symbols); receive deltas in 250 us ticks (one byte, or two
bytes signed for a large or negative delta). Like libwebrtc, the packet is padded to 32 bits with
the RTCP padding bit set and the last byte giving the padding length.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RTCP_RTPFB = 205
FMT_TRANSPORT_CC = 15
TICK_US = 250
REFERENCE_US = 64_000

NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA = 0, 1, 2
MAX_RUN = 0x1FFF


def _chunks(symbols: Sequence[int]) -> bytes:
    out = bytearray()
    i, n = 0, len(symbols)
    while i < n:
        run = 1
        while i + run < n and symbols[i + run] == symbols[i] and run < MAX_RUN:
            run += 1
        window = symbols[i:i + 14]
        if run >= 14 or (run >= 7 and LARGE_DELTA in window) or i + run == n and run > 7:
            out += struct.pack("!H", symbols[i] << 13 | run)  # run length chunk: T = 0
            i += run
        elif LARGE_DELTA in window:
            part = symbols[i:i + 7]
            word = 0xC000  # status vector chunk, two-bit symbols
            for k, s in enumerate(part):
                word |= s << (12 - 2 * k)
            out += struct.pack("!H", word)
            i += len(part)
        else:
            word = 0x8000  # status vector chunk, one-bit symbols
            for k, s in enumerate(window):
                word |= s << (13 - k)
            out += struct.pack("!H", word)
            i += len(window)
    return bytes(out)


def build_transport_feedback(sender_ssrc: int, media_ssrc: int, base_seq: int, fb_count: int,
                             arrivals_us: Sequence[int | None]) -> bytes:
    """A transport-cc feedback packet for sequence numbers ``base_seq`` onwards: one arrival time
    (microseconds on the receiver's clock) or None (not received) per packet. The reference time is
    the first arrival's, rounded down to 64 ms; a delta that fits in neither one nor two bytes
    (more than 8 s) is reported as not received."""
    received = [a for a in arrivals_us if a is not None]
    if not received or len(arrivals_us) > 0xFFFF:
        raise ValueError("a feedback packet reports 1..65535 packets, at least one received")
    reference = received[0] // REFERENCE_US
    previous = reference * REFERENCE_US
    symbols: list[int] = []
    deltas = bytearray()
    for arrival in arrivals_us:
        if arrival is None:
            symbols.append(NOT_RECEIVED)
            continue
        ticks = round((arrival - previous) / TICK_US)
        if 0 <= ticks <= 0xFF:
            symbols.append(SMALL_DELTA)
            deltas.append(ticks)
        elif -0x8000 <= ticks <= 0x7FFF:
            symbols.append(LARGE_DELTA)
            deltas += struct.pack("!h", ticks)
        else:
            symbols.append(NOT_RECEIVED)
            continue
        previous += ticks * TICK_US
    body = struct.pack("!IIHHI", sender_ssrc, media_ssrc, base_seq & 0xFFFF, len(arrivals_us),
                       (reference & 0xFFFFFF) << 8 | (fb_count & 0xFF))
    body += _chunks(symbols) + deltas
    padding = -len(body) % 4
    first = 0x80 | FMT_TRANSPORT_CC
    if padding:
        body += b"\x00" * (padding - 1) + bytes((padding,))
        first |= 0x20
    return struct.pack("!BBH", first, RTCP_RTPFB, len(body) // 4) + body


class TransportFeedback:
    """Arrival times of transport-wide sequence numbers, turned into feedback packets.

    ``on_packet`` per received packet that carries the extension; ``feedback`` every 100 ms or so
    reports every sequence number from the one after the last report up to the highest received
    (a packet that arrives after its number was reported as lost is not reported again)."""

    def __init__(self, sender_ssrc: int, *, max_per_packet: int = 1000) -> None:
        self.sender_ssrc = sender_ssrc
        self.max_per_packet = max_per_packet
        self.fb_count = 0
        self.packets = 0  # feedback packets built
        self._arrivals: dict[int, int] = {}  # unwrapped seq -> arrival (us)
        self._highest: int | None = None  # unwrapped
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
        self._arrivals.setdefault(unwrapped, int(now * 1_000_000))

    def feedback(self, media_ssrc: int) -> list[bytes]:
        """The feedback packets for what arrived since the last call (none if nothing did)."""
        out: list[bytes] = []
        if self._highest is None or self._next is None:
            return out
        next_seq = self._next
        while self._arrivals:
            end = min(self._highest, next_seq + self.max_per_packet - 1)
            arrivals = [self._arrivals.pop(s, None) for s in range(next_seq, end + 1)]
            if any(a is not None for a in arrivals):
                out.append(build_transport_feedback(self.sender_ssrc, media_ssrc,
                                                    next_seq & 0xFFFF, self.fb_count, arrivals))
                self.fb_count = (self.fb_count + 1) & 0xFF
            next_seq = end + 1
        self._next = next_seq
        self._reported = True
        self.packets += len(out)
        return out
