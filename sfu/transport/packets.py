"""RTP and RTCP on the wire: parse once, rewrite per consumer. A leaf: no asyncio, no aiortc.

Parsing raises ``ValueError`` on a malformed packet; the caller drops it with a counter.
The per-packet functions avoid work that can be done once per stream: a consumer's
``mid`` extension element is built once, the extensions shared by every consumer of a
packet are built once per packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

_HDR = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_I16 = struct.Struct("!h")


class RtpPacket:
    """One received RTP packet, parsed once and shared by every consumer.

    ``ext`` maps extension id -> raw value for the one-byte (RFC 8285) form; packets with a
    two-byte extension block keep ``ext`` empty (their extensions are not forwarded).
    """

    __slots__ = (
        "data", "marker", "pt", "seq", "ts", "ssrc", "payload_offset", "ext",
        "keyframe", "frame_start", "shared_ext", "picture",
    )

    def __init__(self, data: bytes, marker: bool, pt: int, seq: int, ts: int, ssrc: int,
                 payload_offset: int, ext: dict[int, bytes]) -> None:
        self.data = data
        self.marker = marker
        self.pt = pt
        self.seq = seq
        self.ts = ts
        self.ssrc = ssrc
        self.payload_offset = payload_offset
        self.ext = ext
        self.keyframe = False
        self.frame_start = False
        self.shared_ext = b""
        # a simulcast layer's packet: where its VP8 picture id and TL0PICIDX are
        # (:func:`vp8_picture_fields`), found once for every consumer that renumbers them
        self.picture: tuple[int, int, int] = (0, 0, -1)

    @property
    def payload(self) -> bytes:
        return self.data[self.payload_offset:]


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < 12:
        raise ValueError("RTP packet shorter than its fixed header")
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
    if b0 >> 6 != 2:
        raise ValueError("RTP version is not 2")
    offset = 12 + 4 * (b0 & 0x0F)
    ext: dict[int, bytes] = {}
    if b0 & 0x10:
        if len(data) < offset + 4:
            raise ValueError("RTP header extension truncated")
        profile, words = struct.unpack_from("!HH", data, offset)
        start = offset + 4
        offset = start + 4 * words
        if len(data) < offset:
            raise ValueError("RTP header extension truncated")
        if profile == 0xBEDE:
            i = start
            while i < offset:
                byte = data[i]
                ext_id = byte >> 4
                if ext_id == 0:  # padding (RFC 8285: id 0; libwebrtc skips it whatever its length)
                    i += 1
                    continue
                if ext_id == 15:
                    break
                length = (byte & 0x0F) + 1
                if i + 1 + length > offset:
                    # its value would run into the payload (or be cut off at the packet's end:
                    # an empty value, which the audio path could not copy)
                    raise ValueError("RTP header extension element overruns its block")
                ext[ext_id] = data[i + 1:i + 1 + length]
                i += 1 + length
    if b0 & 0x20:
        if len(data) <= offset or data[-1] == 0 or data[-1] > len(data) - offset:
            raise ValueError("RTP padding longer than the packet")
    elif len(data) < offset:
        raise ValueError("RTP packet truncated")
    return RtpPacket(data, bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, offset, ext)


def parse_header(data: bytes) -> tuple[int, int, int, int, int]:
    """(payload type, seq, timestamp, SSRC, payload offset) without the extension dict: for a
    receiver that only counts. Raises ValueError when the packet is shorter than its headers."""
    if len(data) < 12:
        raise ValueError("RTP packet shorter than its fixed header")
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < offset + 4:
            raise ValueError("RTP header extension truncated")
        offset += 4 + 4 * _U16.unpack_from(data, offset + 2)[0]
    if len(data) < offset:
        raise ValueError("RTP packet truncated")
    return b1 & 0x7F, seq, ts, ssrc, offset


def vp8_frame_info(payload: bytes | memoryview, offset: int = 0) -> tuple[bool, bool]:
    """(start of a frame, start of a keyframe) from a VP8 RTP payload (RFC 7741)."""
    n = len(payload)
    if n - offset < 1:
        return False, False
    b = payload[offset]
    start = bool(b & 0x10) and (b & 0x07) == 0
    if not start:
        return False, False
    i = offset + 1
    if b & 0x80:  # X
        if i >= n:
            return False, False
        x = payload[i]
        i += 1
        if x & 0x80:  # I: picture id, 7 or 15 bits
            if i >= n:
                return False, False
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:  # L
            i += 1
        if x & 0x30:  # T or K
            i += 1
    if i >= n:
        return True, False
    return True, not (payload[i] & 0x01)


def vp8_picture_fields(payload: bytes | memoryview, offset: int = 0) -> tuple[int, int, int]:
    """Where a VP8 payload descriptor (RFC 7741) keeps its picture id and TL0PICIDX:
    (picture id position, its length in bytes: 0 none, 1 seven bits, 2 fifteen bits,
    TL0PICIDX position or -1). Positions are absolute in ``payload``; a truncated descriptor
    gives (0, 0, -1)."""
    n = len(payload)
    if n - offset < 2 or not payload[offset] & 0x80:  # no X: neither field
        return 0, 0, -1
    x = payload[offset + 1]
    i = offset + 2
    pid_pos = pid_len = 0
    if x & 0x80:  # I
        if i >= n:
            return 0, 0, -1
        pid_pos = i
        pid_len = 2 if payload[i] & 0x80 else 1
        i += pid_len
    tl0 = -1
    if x & 0x40:  # L
        tl0 = i
        i += 1
    if i > n or (tl0 >= n):
        return 0, 0, -1
    return pid_pos, pid_len, tl0


def vp8_keyframe_size(payload: bytes | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """(width, height) from the first packet of a VP8 keyframe: the frame header's clear-text
    start code and dimensions (RFC 6386 9.1), without decoding anything. None if not there."""
    n = len(payload)
    if n - offset < 1:
        return None
    i = offset + 1
    if payload[offset] & 0x80:
        if i >= n:
            return None
        x = payload[i]
        i += 1
        if x & 0x80:
            if i >= n:
                return None
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    if n - i < 10 or payload[i] & 0x01 or bytes(payload[i + 3:i + 6]) != b"\x9d\x01\x2a":
        return None
    width = (payload[i + 6] | payload[i + 7] << 8) & 0x3FFF
    height = (payload[i + 8] | payload[i + 9] << 8) & 0x3FFF
    return width, height


def abs_send_time(now: float) -> bytes:
    """The 24-bit 6.18 fixed-point abs-send-time value for ``now`` (seconds)."""
    value = int(now * (1 << 18)) & 0xFFFFFF
    return bytes(((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF))


def ext_element(ext_id: int, value: bytes) -> bytes:
    """One one-byte-form extension element (id 1-14, value 1-16 bytes)."""
    if not 1 <= ext_id <= 14 or not 1 <= len(value) <= 16:
        raise ValueError("extension does not fit the one-byte form")
    return bytes((ext_id << 4 | (len(value) - 1),)) + value


# the 0xBEDE profile and length word, and the padding, of a block of n bytes of elements
_EXT_HEADS = tuple(b"\xbe\xde" + _U16.pack((n + (-n & 3)) >> 2) for n in range(256))
_EXT_PADS = tuple(b"\x00" * (-n & 3) for n in range(256))
_TWCC_ELEMENT = struct.Struct("!BH")


def ext_block(elements: bytes) -> bytes:
    """Wrap extension elements in a 0xBEDE block padded to 32 bits; b'' for none."""
    n = len(elements)
    if not n:
        return b""
    if n < 256:
        return b"".join((_EXT_HEADS[n], elements, _EXT_PADS[n]))
    pad = -n & 3
    return b"\xbe\xde" + _U16.pack((n + pad) >> 2) + elements + b"\x00" * pad


def ext_block_twcc(elements: bytes, shared: bytes, header: int, seq: int) -> bytes:
    """``ext_block(elements + shared + transport-wide sequence number element)`` in one
    allocation: ``header`` is the element's first byte (id << 4 | 1), ``seq`` 16 bits."""
    n = len(elements) + len(shared) + 3
    if n >= 256:
        return ext_block(elements + shared + _TWCC_ELEMENT.pack(header, seq))
    return b"".join((_EXT_HEADS[n], elements, shared, _TWCC_ELEMENT.pack(header, seq),
                     _EXT_PADS[n]))


