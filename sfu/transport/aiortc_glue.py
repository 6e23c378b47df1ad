"""Everything that reaches into aiortc/aioice internals lives here (pinned: aiortc 1.16.0).

aiortc gives us SDP, ICE, DTLS and the SRTP keys. What it would do with media (jitter buffer,
decoder threads, encoder loops) is switched off; RTP and RTCP are taken right after SRTP
unprotect and sent right before the socket. tests/transport/test_aiortc_glue.py covers each
hook, so an aiortc upgrade that moves them fails loudly.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pylibsrtp
from aioice import stun
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol, get_host_addresses, relayed_candidate
from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import is_rtx
from aiortc.exceptions import InvalidStateError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

log = logging.getLogger(__name__)

RtpHandler = Callable[[bytes, float], None]
RtcpHandler = Callable[[bytes, float], None]


@dataclass(frozen=True)
class IceSettings:
    addresses: tuple[str, ...] = ("127.0.0.1",)
    announced_address: str = ""
    port_range: tuple[int, int] | None = None
    # also gather a relayed candidate from the connection's TURN server (its RTCConfiguration's
    # iceServers), as a browser does: clients; the server offers host candidates only
    relay: bool = False


# how long a TURN allocation may take while gathering (aioice's own gathering waits as long)
RELAY_TIMEOUT_S = 5.0


async def _gather_relay(connection: Connection,
                        on_drop: Callable[[str], None] | None) -> None:
    """Add a relayed candidate from ``connection``'s TURN server, or log why there is none (a
    refused credential: 401); the allocation is closed with the connection's other protocols."""

    def protocol_factory() -> FastStunProtocol:
        protocol = FastStunProtocol(connection)
        if on_drop is not None:
            protocol.on_drop = on_drop
        return protocol

    assert connection.turn_server is not None
    try:
        candidate, protocol = await asyncio.wait_for(relayed_candidate(
            component=1, hide_related_address=False, protocol_factory=protocol_factory,
            turn_server=connection.turn_server, turn_username=connection.turn_username,
            turn_password=connection.turn_password, turn_ssl=connection.turn_ssl,
            turn_transport=connection.turn_transport), RELAY_TIMEOUT_S)
    except stun.TransactionFailed as exc:
        log.warning("TURN server %s:%s refused an allocation: %s", *connection.turn_server,
                    exc.response.attributes.get("ERROR-CODE"))
        return
    except (OSError, TimeoutError, stun.TransactionError) as exc:
        log.warning("TURN server %s:%s gave no allocation: %r", *connection.turn_server, exc)
        return
    connection._protocols.append(protocol)
    connection._local_candidates.append(candidate)


async def _noop_async(*args: Any, **kwargs: Any) -> None:
    return None


def disable_media_pipeline(transceiver: RTCRtpTransceiver, *, keep_sender: bool = False) -> None:
    """Keep aiortc from decoding (receiver thread) and, unless asked, from running its sender.

    With ``receive`` a no-op the receiver never starts its decoder thread nor registers with the
    RTP router; with ``send`` a no-op the sender runs neither its RTP nor its RTCP loop.
    """
    receiver: RTCRtpReceiver = transceiver.receiver
    receiver.receive = _noop_async  # type: ignore[method-assign]
    if not keep_sender:
        sender: RTCRtpSender = transceiver.sender
        sender.send = _noop_async  # type: ignore[method-assign]


