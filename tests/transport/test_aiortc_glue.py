"""The aiortc/aioice internals sfu/transport/aiortc_glue.py relies on. An upgrade that moves
one of them fails here, loudly, instead of silently decoding or dropping media."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from aioice.ice import Connection
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from sfu.transport import aiortc_glue as glue


def test_pinned_versions():
    assert version("aiortc") == "1.16.0"
    assert version("aioice") == "0.13.0"


def test_dtls_transport_hooks_exist_with_the_expected_signatures():
    assert list(inspect.signature(RTCDtlsTransport._handle_rtp_data).parameters) == [
        "self", "data", "arrival_time_ms"]
    assert list(inspect.signature(RTCDtlsTransport._handle_rtcp_data).parameters) == ["self", "data"]
    src = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "self._handle_rtp_data(" in src and "self._handle_rtcp_data(" in src
    assert "_tx_srtp" in inspect.getsource(RTCDtlsTransport._send_rtp)


def test_receiver_and_sender_start_their_pipelines_only_in_receive_and_send():
    assert "decoder_worker" in inspect.getsource(RTCRtpReceiver.receive)
    assert "_run_rtp" in inspect.getsource(RTCRtpSender.send)
    assert "receiver.receive(" in inspect.getsource(RTCPeerConnection)


def test_ice_connection_internals_used_by_the_gatherer_and_the_wire_sender():
    conn = Connection(ice_controlling=True)
    for name in ("_local_candidates_start", "_local_candidates_end", "_protocols",
                 "_local_candidates", "_nominated"):
        assert hasattr(conn, name), name


async def test_hooks_switch_off_aiortcs_media_pipeline():
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        glue.disable_media_pipeline(transceiver)
        await transceiver.receiver.receive(None)  # a no-op: no decoder thread is started
        await transceiver.sender.send(None)
        dtls = glue.dtls_of(transceiver)
        seen = []
        glue.hook_dtls(dtls, lambda d, t: seen.append(("rtp", d)), lambda d, t: seen.append(("rtcp", d)),
                       lambda: 1.0)
        await dtls._handle_rtp_data(b"x", arrival_time_ms=0)
        await dtls._handle_rtcp_data(b"y")
        assert seen == [("rtp", b"x"), ("rtcp", b"y")]
    finally:
        await pc.close()


async def test_gatherer_binds_the_configured_address_and_port_range():
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("audio", direction="recvonly")
        conn = glue.ice_connection(glue.dtls_of(transceiver))
        glue.install_gatherer(conn, glue.IceSettings(("127.0.0.1",), "203.0.113.7", (42000, 42010)))
        await conn.gather_candidates()
        (candidate,) = conn.local_candidates
        assert candidate.host == "203.0.113.7" and 42000 <= candidate.port <= 42010
        assert conn._protocols[0].transport.get_extra_info("sockname")[0] == "127.0.0.1"
    finally:
        await pc.close()


def test_a_selected_pair_is_kept_when_another_succeeds_later():
    from aioice.candidate import Candidate
    from aioice.ice import CandidatePair

    conn = Connection(ice_controlling=True)
    glue.keep_selected_pair(conn)

    class FakeProtocol:
        def __init__(self, host: str) -> None:
            self.local_candidate = Candidate(foundation=host, component=1, transport="udp",
                                             priority=1, host=host, port=1, type="host")

    def pair(host: str) -> CandidatePair:
        p = CandidatePair(FakeProtocol(host), Candidate(foundation="r" + host, component=1,
                                                         transport="udp", priority=1, host=host,
                                                         port=2, type="host"))
        p.state = CandidatePair.State.SUCCEEDED
        p.nominated = True
        return p

    first, later = pair("127.0.0.1"), pair("10.0.0.9")
    conn.check_complete(first)
    assert conn._nominated[1] is first
    conn.check_complete(later)
    assert conn._nominated[1] is first and not later.nominated