def build_rtp(b0_flags: int, marker: bool, pt: int, seq: int, ts: int, ssrc: int,
              ext: bytes, body: bytes | memoryview) -> bytes:
    """Serialize an RTP packet. ``b0_flags`` keeps the padding bit (0x20) of the source."""
    first = 0x80 | (b0_flags & 0x20) | (0x10 if ext else 0)
    return b"".join((_HDR.pack(first, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                               ts & 0xFFFFFFFF, ssrc), ext, body))


def unwrap_rtx(packet: RtpPacket, original_pt: int, original_ssrc: int) -> RtpPacket:
    """RFC 4588: the first two payload bytes carry the original sequence number."""
    off = packet.payload_offset
    if len(packet.data) < off + 2:
        raise ValueError("RTX packet without original sequence number")
    (osn,) = _U16.unpack_from(packet.data, off)
    data = packet.data
    padding = data[-1] if data[0] & 0x20 else 0
    if len(data) - padding <= off + 2:
        raise ValueError("RTX padding-only packet")
    first = 0x80 | (data[0] & 0x10)  # keep X; CSRCs and padding are left out
    rebuilt = b"".join((
        _HDR.pack(first, (data[1] & 0x80) | original_pt, osn, packet.ts, original_ssrc),
        data[12 + 4 * (data[0] & 0x0F):off],
        data[off + 2:len(data) - padding],
    ))
    return parse_rtp(rebuilt)