def hook_dtls(dtls: RTCDtlsTransport, on_rtp: RtpHandler, on_rtcp: RtcpHandler,
              clock: Callable[[], float], *, pass_rtcp: bool = False,
              peek: Callable[[bytes, float], bool] | None = None,
              on_drop: Callable[[str], None] | None = None) -> None:
    """Take unprotected RTP/RTCP from ``dtls`` before aiortc routes it.

    ``pass_rtcp`` keeps aiortc's own RTCP routing as well (a client's sender answers NACKs).
    ``peek`` sees each still-protected SRTP packet first (its fixed header is in clear text) and
    may consume it by returning True: a load generator that only counts skips the decryption.

    A datagram that is neither DTLS (first byte 20-63) nor RTP/RTCP (128-191, at least a fixed
    header) by RFC 7983's demultiplexing is dropped here and told to ``on_drop`` (its reason):
    aiortc's DTLS reader indexes the first byte of whatever it is given, so one empty datagram
    from anywhere raised IndexError there and closed the transport, ending the call of everyone
    on it. (STUN, first byte 0-3, is taken by aioice before this.)
    """
    original_rtcp = dtls._handle_rtcp_data

    async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
        on_rtp(data, clock())

    async def handle_rtcp(data: bytes) -> None:
        on_rtcp(data, clock())
        if pass_rtcp:
            await original_rtcp(data)

    dtls._handle_rtp_data = handle_rtp  # type: ignore[method-assign]
    dtls._handle_rtcp_data = handle_rtcp  # type: ignore[method-assign]

    # The fast path: once the SRTP keys exist, an SRTP datagram is unprotected and handled right
    # where aioice hands it over, instead of going through aioice's queue and the DTLS
    # transport's receive task (a queue put/get, two task switches and a coroutine chain per
    # packet). DTLS and anything before the keys still take aiortc's path.
    connection = dtls.transport._connection
    slow = connection.data_received
    queue = connection._queue
    drop = on_drop if on_drop is not None else _ignore_drop

    def data_received(data: bytes, component: int) -> None:
        first = data[0] if data else 0
        if 127 < first < 192:
            if len(data) < 12:
                drop("short_datagram")
                return
        elif not 19 < first < 64:
            drop("not_dtls_or_rtp")
            return
        srtp = dtls._rx_srtp
        if srtp is None or first < 128:
            # aioice queues it for aiortc's DTLS reader, which only runs once an answer has
            # started the transport: unbounded, a join that never answers kept every datagram
            # anyone sent its port (40 MB of junk: +24 MB of RSS, never given back)
            if queue.qsize() >= MAX_QUEUED_DATAGRAMS:
                drop("receive_queue_full")
                return
            slow(data, component)
            return
        try:
            if 192 <= data[1] <= 223:  # RTCP (RFC 5761)
                if pass_rtcp:
                    slow(data, component)  # aiortc's senders want it too; its path calls ours
                    return
                on_rtcp(srtp.unprotect_rtcp(data), clock())
            elif peek is None or not peek(data, clock()):
                on_rtp(srtp.unprotect(data), clock())
        except pylibsrtp.Error:
            pass  # a datagram that fails authentication is dropped, as aiortc does

    connection.data_received = data_received  # type: ignore[method-assign]


def _ignore_drop(reason: str) -> None:
    """What a dropped datagram is told when nobody counts drops."""


class WireSender:
    """Protects and sends synchronously: no coroutine, no queue on the packet path."""

    __slots__ = ("_dtls", "_protect", "_protect_rtcp", "_sendto", "_addr", "errors")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._addr: Any = None
        self.errors = 0

    def _bind(self) -> bool:
        dtls = self._dtls
        if dtls.state != "connected" or dtls._tx_srtp is None:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return False
        self._protect = dtls._tx_srtp.protect
        self._protect_rtcp = dtls._tx_srtp.protect_rtcp
        transport = pair.protocol.transport
        # our own transport: the socket's sendto directly (errors are counted below)
        self._sendto = (transport.raw_sendto if isinstance(transport, TimestampedUdpTransport)
                        else transport.sendto)
        self._addr = pair.remote_addr
        return True

    def ready(self) -> bool:
        """Whether a packet sent now would reach the wire (ICE and DTLS are up)."""
        return self._sendto is not None or self._bind()

    def send_rtp(self, data: bytes) -> None:
        if self._sendto is None and not self._bind():
            return
        try:
            self._sendto(self._protect(data), self._addr)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - a dead socket or SRTP error must not stop the fan-out
            self.errors += 1

    def send_rtcp(self, data: bytes) -> None:
        if self._sendto is None and not self._bind():
            return
        try:
            self._sendto(self._protect_rtcp(data), self._addr)  # type: ignore[misc]
        except Exception:  # noqa: BLE001
            self.errors += 1

    def reset(self) -> None:
        self._sendto = None


