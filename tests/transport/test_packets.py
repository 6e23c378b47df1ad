"""RTP/RTCP parsing and building: round trips and malformed input."""

from __future__ import annotations

import os

import pytest

from sfu.transport import packets as P


def rtp(seq=1, ts=1000, ssrc=0x1234, pt=96, marker=False, ext=b"", payload=b"\x10\x00abc", padding=0):
    body = payload + (b"\x00" * (padding - 1) + bytes((padding,)) if padding else b"")
    data = P.build_rtp(0x20 if padding else 0, marker, pt, seq, ts, ssrc, ext, body)
    return data


def test_parse_reads_the_fixed_header_and_one_byte_extensions():
    ext = P.ext_block(P.ext_element(1, b"3") + P.ext_element(3, b"\x01\x02\x03"))
    packet = P.parse_rtp(rtp(seq=65535, ts=0xFFFFFFFF, ssrc=7, pt=97, marker=True, ext=ext))
    assert (packet.seq, packet.ts, packet.ssrc, packet.pt, packet.marker) == (65535, 0xFFFFFFFF, 7, 97, True)
    assert packet.ext == {1: b"3", 3: b"\x01\x02\x03"}
    assert packet.payload == b"\x10\x00abc"


@pytest.mark.parametrize("data", [b"", b"\x80" * 11, b"\x40" + b"\x00" * 20,
                                  b"\x90\x60\x00\x01" + b"\x00" * 8 + b"\xbe\xde\x00\x05",
                                  b"\xa0\x60\x00\x01" + b"\x00" * 8 + b"\x00\x00\xff",
                                  # an extension element whose value is cut off by the end of
                                  # the packet (it was parsed as empty) or runs into the payload
                                  b"\x90\x60\x00\x01" + b"\x00" * 8 + b"\xbe\xde\x00\x01\x00\x00\x00\x21",
                                  b"\x90\x60\x00\x01" + b"\x00" * 8 + b"\xbe\xde\x00\x01\x00\x00\x00\x21abc"])
def test_malformed_rtp_raises_value_error(data):
    with pytest.raises(ValueError):
        P.parse_rtp(data)


def test_random_garbage_never_raises_anything_but_value_error():
    for _ in range(2000):
        data = os.urandom(os.urandom(1)[0] % 64)
        try:
            P.parse_rtp(data)
        except ValueError:
            pass
        try:
            P.parse_rtcp(data)
        except ValueError:
            pass


def test_vp8_keyframe_detection():
    # S=1, PID=0, no extension; payload header P bit 0 -> keyframe
    assert P.vp8_frame_info(b"\x10\x00\x00\x00") == (True, True)
    assert P.vp8_frame_info(b"\x10\x01\x00\x00") == (True, False)
    assert P.vp8_frame_info(b"\x00\x00") == (False, False)  # not a frame start
    # X=1, I=1 with 15-bit picture id, then payload header
    assert P.vp8_frame_info(b"\x90\x80\x81\x23\x00") == (True, True)


def test_rtx_unwrap_restores_the_original_packet():
    original = P.parse_rtp(rtp(seq=500, ts=9, ssrc=1, pt=97, payload=b"\x10\x00xyz"))
    rtx = P.parse_rtp(rtp(seq=7, ts=9, ssrc=2, pt=98, payload=b"\x01\xf4" + original.payload))
    unwrapped = P.unwrap_rtx(rtx, 97, 1)
    assert (unwrapped.seq, unwrapped.ssrc, unwrapped.pt, unwrapped.payload) == (500, 1, 97, b"\x10\x00xyz")


def test_rtcp_round_trips():
    block = P.ReportBlock(5, 12, -3, 70000, 40, 0xABCD, 100)
    sr = P.SenderReport(1, P.ntp_time(1_700_000_000.5), 1234, 10, 2000, [block])
    data = (P.build_sr(sr) + P.build_rr(P.ReceiverReport(2, [block])) + P.build_sdes_cname(1, "x")
            + P.build_pli(3, 4) + P.build_nack(3, 4, [10, 11, 26, 65535, 3]) + P.build_remb(3, 750_000, [4, 5]))
    msgs = P.parse_rtcp(data)
    assert msgs[0] == sr and msgs[1] == P.ReceiverReport(2, [block])
    assert msgs[2] == P.Pli(3, 4)
    assert isinstance(msgs[3], P.Nack) and sorted(msgs[3].lost) == [3, 10, 11, 26, 65535]
    remb = msgs[4]
    assert isinstance(remb, P.Remb) and abs(remb.bitrate - 750_000) < 750_000 * 0.01 and remb.ssrcs == [4, 5]


def test_rtcp_length_beyond_datagram_is_refused():
    with pytest.raises(ValueError):
        P.parse_rtcp(b"\x81\xc9\x00\x10" + b"\x00" * 8)
