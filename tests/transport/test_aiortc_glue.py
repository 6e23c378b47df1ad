"""The aiortc/aioice internals sfu/transport/aiortc_glue.py relies on. An upgrade that moves
one of them fails here, loudly, instead of silently decoding or dropping media."""

from __future__ import annotations

import asyncio
import contextlib
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


async def test_aiortc_offers_no_transport_cc_and_leaves_its_id_free():
    """What ``offer_transport_cc`` rewrites: aiortc's own offer, with ids 1-3 and no transport-cc
    (an aiortc that starts offering it, or takes id 5, must be looked at again)."""
    from aiortc.codecs import HEADER_EXTENSIONS

    from sfu.transport.packets import URI_TRANSPORT_CC
    from sfu.transport.transportcc import EXT_TRANSPORT_CC

    used = {e.id for kind in ("audio", "video") for e in HEADER_EXTENSIONS[kind]}
    assert used == {1, 2, 3} and EXT_TRANSPORT_CC not in used
    assert all(e.uri != URI_TRANSPORT_CC for kind in ("audio", "video") for e in HEADER_EXTENSIONS[kind])
    assert "HEADER_EXTENSIONS[transceiver.kind]" in inspect.getsource(RTCPeerConnection.createOffer)


async def test_a_rewritten_offer_is_kept_as_the_local_description_and_an_answer_applies():
    from aiortc import RTCSessionDescription
    from aiortc import sdp as aiortc_sdp

    from sfu.transport.packets import URI_TRANSPORT_CC

    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        # as the server offers: the publish m-lines recvonly, a forwarded track sendonly
        for kind, direction in (("audio", "recvonly"), ("video", "recvonly"), ("video", "sendonly")):
            offerer.addTransceiver(kind, direction=direction)
        offer = await offerer.createOffer()
        assert str(aiortc_sdp.SessionDescription.parse(offer.sdp)) == offer.sdp  # parse/str round trip
        sdp = glue.offer_transport_cc(offer.sdp, 5, URI_TRANSPORT_CC)
        assert glue.offer_transport_cc(sdp, 5, URI_TRANSPORT_CC) == sdp  # idempotent
        await offerer.setLocalDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        local = aiortc_sdp.SessionDescription.parse(offerer.localDescription.sdp)
        assert len(local.media) == 3
        # where the server sends and where it receives (it gives feedback on what it receives)
        assert [[e.id for e in m.rtp.headerExtensions if e.uri == URI_TRANSPORT_CC]
                for m in local.media] == [[5], [5], [5]]
        for media in local.media:
            for codec in media.rtp.codecs:
                feedback = [(f.type, f.parameter) for f in codec.rtcpFeedback]
                if codec.name == "rtx":
                    assert feedback == []
                else:
                    assert ("transport-cc", None) in feedback
                if codec.name == "VP8":
                    assert {("nack", None), ("nack", "pli"), ("goog-remb", None)} <= set(feedback)
        # an aiortc answerer drops what it does not know: transport-cc is then not used
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        answer = answerer.localDescription
        assert URI_TRANSPORT_CC not in answer.sdp
        await offerer.setRemoteDescription(answer)
        # a second offer is aiortc's again (built from the transceivers): it needs the rewrite again
        assert URI_TRANSPORT_CC not in (await offerer.createOffer()).sdp
    finally:
        await offerer.close()
        await answerer.close()


def test_an_id_aiortc_already_uses_is_refused():
    import pytest

    from sfu.transport.packets import URI_TRANSPORT_CC

    sdp = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\n"
           "c=IN IP4 0.0.0.0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=mid:0\r\n"
           "a=sendonly\r\na=rtpmap:97 VP8/90000\r\n")
    with pytest.raises(ValueError):
        glue.offer_transport_cc(sdp, 1, URI_TRANSPORT_CC)


async def test_datagrams_are_read_with_the_kernels_receive_time():
    """The time a datagram reached the socket, not the time the (possibly busy) loop read it."""
    import asyncio
    import socket
    import time

    loop = asyncio.get_running_loop()
    heard: list[tuple[bytes, float | None]] = []
    rx = glue.RxTime()
    got = asyncio.Event()

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            heard.append((data, rx.at))
            got.set()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport = glue.TimestampedUdpTransport(loop, sock, Protocol(), rx)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # the kernel turns receive timestamps on for the first socket that asks from a work queue:
        # datagrams of the first moment may be stamped when read; a long-lived socket never sees it
        for _ in range(50):
            sender.sendto(b"warm", sock.getsockname())
            await asyncio.wait_for(got.wait(), 5)
            got.clear()
            if heard.pop()[1] is not None:
                await asyncio.sleep(0.05)
                break
        sent_at = time.monotonic()
        sender.sendto(b"one", sock.getsockname())
        time.sleep(0.2)  # noqa: ASYNC251 - the loop is busy: the datagram waits in the socket
        busy_until = time.monotonic()
        await asyncio.wait_for(got.wait(), 5)
        [(data, at)] = heard
        assert data == b"one" and at is not None
        assert sent_at - 0.01 <= at < busy_until - 0.1, (at - sent_at, busy_until - sent_at)
        assert rx.at is None  # only while a datagram is handled
        transport.sendto(b"back", sender.getsockname())
        assert sender.recv(10) == b"back"
    finally:
        transport.close()
        sender.close()
    assert sock.fileno() == -1