class FastStunProtocol(StunProtocol):
    """aioice's protocol, minus a failed STUN parse per media datagram: a first byte of 128-191
    is RTP or RTCP (RFC 7983), never STUN, so it goes straight to the connection.

    Once ICE has selected a pair, only its remote address is heard for anything but STUN (DTLS,
    RTP, RTCP): aioice passed every datagram from any address on to DTLS and SRTP, so anyone
    who learned the port could feed them. Dropped datagrams are told to ``on_drop``.

    A STUN request that does not authenticate (not a Binding, no USERNAME or MESSAGE-INTEGRITY,
    another ufrag, a wrong password) is dropped unanswered (``stun_unauthenticated``): aioice
    answered it with an error response larger than the request, so a stranger with a spoofed
    source address could make a media port reflect more than it was sent (RFC 8445 lets an
    agent ignore requests for an unknown ufrag). STUN that aioice's parser cannot take is
    dropped too (``malformed_stun``)."""

    on_drop: Callable[[str], None] = staticmethod(_ignore_drop)

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        if isinstance(data, bytes) and data and data[0] <= 3:
            refused = self._refusal(data)
            if refused is not None:
                self.on_drop(refused)
                return
        if isinstance(data, bytes) and data and data[0] > 3:  # not STUN (RFC 7983)
            pair = self.receiver._nominated.get(1)
            if pair is not None:
                remote = pair.remote_addr
                if addr[1] != remote[1] or addr[0] != remote[0]:
                    self.on_drop("unknown_address")
                    return
            if len(data) > 1 and 127 < data[0] < 192:
                self.receiver.data_received(data, self.local_candidate.component)
                return
        super().datagram_received(data, addr)

    def _refusal(self, data: bytes) -> str | None:
        """Why a STUN-looking datagram (first byte 0-3) is dropped before aioice sees it, or
        None: ``stun_unauthenticated`` for a request aioice would answer with an error (400 or
        401), ``malformed_stun`` for what its parser cannot take. None for anything else
        (responses, indications, what does not parse as STUN)."""
        try:
            message = stun.parse_message(data)
        except ValueError:
            return None  # not STUN after all: the receive path below decides
        except struct.error:
            # aioice unpacks an attribute of the wrong length (a 3-byte PRIORITY) with struct
            # and lets the error out: from any address, it reached the event loop with a
            # traceback and dropped the rest of the socket's batch
            return "malformed_stun"
        if message.message_class != stun.Class.REQUEST:
            return None
        connection = self.receiver
        attributes = message.attributes
        authentic = (message.message_method == stun.Method.BINDING
                     and "USERNAME" in attributes and "MESSAGE-INTEGRITY" in attributes
                     and connection._valid_username(attributes["USERNAME"])
                     and message.check_message_integrity(connection.local_password.encode("utf8")))
        return None if authentic else "stun_unauthenticated"


class RxTime:
    """When the kernel received the datagram being handled (``SO_TIMESTAMPNS``, on the monotonic
    clock), or None outside a datagram's handling or without a timestamp.

    Transport-wide feedback reports arrival times; taken when the event loop gets round to a
    packet, a busy loop (a 100 ms stall) looks like a queue on the network to the publisher's
    delay-based estimator. The kernel's time does not include that wait."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: float | None = None


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
_TIMESPEC = struct.Struct("@qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
READS_PER_WAKEUP = 64
# datagrams waiting for aiortc's DTLS reader (a handshake takes a few; media skips the queue)
MAX_QUEUED_DATAGRAMS = 64


class TimestampedUdpTransport(asyncio.DatagramTransport):
    """What aioice needs of a UDP transport (``sendto``, ``close``, ``get_extra_info``), reading
    with ``recvmsg`` to get each datagram's kernel receive time into ``rx`` for the protocol's
    ``datagram_received``. Sending does not queue: a datagram the socket buffer cannot take is
    dropped and counted (``send_dropped``), as the network would drop it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: asyncio.DatagramProtocol, rx: RxTime) -> None:
        super().__init__({"socket": sock, "sockname": sock.getsockname()})
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._rx = rx
        self._closing = False
        self.send_dropped = 0
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass  # no kernel timestamps: arrival times are taken when the loop reads
        protocol.connection_made(self)
        loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        sock, rx, protocol = self._sock, self._rx, self._protocol
        offset = time.time() - time.monotonic()
        try:
            for _ in range(READS_PER_WAKEUP):
                try:
                    data, ancillary, _, addr = sock.recvmsg(65536, _CMSG_SPACE)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    protocol.error_received(exc)
                    return
                at = None
                if ancillary:  # one control message: the timestamp
                    level, kind, value = ancillary[0]
                    if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET \
                            and len(value) >= _TIMESPEC.size:
                        seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                        at = seconds + nanoseconds * 1e-9 - offset
                rx.at = at
                protocol.datagram_received(data, addr)
                if self._closing:
                    return
        finally:
            rx.at = None

    @property
    def raw_sendto(self) -> Callable[..., Any]:
        """The socket's own ``sendto``: for a sender that handles its errors (``WireSender``)."""
        return self._sock.sendto

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1
        except OSError as exc:
            self._protocol.error_received(exc)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