# --------------------------------------------------------------------------------------- RTCP

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_RTPFB = 205
RTCP_PSFB = 206


@dataclass
class ReportBlock:
    ssrc: int
    fraction_lost: int  # 0-255
    packets_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass
class SenderReport:
    ssrc: int
    ntp: int
    rtp_ts: int
    packets: int
    octets: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass
class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: list[int]


@dataclass
class Pli:
    sender_ssrc: int
    media_ssrc: int


@dataclass
class Fir:
    sender_ssrc: int
    media_ssrcs: list[int]


@dataclass
class Remb:
    sender_ssrc: int
    bitrate: int  # bit/s
    ssrcs: list[int]


@dataclass
class Bye:
    ssrcs: list[int]


@dataclass
class TransportFeedback:
    """RTPFB FMT=15 (draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1).

    ``deltas[i]`` is about transport-wide sequence number ``base_seq + i`` (mod 2^16): its
    receive delta in 250 µs ticks from the previous received packet (the first one from the
    reference time), or None when it was not received.
    """

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_time: int  # 24 bits, in 64 ms units, on the receiver's clock
    fb_count: int  # 8 bits, one more for each feedback packet the receiver sends
    deltas: list[int | None]

    def arrivals(self, reference_offset: float = 0.0) -> list[tuple[int, float | None]]:
        """(sequence number, arrival time in seconds on the receiver's clock or None if lost),
        in sequence order; ``reference_offset`` is added (for an unwrapped reference time)."""
        base = self.reference_time * TWCC_REFERENCE_TICK + reference_offset
        ticks = 0  # summed as integers: no drift over a long feedback packet
        out: list[tuple[int, float | None]] = []
        seq = self.base_seq
        for delta in self.deltas:
            if delta is None:
                out.append((seq, None))
            else:
                ticks += delta
                out.append((seq, base + ticks * TWCC_DELTA_TICK))
            seq = (seq + 1) & 0xFFFF
        return out


TWCC_REFERENCE_TICK = 0.064  # seconds per unit of the reference time
TWCC_DELTA_TICK = 0.00025  # seconds per unit of a receive delta
TWCC_REFERENCE_WRAP = 1 << 24

RtcpMessage = SenderReport | ReceiverReport | Nack | Pli | Fir | Remb | Bye | TransportFeedback