def test_aioice_consent_internals_replaced_by_patient_consent():
    # why: aioice counts a check failed unless answered within 0.5 s (one send, no retransmission)
    assert "retransmissions=0" in inspect.getsource(Connection.query_consent)
    assert "self.query_consent()" in inspect.getsource(Connection.connect)
    conn = Connection(ice_controlling=True)
    for name in ("_query_consent_task", "build_request", "remote_password"):
        assert hasattr(conn, name), name


class _ConsentPair:
    """A nominated pair whose peer answers consent checks after ``delay`` seconds (None: never)."""

    def __init__(self, delay: float | None) -> None:
        from aioice.candidate import Candidate
        from aioice.ice import CandidatePair

        class Protocol:
            local_candidate = Candidate(foundation="l", component=1, transport="udp", priority=1,
                                        host="127.0.0.1", port=1, type="host")

            async def request(self_, request, addr, integrity_key=None, retransmissions=None):
                from aioice import stun

                self.retransmissions = retransmissions
                if delay is None:
                    raise stun.TransactionTimeout()
                await asyncio.sleep(delay)
                self.answered += 1

        self.retransmissions: int | None = None
        self.answered = 0
        self.pair = CandidatePair(Protocol(), Candidate(
            foundation="r", component=1, transport="udp", priority=1, host="127.0.0.1", port=2,
            type="host"))


async def _consent(delay: float | None, run_s: float) -> tuple[bool, _ConsentPair]:
    conn = Connection(ice_controlling=True)
    conn.remote_username, conn.remote_password = "peer", "secret"
    fake = _ConsentPair(delay)
    conn._nominated[1] = fake.pair
    closed = asyncio.Event()

    async def close() -> None:
        closed.set()

    conn.close = close
    glue.patient_consent(conn, interval_s=0.05, expiry_s=0.4, retransmissions=3)
    task = asyncio.ensure_future(conn.query_consent())
    try:
        await asyncio.wait_for(closed.wait(), run_s)
    except TimeoutError:
        pass
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return closed.is_set(), fake


async def test_consent_answered_slowly_holds():
    # every answer takes 0.2 s here (scaled: a 3 s round trip against 30 s expiry is the same)
    closed, fake = await _consent(0.2, run_s=1.5)
    assert not closed and fake.answered >= 3
    assert fake.retransmissions == 3  # STUN back-off: an answer to any copy counts


async def test_consent_expires_when_nothing_answers():
    closed, _ = await _consent(None, run_s=2.0)
    assert closed


class _FakeConnection:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()
        self.seen: list[bytes] = []

    def data_received(self, data: bytes, component: int) -> None:
        self.seen.append(data)
        self._queue.put_nowait((data, component))


class _FakeDtls:
    def __init__(self) -> None:
        self._rx_srtp = None
        self.transport = type("T", (), {})()
        self.transport._connection = _FakeConnection()

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        return None

    async def _handle_rtcp_data(self, data: bytes) -> None:
        return None


def test_what_is_neither_dtls_nor_rtp_never_reaches_aiortc_and_its_queue_is_bounded() -> None:
    """aiortc's DTLS reader indexes the first byte of what it reads: an empty datagram raised
    IndexError and closed the transport. Its queue is read only once an answer started DTLS:
    a join that never answered kept all that anyone sent."""
    dtls = _FakeDtls()
    dropped: list[str] = []
    glue.hook_dtls(dtls, lambda d, t: None, lambda d, t: None, lambda: 0.0,  # type: ignore[arg-type]
                   on_drop=dropped.append)
    connection = dtls.transport._connection
    deliver = connection.data_received
    for junk in (b"", b"\x00", b"\x13abc", b"\x40" * 20, b"\xc0" * 20, b"\xff", b"\x80" * 11):
        deliver(junk, 1)
    assert connection.seen == []
    assert dropped.count("not_dtls_or_rtp") == 6 and dropped.count("short_datagram") == 1
    for i in range(glue.MAX_QUEUED_DATAGRAMS + 36):
        deliver(bytes([22, 0xFE, 0xFD]) + i.to_bytes(2, "big"), 1)  # DTLS-looking
    assert len(connection.seen) == glue.MAX_QUEUED_DATAGRAMS
    assert dropped.count("receive_queue_full") == 36


async def test_consent_started_after_the_close_ends_at_once():
    """aioice's connect() starts the consent task when ICE completes; a close that ran in between
    (ICE completed as the peer went away) has nothing to cancel yet, and the task then ran on a
    closed connection until its 30 s expiry, holding it (seen as a lingering task)."""
    conn = Connection(ice_controlling=True)
    conn.remote_username, conn.remote_password = "peer", "secret"
    glue.patient_consent(conn)  # the real intervals: 5 s checks, 30 s expiry
    await conn.close()
    task = asyncio.ensure_future(conn.query_consent())  # what connect() does, after the close
    try:
        await asyncio.wait_for(asyncio.shield(task), 1.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
