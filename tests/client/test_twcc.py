"""The synthetic client and transport-cc: the answer accepts it, the extension is read from what
arrives. (The feedback it sends is ``ReceiveHistory``'s, tested in tests/transport.)"""

from __future__ import annotations

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import sdp as aiortc_sdp

from sfu.client.client import accept_transport_cc, transport_seq
from sfu.transport import packets as P
from sfu.transport.packets import URI_TRANSPORT_CC

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