def _bind_udp(address: str, port_range: tuple[int, int] | None) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        if port_range is None:
            sock.bind((address, 0))
            return sock
        lo, hi = port_range
        ports = list(range(lo, hi + 1))
        random.shuffle(ports)
        for port in ports:
            try:
                sock.bind((address, port))
                return sock
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {lo}-{hi} on {address}")
    except BaseException:
        sock.close()
        raise


def install_gatherer(connection: Connection, settings: IceSettings,
                     rx: RxTime | None = None,
                     on_drop: Callable[[str], None] | None = None) -> None:
    """Replace aioice's host gathering: chosen addresses (127.0.0.1 allowed), a port range,
    and an announced address for 1:1 NAT. STUN/TURN candidates are not gathered by the server;
    with ``settings.relay`` (a client) a relayed candidate is added from the connection's TURN
    server when it grants an allocation. The sockets are read by ``TimestampedUdpTransport``,
    which puts each datagram's kernel receive time into ``rx`` while it is handled."""
    rx = rx if rx is not None else RxTime()

    async def gather_candidates() -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        loop = asyncio.get_running_loop()
        addresses = list(settings.addresses) or get_host_addresses(use_ipv4=True, use_ipv6=False)
        for address in addresses:
            sock = _bind_udp(address, settings.port_range)
            protocol = FastStunProtocol(connection)
            if on_drop is not None:
                protocol.on_drop = on_drop
            TimestampedUdpTransport(loop, sock, protocol, rx)
            port = sock.getsockname()[1]
            host = settings.announced_address or address
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host), component=1,
                transport="udp", priority=candidate_priority(1, "host"), host=host,
                port=port, type="host")
            connection._protocols.append(protocol)
            connection._local_candidates.append(protocol.local_candidate)
        if settings.relay and connection.turn_server is not None:
            await _gather_relay(connection, on_drop)
        connection._local_candidates_end = True

    connection.gather_candidates = gather_candidates  # type: ignore[method-assign]
    keep_selected_pair(connection)
    patient_consent(connection)


# RFC 7675: a consent check every 5 s (x0.8-1.2); consent expires 30 s after the last answer.
CONSENT_INTERVAL_S = 5.0
CONSENT_EXPIRY_S = 30.0
CONSENT_RETRANSMISSIONS = 3  # the check's answer may take 0.5 + 1 + 2 + 4 = 7.5 s


def patient_consent(connection: Connection, interval_s: float = CONSENT_INTERVAL_S,
                    expiry_s: float = CONSENT_EXPIRY_S,
                    retransmissions: int = CONSENT_RETRANSMISSIONS) -> None:
    """Consent freshness as RFC 7675 says: expired 30 s after the last answered check.

    aioice sends each check once and counts it failed when no answer comes within 0.5 s; six such
    failures in a row close the transport. A path whose round trip stays above 0.5 s for 30 s
    (a bloated uplink, a busy peer or host) lost its call although every check was answered.
    Here a check is retransmitted with STUN's usual back-off (an answer to any copy counts) and
    only 30 s without any answer ends consent."""

    async def query_consent() -> None:
        assert connection.remote_password is not None
        key = connection.remote_password.encode("utf8")
        loop = asyncio.get_running_loop()
        answered = loop.time()
        while True:
            # connect() starts this once ICE completes: a close that came in between found no
            # task to cancel, and one that comes during the sleep may not cancel it either
            if connection._closing:
                return
            await asyncio.sleep(interval_s * (0.8 + 0.4 * random.random()))
            if connection._closing:
                return
            for pair in list(connection._nominated.values()):
                request = connection.build_request(pair, nominate=False)
                try:
                    await pair.protocol.request(request, pair.remote_addr, integrity_key=key,
                                                retransmissions=retransmissions)
                    answered = loop.time()
                except stun.TransactionError:
                    pass
            if loop.time() - answered >= expiry_s:
                log.info("ICE consent expired: no answer to consent checks for %.0f s",
                         loop.time() - answered)
                connection._query_consent_task = None
                await connection.close()
                return

    connection.query_consent = query_consent  # type: ignore[method-assign]


def keep_selected_pair(connection: Connection) -> None:
    """Once a pair is selected, stay on it. aioice nominates every pair that succeeds later
    (peer-reflexive or trickled candidates, an interface that comes and goes) and would move
    its consent checks to it; when that interface disappears, consent fails and the call drops
    although the selected path still works. Media keeps its selected pair as well."""
    original = connection.check_complete

    def check_complete(pair: Any) -> None:
        selected = connection._nominated.get(pair.component)
        if selected is not None and pair is not selected:
            pair.nominated = False
        original(pair)

    connection.check_complete = check_complete  # type: ignore[method-assign]


