"""Fuzzing the media port (sfu/transport/aiortc_glue.py): RFC 7983's demultiplexing in
``FastStunProtocol`` and the DTLS hook, with aioice's STUN parser and aiortc's DTLS reader behind
them. Two clients are in a call on a real server; datagrams of every kind (STUN-like, ZRTP,
DTLS records, TURN channel data, RTP/RTCP-like, anything) are fed to a live endpoint's UDP
protocol as if from its peer's own address (the selected pair: what an attacker on the path can
send), and sent over real UDP from a stranger. Nothing raises or is logged with a traceback, the
peer stays connected, and media keeps flowing both ways."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from aioice import stun
from aioice.candidate import Candidate
from aioice.ice import Connection
from hypothesis import example, given
from hypothesis import strategies as st

from sfu.auth import mint_token
from sfu.client.client import Client
from sfu.transport.aiortc_glue import FastStunProtocol
from tests.conftest import SECRET
from tests.fuzz.budget import budget
from tests.fuzz.live import LiveServer
from tests.fuzz.strategies import rtp_or_mutant
from tests.fuzz.test_rtcp import any_rtcp
from tests.integration.helpers import receives_everyone

LIVE_CONFIG = {"media": {"inactivity_timeout": 10.0}}  # the live fixture's server config


def first_byte(lo: int, hi: int) -> st.SearchStrategy[bytes]:
    return st.builds(lambda b, rest: bytes((b,)) + rest, st.integers(lo, hi), st.binary(max_size=60))


@st.composite
def stun_like(draw: st.DrawFn) -> bytes:
    """A STUN header (RFC 5389: type, length, magic cookie, transaction id) and attributes of
    any type and length, the header's length right or not; or a real binding request."""
    if draw(st.booleans()):
        message = stun.Message(message_method=stun.Method.BINDING,
                               message_class=draw(st.sampled_from(list(stun.Class))),
                               transaction_id=draw(st.binary(min_size=12, max_size=12)))
        if draw(st.booleans()):
            message.attributes["USERNAME"] = draw(st.text(max_size=20))
        if draw(st.booleans()):
            message.attributes["PRIORITY"] = draw(st.integers(0, 0xFFFFFFFF))
        data = bytes(message)
        if draw(st.booleans()):
            message.add_message_integrity(draw(st.binary(max_size=24)))
            data = bytes(message)
        return data
    attributes = b"".join(
        struct.pack("!HH", kind, len(value)) + value + b"\x00" * (-len(value) & 3)
        for kind, value in draw(st.lists(st.tuples(
            st.sampled_from([0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x0020, 0x0024, 0x0025,
                             0x8022, 0x8028, 0x8029, 0x802A, 0xC057, 0x1234]),
            st.binary(max_size=24)), max_size=4)))
    length = draw(st.one_of(st.just(len(attributes)), st.integers(0, 0xFFFF)))
    head = struct.pack("!HHI", draw(st.integers(0, 0x3FFF)), length, 0x2112A442)
    return head + draw(st.binary(min_size=12, max_size=12)) + attributes


