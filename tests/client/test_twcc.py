"""Transport-cc feedback bytes (draft-holmer-rmcat-transport-wide-cc-extensions-01, 3.1)."""

from __future__ import annotations

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import sdp as aiortc_sdp

from sfu.client.client import accept_transport_cc, transport_seq
from sfu.client.twcc import URI_TRANSPORT_CC, TransportFeedback, build_transport_feedback
from sfu.transport import packets as P

MS = 1000  # microseconds


def test_two_bit_vector_with_a_loss_and_a_large_delta() -> None:
    base = 64_000 * MS  # reference time 1000 x 64 ms
    packet = build_transport_feedback(1, 2, 100, 0, [base + 1 * MS, None, base + 1500,
                                                     base + 71_500])
    assert packet.hex() == (
        "afcd0006"  # V=2, P=1, FMT=15; PT=205 (RTPFB); 6 words follow
        "00000001" "00000002"  # sender SSRC, media SSRC
        "0064" "0004"  # base sequence number 100, 4 packets
        "0003e8" "00"  # reference time 1000 (64 ms units), feedback packet count 0
        "d180"  # status vector, 2-bit symbols: small, not received, small, large, (3 unused)
        "04" "02" "0118"  # deltas: 1 ms, 0.5 ms (one byte each), 70 ms (280 ticks, two bytes)
        "0002"  # padding: two bytes, the last one counts them
    )


def test_run_length_chunk() -> None:
    arrivals = [128 * MS + k * MS for k in range(20)]  # every 1 ms from the reference time 2
    packet = build_transport_feedback(7, 9, 0xFFFE, 5, arrivals)
    assert packet.hex() == (
        "afcd000a" "00000007" "00000009" "fffe" "0014" "000002" "05"
        "2014"  # run length chunk: symbol 1 (small delta), 20 packets
        "00" + "04" * 19  # deltas: 0, then 1 ms (4 ticks) each
        + "0002"
    )


def test_one_bit_vector() -> None:
    packet = build_transport_feedback(1, 2, 5, 255, [0, None, 2 * MS, None, None, 3 * MS, 4 * MS])
    assert packet.hex() == (
        "afcd0006" "00000001" "00000002" "0005" "0007" "000000" "ff"
        "a980"  # status vector, 1-bit symbols: 1 0 1 0 0 1 1 (rest unused)
        "00" "08" "04" "04"  # 0, 2 ms, 1 ms, 1 ms
        "0002"
    )


def test_no_padding_when_aligned() -> None:
    packet = build_transport_feedback(1, 2, 5, 1, [0, None, 2 * MS])
    assert packet.hex() == (
        "8fcd0005" "00000001" "00000002" "0005" "0003" "000000" "01" "a800" "00" "08"
    )


def test_negative_delta_is_two_bytes_signed() -> None:
    packet = build_transport_feedback(1, 2, 0, 0, [1 * MS, 500])
    assert packet.hex() == (
        "afcd0006" "00000001" "00000002" "0000" "0002" "000000" "00"
        "d800" "04" "fffe" "000003"
    )


def test_a_packet_without_any_arrival_is_refused() -> None:
    with pytest.raises(ValueError):
        build_transport_feedback(1, 2, 0, 0, [None, None])


def test_recorder_reports_losses_once_and_unwraps_sequence_numbers() -> None:
    fb = TransportFeedback(0x1234)
    assert fb.feedback(9) == []
    fb.on_packet(0xFFFE, 1.000)
    fb.on_packet(0x0001, 1.002)  # 0xFFFF and 0x0000 missing
    fb.on_packet(0xFFFD, 1.003)  # reordered, before the first report: still reported
    first = fb.feedback(9)
    assert len(first) == 1
    assert first[0][12:16].hex() == "fffd" "0005"
    fb.on_packet(0xFFFF, 1.010)  # too late: reported lost already
    assert fb.feedback(9) == []
    fb.on_packet(0x0002, 1.100)
    second = fb.feedback(9)
    assert second[0][12:16].hex() == "0002" "0001" and second[0][19] == 1  # fb count 1
    assert fb.packets == 2


def test_recorder_splits_long_reports() -> None:
    fb = TransportFeedback(1, max_per_packet=10)
    for seq in range(25):
        fb.on_packet(seq, 1.0 + seq / 1000)
    packets = fb.feedback(2)
    assert [p[12:16].hex() for p in packets] == ["0000000a", "000a000a", "00140005"]
    assert [p[19] for p in packets] == [0, 1, 2]


# --- negotiation and the header extension ----------------------------------------------------


def test_transport_seq_is_read_from_the_one_byte_extensions() -> None:
    ext = P.ext_block(P.ext_element(1, b"0") + P.ext_element(5, b"\x12\x34"))
    packet = P.build_rtp(0, False, 96, 1, 2, 3, ext, b"payload")
    assert transport_seq(packet, 5) == 0x1234
    assert transport_seq(packet, 7) is None
    assert transport_seq(P.build_rtp(0, False, 96, 1, 2, 3, b"", b"x"), 5) is None


async def test_the_answer_keeps_transport_cc_and_aiortc_accepts_it() -> None:
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[],
                                                  bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        offerer.addTransceiver("audio")
        offerer.addTransceiver("video")
        await offerer.setLocalDescription(await offerer.createOffer())
        lines = []
        for line in offerer.localDescription.sdp.split("\r\n"):
            lines.append(line)
            if line.startswith("a=mid:"):
                lines.append(f"a=extmap:9 {URI_TRANSPORT_CC}")
            if line.startswith("a=rtpmap:") and ("VP8" in line or "opus" in line):
                lines.append(f"a=rtcp-fb:{line.split(':')[1].split()[0]} transport-cc")
        offer_sdp = "\r\n".join(lines)
        await answerer.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        answer = await answerer.createAnswer()
        assert URI_TRANSPORT_CC not in answer.sdp  # aiortc drops what it does not know
        patched = accept_transport_cc(aiortc_sdp.SessionDescription.parse(offer_sdp), answer.sdp)
        await answerer.setLocalDescription(RTCSessionDescription(patched, "answer"))
        parsed = aiortc_sdp.SessionDescription.parse(answerer.localDescription.sdp)
        for media in parsed.media:
            assert [e.id for e in media.rtp.headerExtensions if e.uri == URI_TRANSPORT_CC] == [9]
            assert any(f.type == "transport-cc" for c in media.rtp.codecs for f in c.rtcpFeedback)
        assert accept_transport_cc(parsed, patched) == patched  # idempotent
    finally:
        await offerer.close()
        await answerer.close()
