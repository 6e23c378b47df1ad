"""Hypothesis strategies shared by the fuzz tests: packets as a peer may send them (valid ones,
built here independently of the code under test) and mutations of them."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from hypothesis import strategies as st

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@dataclass
class Rtp:
    """An RTP packet's fields (RFC 3550), extensions in the one-byte form (RFC 8285)."""

    marker: bool
    pt: int
    seq: int
    ts: int
    ssrc: int
    csrcs: list[int] = field(default_factory=list)
    ext: dict[int, bytes] = field(default_factory=dict)
    two_byte: dict[int, bytes] | None = None  # the two-byte form instead, when set
    payload: bytes = b""
    padding: int = 0

    def wire(self) -> bytes:
        block = b""
        if self.two_byte is not None:
            elements = b"".join(bytes((i, len(v))) + v for i, v in self.two_byte.items())
            block = self._block(0x1000, elements)
        elif self.ext:
            elements = b"".join(bytes((i << 4 | (len(v) - 1),)) + v for i, v in self.ext.items())
            block = self._block(0xBEDE, elements)
        b0 = 0x80 | (0x20 if self.padding else 0) | (0x10 if block else 0) | len(self.csrcs)
        pad = b"\x00" * (self.padding - 1) + bytes((self.padding,)) if self.padding else b""
        return b"".join((struct.pack("!BBHII", b0, (0x80 if self.marker else 0) | self.pt,
                                     self.seq, self.ts, self.ssrc),
                         b"".join(struct.pack("!I", c) for c in self.csrcs),
                         block, self.payload, pad))

    @staticmethod
    def _block(profile: int, elements: bytes) -> bytes:
        elements += b"\x00" * (-len(elements) & 3)
        return struct.pack("!HH", profile, len(elements) // 4) + elements


one_byte_ext = st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=6)
two_byte_ext = st.dictionaries(st.integers(1, 255), st.binary(max_size=255), max_size=4)


@st.composite
def rtp_packets(draw: st.DrawFn, payload: st.SearchStrategy[bytes] | None = None) -> Rtp:
    two = draw(st.booleans()) and draw(st.booleans())
    return Rtp(
        marker=draw(st.booleans()), pt=draw(st.integers(0, 127)), seq=draw(u16), ts=draw(u32),
        ssrc=draw(u32), csrcs=draw(st.lists(u32, max_size=15)),
        ext={} if two else draw(one_byte_ext),
        two_byte=draw(two_byte_ext) if two else None,
        payload=draw(payload if payload is not None else st.binary(max_size=64)),
        padding=draw(st.sampled_from([0, 0, 1, 3, 255])),
    )


@st.composite
def vp8_descriptors(draw: st.DrawFn) -> tuple[bytes, bool, bool]:
    """A VP8 payload (RFC 7741 descriptor, then the first byte of the VP8 payload header):
    (bytes, start of a frame, start of a keyframe)."""
    start_bit = draw(st.booleans())
    partition = draw(st.integers(0, 7))
    x, i, l_, t, k = (draw(st.booleans()) for _ in range(5))
    long_pid = draw(st.booleans())
    out = bytes(((0x80 if x else 0) | (0x10 if start_bit else 0) | partition,))
    if x:
        out += bytes(((0x80 if i else 0) | (0x40 if l_ else 0) | (0x20 if t else 0)
                      | (0x10 if k else 0),))
        if i:
            pid = draw(st.integers(0, 0x7FFF if long_pid else 0x7F))
            out += struct.pack("!H", 0x8000 | pid) if long_pid else bytes((pid,))
        if l_:
            out += draw(st.binary(min_size=1, max_size=1))
        if t or k:
            out += draw(st.binary(min_size=1, max_size=1))
    inverse_key = draw(st.booleans())
    header = bytes(((draw(u8) & 0xFE) | (1 if inverse_key else 0),))
    frame_start = start_bit and partition == 0
    return out + header + draw(st.binary(max_size=16)), frame_start, frame_start and not inverse_key


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after a few of what breaks packets: truncation, bit flips, a byte or a 16-bit
    field overwritten (length fields are all 16 bits or a low nibble), bytes cut or added."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "byte", "u16", "cut", "insert"]))
        n = len(out)
        if op == "truncate":
            del out[draw(st.integers(0, n)):]
        elif op == "flip" and n:
            out[draw(st.integers(0, n - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and n:
            out[draw(st.integers(0, n - 1))] = draw(st.sampled_from([0, 1, 0x0F, 0x10, 0x7F, 0xFF]))
        elif op == "u16" and n >= 2:
            pos = draw(st.integers(0, n - 2))
            out[pos:pos + 2] = struct.pack("!H", draw(st.sampled_from([0, 1, 2, 0x7FFF, 0xFFFF])))
        elif op == "cut" and n:
            pos = draw(st.integers(0, n - 1))
            del out[pos:pos + draw(st.integers(1, 8))]
        elif op == "insert":
            pos = draw(st.integers(0, n))
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(out)


def rtp_or_mutant() -> st.SearchStrategy[bytes]:
    """Valid RTP, a mutation of it, or arbitrary bytes that at least look like RTP."""
    valid = rtp_packets().map(Rtp.wire)
    return st.one_of(valid, valid.flatmap(mutated),
                     st.binary(max_size=80).map(lambda b: b"\x80" + b),
                     st.binary(max_size=80))