@st.composite
def dtls_records(draw: st.DrawFn) -> bytes:
    """DTLS record headers (content type, version, epoch, sequence, length) with any body,
    possibly cut short, several in a datagram."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        body = draw(st.binary(max_size=80))
        length = draw(st.one_of(st.just(len(body)), st.integers(0, 0xFFFF)))
        out += struct.pack("!B2sH6sH", draw(st.sampled_from([20, 21, 22, 23, 24, 25, 63])),
                           draw(st.sampled_from([b"\xfe\xfd", b"\xfe\xff", b"\x03\x03"])),
                           draw(st.integers(0, 3)), draw(st.binary(min_size=6, max_size=6)),
                           length) + body
    return out[:draw(st.integers(0, len(out)))] if draw(st.booleans()) else out


datagrams = st.one_of(
    st.binary(max_size=100), stun_like(), first_byte(0, 3), first_byte(16, 19), dtls_records(),
    first_byte(20, 63), first_byte(64, 79), rtp_or_mutant(), any_rtcp(), first_byte(192, 255),
    st.sampled_from([b"", b"\x00", b"\x14", b"\x16\xfe\xfd", b"\x80", b"\x80\xc8"]))


async def endpoint_path(live: LiveServer, participant: str) -> tuple[Any, tuple[str, int]]:
    """The server endpoint's UDP protocol on the selected pair, and the peer's address on it."""
    for call in live.server.calls.by_key.values():
        p = call.participants.get(participant)
        if p is not None:
            pair = p.endpoint.peer.dtls.transport._connection._nominated[1]
            return pair.protocol, pair.remote_addr
    raise AssertionError("participant not in a call")


async def feed(live: LiveServer, participant: str, spoofed: list[bytes]) -> None:
    protocol, peer = await endpoint_path(live, participant)
    for data in spoofed:
        protocol.datagram_received(data, peer)  # must not raise
        await asyncio.sleep(0)  # let aiortc's DTLS reader take what was queued for it


async def flows(clients: list[Client]) -> tuple[int, ...]:
    before = [c.received_from(o.participant or "", kind).packets  # type: ignore[union-attr]
              for c in clients for o in clients if o is not c for kind in ("audio", "video")]
    await asyncio.sleep(1.0)
    after = [c.received_from(o.participant or "", kind).packets  # type: ignore[union-attr]
             for c in clients for o in clients if o is not c for kind in ("audio", "video")]
    return tuple(b - a for a, b in zip(before, after, strict=True))


def test_datagrams_of_any_kind_at_a_live_media_port_change_nothing(live, clip, no_traceback_logged):
    clients = [Client(live.url, mint_token(SECRET, sub=sub, role="staff", clinic="demo"),
                      clip=clip) for sub in ("a", "b")]
    for c in clients:
        live.run(c.join({"room": "team"}))
    live.run(clients[0].wait_until(receives_everyone(clients), timeout=20))
    offer = next(m["sdp"] for m in clients[0].messages if m["type"] == "offer")
    port = next(int(line.split()[5]) for line in offer.splitlines() if line.startswith("a=candidate"))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim = clients[0].participant or ""

    @budget(60, fuzz=3000)
    @given(st.lists(datagrams, min_size=1, max_size=10), st.lists(datagrams, max_size=4))
    @example([MALFORMED_STUN], [MALFORMED_STUN])
    def hostile(spoofed, from_stranger):
        live.run(feed(live, victim, spoofed))
        for data in from_stranger:
            stranger.sendto(data, ("127.0.0.1", port))

    dropped = dict(live.server.counters.dropped)
    try:
        hostile()
        assert all(live.run(flows(clients))), "media stopped"
        grew = {k for k, n in live.server.counters.dropped.items() if n > dropped.get(k, 0)}
        assert {"not_dtls_or_rtp", "unknown_address"} <= grew, live.server.counters.dropped
        assert not [m for c in clients for m in c.messages
                    if m["type"] in ("error", "ended", "participant_left")]
    finally:
        stranger.close()
        for c in clients:
            live.run(c.leave())
    assert not no_traceback_logged.records, no_traceback_logged.records
    assert not live.loop_errors, live.loop_errors


# a binding request whose PRIORITY attribute is 3 bytes long (found by atheris): aioice's parser
# raised struct.error, which it does not catch, and the event loop logged it with a traceback
MALFORMED_STUN = (struct.pack("!HHI", 0x0001, 8, 0x2112A442) + bytes(range(12))
                  + struct.pack("!HH", 0x0024, 3) + b"abc\x00")


async def test_stun_that_aioice_cannot_parse_is_dropped_and_counted():
    connection = Connection(ice_controlling=False)
    protocol = FastStunProtocol(connection)
    protocol.local_candidate = Candidate(foundation="1", component=1, transport="udp",
                                         priority=1, host="127.0.0.1", port=9, type="host")
    dropped: list[str] = []
    protocol.on_drop = dropped.append  # type: ignore[method-assign]
    try:
        protocol.datagram_received(MALFORMED_STUN, ("127.0.0.1", 5000))
        assert dropped == ["malformed_stun"]
    finally:
        await connection.close()