def ice_connection(dtls: RTCDtlsTransport) -> Connection:
    return dtls.transport._connection


def selected_pair(dtls: RTCDtlsTransport) -> tuple[Candidate, Candidate] | None:
    """The (local, remote) candidates ICE selected, once it has."""
    pair = ice_connection(dtls)._nominated.get(1)
    if pair is None:
        return None
    return pair.local_candidate, pair.remote_candidate


class ConnectTasks:
    """aiortc starts a task for every remote description that connects ICE, then DTLS, then the
    senders and receivers (``RTCPeerConnection.__connect``), and keeps no hold on it. Closed
    while ICE checks with a live peer were under way, the connection left it running (~37 s,
    holding everything), after which it raised ``InvalidStateError`` that nobody retrieved.
    Here those tasks are owned: ``close`` (before the peer connection's) cancels and awaits
    them, and one that fails because the connection closed under it is a debug line."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self._pc = pc
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        original: Callable[[], Coroutine[Any, Any, None]] = getattr(  # noqa: B009
            pc, "_RTCPeerConnection__connect")  # name-mangled: aiortc's private method

        async def connect() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await original()
            except (InvalidStateError, ConnectionError) as exc:
                if not (self._closing or pc.connectionState == "closed"):
                    raise
                log.debug("aiortc's connect ended by the close: %r", exc)
            finally:
                self._tasks.discard(task)

        setattr(pc, "_RTCPeerConnection__connect", connect)  # noqa: B010 - name-mangled

    async def close(self) -> None:
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def close_sockets_silently(connection: Connection) -> None:
    """Close an ICE connection's UDP sockets at once, sending nothing (no DTLS close_notify, no
    RTCP BYE, no more consent checks or answers): a peer whose network vanished (the soak's
    clients). Sends on them are dropped from then on."""
    for protocol in connection._protocols:
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.close()


def dtls_of(transceiver: RTCRtpTransceiver) -> RTCDtlsTransport:
    dtls: RTCDtlsTransport = transceiver.receiver.transport
    return dtls


def set_stream_id(transceiver: RTCRtpTransceiver, stream_id: str, track_id: str) -> None:
    """msid of a sending m-line: one stream per publisher, so receivers sync its audio and video."""
    transceiver.sender._stream_id = stream_id
    transceiver.sender._track_id = track_id


def sender_ssrcs(transceiver: RTCRtpTransceiver) -> tuple[int, int]:
    sender = transceiver.sender
    return int(sender._ssrc), int(sender._rtx_ssrc)


def offer_transport_cc(sdp: str, ext_id: int, uri: str) -> str:
    """Add transport-wide congestion control to an offer aiortc made: the header extension
    ``uri`` as ``ext_id`` and ``a=rtcp-fb:<pt> transport-cc`` on every codec except RTX, on
    every audio and video m-line the server sends (``sendonly``) or receives (``recvonly``) on;
    not on inactive ones.

    On the m-lines the client publishes on, a browser that accepts it stamps transport-wide
    numbers on what it sends and runs its send-side estimate on the feedback the server must
    then send (``Endpoint`` does, every 100 ms); without that feedback Chromium's video sender
    fell to about 60 kbit/s.

    aiortc cannot be told to offer it: ``createOffer`` resets each transceiver's extensions
    and codecs from its module-wide ``HEADER_EXTENSIONS`` and ``CODECS`` (changing those would
    change every peer of the process). The offer is rewritten between ``createOffer`` and
    ``setLocalDescription``; aiortc keeps the rewritten SDP as its local description and never
    sends RTP itself here, so nothing else of it needs to know.
    """
    parsed = aiortc_sdp.SessionDescription.parse(sdp)
    for media in parsed.media:
        if media.kind not in ("audio", "video") or media.direction not in ("sendonly", "recvonly"):
            continue
        extensions = media.rtp.headerExtensions
        if any(e.id == ext_id and e.uri != uri for e in extensions):
            raise ValueError(f"extension id {ext_id} is already used in aiortc's offer")
        if not any(e.uri == uri for e in extensions):
            extensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))
        for codec in media.rtp.codecs:
            if not is_rtx(codec) and not any(f.type == "transport-cc" for f in codec.rtcpFeedback):
                codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))
    return str(parsed)