def _parse_transport_feedback(data: bytes, fci: int, end: int, sender: int,
                              media: int) -> TransportFeedback:
    if fci + 8 > end:
        raise ValueError("transport feedback truncated")
    base_seq, count, ref_and_fb = struct.unpack_from("!HHI", data, fci)
    if count == 0:
        raise ValueError("transport feedback without packet status")
    symbols: list[int] = []  # 0 not received, 1 small delta, 2 large or negative delta
    pos = fci + 8
    while len(symbols) < count:
        if pos + 2 > end:
            raise ValueError("transport feedback chunks truncated")
        (chunk,) = _U16.unpack_from(data, pos)
        pos += 2
        if not chunk & 0x8000:  # run length: T=0, S (2 bits), length (13 bits)
            symbol, length = (chunk >> 13) & 3, chunk & 0x1FFF
            if symbol == 3:
                raise ValueError("transport feedback reserved status in a run")
            symbols.extend([symbol] * min(length, count - len(symbols)))
        elif not chunk & 0x4000:  # status vector of 14 one-bit symbols
            symbols.extend((chunk >> (13 - i)) & 1 for i in range(min(14, count - len(symbols))))
        else:  # status vector of 7 two-bit symbols
            for i in range(min(7, count - len(symbols))):
                symbol = (chunk >> (12 - 2 * i)) & 3
                if symbol == 3:
                    raise ValueError("transport feedback reserved status in a vector")
                symbols.append(symbol)
    if 0 not in symbols and 2 not in symbols:
        # all received with small deltas (the common case): one byte each, taken in one slice
        if pos + count > end:
            raise ValueError("transport feedback deltas truncated")
        small: list[int | None] = list(data[pos:pos + count])
        return TransportFeedback(sender, media, base_seq, ref_and_fb >> 8, ref_and_fb & 0xFF, small)
    deltas: list[int | None] = []
    for symbol in symbols:
        if symbol == 0:
            deltas.append(None)
        elif symbol == 1:
            if pos + 1 > end:
                raise ValueError("transport feedback deltas truncated")
            deltas.append(data[pos])
            pos += 1
        else:
            if pos + 2 > end:
                raise ValueError("transport feedback deltas truncated")
            deltas.append(_I16.unpack_from(data, pos)[0])
            pos += 2
    return TransportFeedback(sender, media, base_seq, ref_and_fb >> 8, ref_and_fb & 0xFF, deltas)


def _report_blocks(data: bytes, pos: int, count: int, end: int) -> list[ReportBlock]:
    blocks = []
    for _ in range(count):
        if pos + 24 > end:
            raise ValueError("RTCP report block truncated")
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr))
        pos += 24
    return blocks


def parse_rtcp(data: bytes) -> list[RtcpMessage]:
    """Parse a compound RTCP packet into the messages an SFU acts on; others are skipped."""
    out: list[RtcpMessage] = []
    pos = 0
    n = len(data)
    if n < 4:
        raise ValueError("RTCP packet too short")
    while pos < n:
        if pos + 4 > n:
            raise ValueError("RTCP header truncated")
        b0, ptype, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != 2:
            raise ValueError("RTCP version is not 2")
        end = next_pos = pos + 4 + 4 * words
        if end > n:
            raise ValueError("RTCP packet length exceeds datagram")
        count = b0 & 0x1F
        body = pos + 4
        if b0 & 0x20:  # padding: its last byte says how much of the packet it takes
            padding = data[end - 1] if end > body else 0
            if padding == 0 or padding > end - body:
                raise ValueError("RTCP padding longer than the packet")
            end -= padding
        if ptype == RTCP_SR:
            if body + 24 > end:
                raise ValueError("RTCP SR truncated")
            ssrc, ntp_hi, ntp_lo, rtp_ts, packets, octets = struct.unpack_from("!IIIIII", data, body)
            out.append(SenderReport(ssrc, (ntp_hi << 32) | ntp_lo, rtp_ts, packets, octets,
                                    _report_blocks(data, body + 24, count, end)))
        elif ptype == RTCP_RR:
            if body + 4 > end:
                raise ValueError("RTCP RR truncated")
            (ssrc,) = _U32.unpack_from(data, body)
            out.append(ReceiverReport(ssrc, _report_blocks(data, body + 4, count, end)))
        elif ptype == RTCP_BYE:
            out.append(Bye([_U32.unpack_from(data, body + 4 * i)[0] for i in range(count)
                            if body + 4 * i + 4 <= end]))
        elif ptype in (RTCP_RTPFB, RTCP_PSFB):
            if body + 8 > end:
                raise ValueError("RTCP feedback truncated")
            sender, media = struct.unpack_from("!II", data, body)
            fci = body + 8
            if ptype == RTCP_RTPFB and count == 1:
                lost: list[int] = []
                for i in range(fci, end - 3, 4):
                    pid, blp = struct.unpack_from("!HH", data, i)
                    lost.append(pid)
                    lost.extend((pid + b + 1) & 0xFFFF for b in range(16) if blp >> b & 1)
                out.append(Nack(sender, media, lost))
            elif ptype == RTCP_RTPFB and count == 15:
                out.append(_parse_transport_feedback(data, fci, end, sender, media))
            elif ptype == RTCP_PSFB and count == 1:
                out.append(Pli(sender, media))
            elif ptype == RTCP_PSFB and count == 4:
                out.append(Fir(sender, [_U32.unpack_from(data, i)[0] for i in range(fci, end - 7, 8)]))
            elif ptype == RTCP_PSFB and count == 15 and data[fci:fci + 4] == b"REMB" and fci + 8 <= end:
                num, b1, b2, b3 = data[fci + 4], data[fci + 5], data[fci + 6], data[fci + 7]
                exp = b1 >> 2
                mantissa = ((b1 & 3) << 16) | (b2 << 8) | b3
                ssrcs = [_U32.unpack_from(data, fci + 8 + 4 * i)[0] for i in range(num)
                         if fci + 12 + 4 * i <= end]
                out.append(Remb(sender, mantissa << exp, ssrcs))
        pos = next_pos
    return out


def _pack_blocks(blocks: list[ReportBlock]) -> bytes:
    return b"".join(
        struct.pack("!IIIIII", b.ssrc, (b.fraction_lost & 0xFF) << 24 | (b.packets_lost & 0xFFFFFF),
                    b.highest_seq & 0xFFFFFFFF, b.jitter & 0xFFFFFFFF, b.lsr & 0xFFFFFFFF,
                    b.dlsr & 0xFFFFFFFF)
        for b in blocks[:31]
    )


def _rtcp(count: int, ptype: int, body: bytes) -> bytes:
    return struct.pack("!BBH", 0x80 | count, ptype, len(body) // 4) + body


def build_sr(sr: SenderReport) -> bytes:
    body = struct.pack("!IIIIII", sr.ssrc, (sr.ntp >> 32) & 0xFFFFFFFF, sr.ntp & 0xFFFFFFFF,
                       sr.rtp_ts & 0xFFFFFFFF,
                       sr.packets & 0xFFFFFFFF, sr.octets & 0xFFFFFFFF) + _pack_blocks(sr.reports)
    return _rtcp(min(len(sr.reports), 31), RTCP_SR, body)


def build_rr(rr: ReceiverReport) -> bytes:
    return _rtcp(min(len(rr.reports), 31), RTCP_RR, _U32.pack(rr.ssrc) + _pack_blocks(rr.reports))


def build_sdes_cname(ssrc: int, cname: str) -> bytes:
    raw = cname.encode()[:255]
    item = _U32.pack(ssrc) + bytes((1, len(raw))) + raw + b"\x00"
    item += b"\x00" * (-len(item) & 3)
    return _rtcp(1, RTCP_SDES, item)


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return _rtcp(1, RTCP_PSFB, struct.pack("!II", sender_ssrc, media_ssrc))


def build_nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    fci = b""
    seqs = sorted(set(lost))
    i = 0
    while i < len(seqs):
        pid, blp = seqs[i], 0
        i += 1
        while i < len(seqs) and 0 < (seqs[i] - pid) & 0xFFFF <= 16:
            blp |= 1 << (((seqs[i] - pid) & 0xFFFF) - 1)
            i += 1
        fci += struct.pack("!HH", pid, blp)
    return _rtcp(1, RTCP_RTPFB, struct.pack("!II", sender_ssrc, media_ssrc) + fci)


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    exp = 0
    mantissa = max(0, int(bitrate))
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exp += 1
    fci = b"REMB" + bytes((len(ssrcs), exp << 2 | mantissa >> 16, (mantissa >> 8) & 0xFF,
                           mantissa & 0xFF)) + b"".join(_U32.pack(s) for s in ssrcs)
    return _rtcp(15, RTCP_PSFB, struct.pack("!II", sender_ssrc, 0) + fci)


def _encode_chunks(symbols: list[int]) -> list[int]:
    """Packet status chunks as libwebrtc's ``TransportFeedback::LastChunk`` encodes them: a
    run while every status is the same, else a 14-symbol one-bit vector while no delta is
    large, else 7-symbol two-bit vectors; the last chunk may be a short vector."""
    chunks: list[int] = []
    pending: list[int] = []
    all_same = True
    has_large = False

    def can_add(symbol: int) -> bool:
        n = len(pending)
        if n < 7:
            return True
        if n < 14 and not has_large and symbol != 2:
            return True
        return n < 0x1FFF and all_same and pending[0] == symbol

    for symbol in symbols:
        if not can_add(symbol):
            if all_same:
                chunks.append(pending[0] << 13 | len(pending))
                pending = []
            elif len(pending) == 14:
                chunks.append(0x8000 | sum(s << (13 - i) for i, s in enumerate(pending)))
                pending = []
            else:
                chunks.append(0xC000 | sum(s << (12 - 2 * i) for i, s in enumerate(pending[:7])))
                pending = pending[7:]
            all_same = all(s == pending[0] for s in pending) if pending else True
            has_large = 2 in pending
        pending.append(symbol)
        all_same = all_same and symbol == pending[0]
        has_large = has_large or symbol == 2
    if pending:
        if all_same:
            chunks.append(pending[0] << 13 | len(pending))
        elif len(pending) <= 7:
            chunks.append(0xC000 | sum(s << (12 - 2 * i) for i, s in enumerate(pending)))
        else:
            chunks.append(0x8000 | sum(s << (13 - i) for i, s in enumerate(pending)))
    return chunks


def build_transport_feedback(fb: TransportFeedback) -> bytes:
    """Serialize as Chromium does: chunks chosen as libwebrtc chooses them, deltas of 0-255
    ticks in one byte and others in two, padded to 32 bits with the P bit set and the padding
    length in the last byte. Raises ValueError for a delta beyond 16 bits signed."""
    if not fb.deltas or len(fb.deltas) > 0xFFFF:
        raise ValueError("transport feedback needs 1 to 65535 packet statuses")
    deltas = fb.deltas
    if None not in deltas and 0 <= min(deltas) and max(deltas) <= 0xFF:  # type: ignore[type-var,operator]
        # all received, small deltas (a healthy link): run-length chunks, as the general path
        # below writes them, without its per-status work
        n = len(deltas)
        chunks = [0x2000 | min(0x1FFF, n - i) for i in range(0, n, 0x1FFF)]
        delta_bytes = bytearray(deltas)  # type: ignore[arg-type]
    else:
        chunks, delta_bytes = _statuses(deltas)
    body = b"".join((
        struct.pack("!IIHHI", fb.sender_ssrc, fb.media_ssrc, fb.base_seq & 0xFFFF, len(fb.deltas),
                    (fb.reference_time & 0xFFFFFF) << 8 | (fb.fb_count & 0xFF)),
        struct.pack(f"!{len(chunks)}H", *chunks), delta_bytes))
    padding = -len(body) & 3
    if not padding:
        return _rtcp(15, RTCP_RTPFB, body)
    body += b"\x00" * (padding - 1) + bytes((padding,))
    return struct.pack("!BBH", 0xA0 | 15, RTCP_RTPFB, len(body) // 4) + body


def _statuses(deltas: list[int | None]) -> tuple[list[int], bytearray]:
    """The packet status chunks and the receive delta bytes of a feedback packet."""
    symbols: list[int] = []
    delta_bytes = bytearray()
    for delta in deltas:
        if delta is None:
            symbols.append(0)
        elif 0 <= delta <= 0xFF:
            symbols.append(1)
            delta_bytes.append(delta)
        elif -0x8000 <= delta <= 0x7FFF:
            symbols.append(2)
            delta_bytes += _I16.pack(delta)
        else:
            raise ValueError(f"receive delta {delta} does not fit 16 bits")
    return _encode_chunks(symbols), delta_bytes


def ntp_time(now_unix: float) -> int:
    """64-bit NTP timestamp for a Unix time."""
    seconds = now_unix + 2208988800
    return (int(seconds) << 32) | int((seconds % 1) * (1 << 32))


def ntp_to_unix(ntp: int) -> float:
    return (ntp >> 32) - 2208988800 + (ntp & 0xFFFFFFFF) / (1 << 32)

