"""Bad signaling input gets a clear error and changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket

import aiohttp
import jwt
import pytest

from sfu.client.client import Client, ClientError
from tests.conftest import SECRET
from tests.integration.helpers import close_all, join_all, receives_everyone, wait_for


async def ws(server, tok):
    session = aiohttp.ClientSession()
    sock = await session.ws_connect(f"{server.url.replace('http', 'ws')}/v1/ws?token={tok}")
    return session, sock


async def next_json(sock, timeout=5.0):
    msg = await asyncio.wait_for(sock.receive(), timeout)
    if msg.type != aiohttp.WSMsgType.TEXT:
        return {"type": "closed"}
    return json.loads(msg.data)


async def started_server(session: dict | None = None, **config):
    """A server of its own (config overrides as make_config takes them; ``session``: the
    signaling sessions' timings), started on loopback."""
    from sfu.service.server import Server
    from tests.conftest import make_config

    srv = Server(make_config(**config))
    if session:
        srv._session_context = dataclasses.replace(srv._session_context, **session)
    await srv.start("127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{srv.port}"  # type: ignore[attr-defined]
    return srv


def snapshot(server):
    return {key: sorted(call.participants) for key, call in server.calls.by_key.items()}


@pytest.mark.parametrize("bad", [
    "not a token",
    jwt.encode({"sub": "x", "role": "staff", "clinic": "demo", "exp": 1}, SECRET, algorithm="HS256"),
    jwt.encode({"sub": "x", "role": "staff", "clinic": "demo", "exp": 4102444800}, "wrong-secret-123456",
               algorithm="HS256"),
    jwt.encode({"sub": "x", "role": "staff", "exp": 4102444800}, SECRET, algorithm="HS256"),
    "",
])
async def test_bad_tokens_are_refused_before_anything_else(server, bad):
    session, sock = await ws(server, bad)
    try:
        await sock.send_str(json.dumps({"type": "join", "target": {"room": "team"}}))
        msg = await next_json(sock)
        assert msg["type"] == "error" and msg["code"] == "unauthorized"
        assert (await next_json(sock))["type"] == "closed"
        assert server.calls.by_key == {}
    finally:
        await session.close()


async def test_every_kind_of_bad_message_gets_bad_request_and_the_room_is_unchanged(server, token, clip):
    clients = await join_all(server.url, [token(sub="a"), token(sub="b")], clip, {"room": "team"})
    await wait_for(receives_everyone(clients), timeout=15)
    before = snapshot(server)
    seen = [len(c.messages) for c in clients]
    session, sock = await ws(server, token(sub="c"))
    try:
        for frame in [
            "{not json",
            json.dumps([1, 2]),
            json.dumps({"no": "type"}),
            json.dumps({"type": "dance"}),
            json.dumps({"type": "answer", "sdp": "v=0"}),  # answer before join
            json.dumps({"type": "join", "target": "team"}),
            json.dumps({"type": "join", "target": {"room": "team", "space": "x"}}),
            json.dumps({"type": "candidate", "candidate": "garbage"}),  # before join
            # (over max_message_bytes the socket closes: tests/integration/test_limits.py)
        ]:
            await sock.send_str(frame)
            msg = await next_json(sock)
            assert msg["type"] == "error" and msg["code"] == "bad_request", (frame[:40], msg)
            assert msg["message"]
        await sock.send_bytes(b"\x00\x01")
        assert (await next_json(sock))["code"] == "bad_request"
        assert snapshot(server) == before
        for c, n in zip(clients, seen, strict=True):
            assert not [m for m in c.messages[n:] if m["type"] in ("participant_joined", "participant_left")]
    finally:
        await session.close()
        await close_all(clients)


async def test_an_answer_that_does_not_fit_the_offer_is_refused_and_the_call_goes_on(server, token, clip):
    a, b = await join_all(server.url, [token(sub="a"), token(sub="b")], clip, {"room": "team"})
    try:
        await wait_for(receives_everyone([a, b]), timeout=15)
        offer = await a.wait_message(lambda m: m["type"] == "offer")
        for sdp in ["v=0\r\nnonsense", offer["sdp"].split("m=video")[0], "x" * 1000]:
            await a.send({"type": "answer", "sdp": sdp})
        errors = []
        await a.wait_until(lambda: len([m for m in a.messages if m["type"] == "error"]) >= 3)
        errors = [m for m in a.messages if m["type"] == "error"]
        assert all(e["code"] == "bad_request" for e in errors)
        before = b.received_from(a.participant, "video").packets
        await asyncio.sleep(0.5)
        assert b.received_from(a.participant, "video").packets > before
        assert len(next(iter(server.calls.by_key.values())).participants) == 2
    finally:
        await close_all([a, b])


async def test_join_twice_and_unknown_rooms(server, token, clip):
    c = Client(server.url, token(sub="a"), clip=clip)
    try:
        await c.join({"room": "team"})
        await c.send({"type": "join", "target": {"room": "team"}})
        msg = await c.wait_message(lambda m: m["type"] == "error")
        assert msg["code"] == "bad_request"
        other = Client(server.url, token(sub="b"), clip=clip)
        with pytest.raises(ClientError) as refused:
            await other.join({"room": "nope"})
        assert refused.value.code == "not_found"
        await other.close()
    finally:
        await c.leave()


def hostile_datagrams() -> list[bytes]:
    """What a stranger can send to a live media port: an empty datagram, every single byte,
    short RTP/RTCP, truncated and garbage DTLS records (handshake, alert, application data),
    STUN-looking and TURN-channel-looking junk."""
    out = [b"", b"\x00" * 3, b"\x80" * 11, b"\x80\xc8", b"\x00\x01\x00\x00"]
    out += [bytes([i]) for i in range(256)]
    for content_type in (20, 21, 22, 23, 63):
        header = bytes([content_type, 0xFE, 0xFD]) + bytes(8) + b"\x00\x40"
        out += [header[:n] for n in range(1, len(header) + 1)]
        out += [header + bytes(range(20)), header + b"\xff" * 100]
    out += [bytes([0x40 | i]) + bytes(30) for i in range(4)]  # TURN channel data, not ours
    return out


async def test_hostile_datagrams_at_a_live_media_port_do_not_end_the_call(server, token, clip):
    """One empty datagram made aiortc's DTLS reader raise IndexError and close the transport:
    both participants left with ``failed``. Now, once ICE has selected a pair, nothing but STUN
    from another address is heard (``unknown_address``); what is not DTLS or RTP is dropped
    whatever its source (unit test in tests/transport/test_aiortc_glue.py). Media flows."""
    a, b = await join_all(server.url, [token(sub="a"), token(sub="b")], clip, {"room": "team"})
    try:
        await wait_for(receives_everyone([a, b]), timeout=15)
        ports = set()
        for c in (a, b):
            offer = (await c.wait_message(lambda m: m["type"] == "offer"))["sdp"]
            ports |= {int(line.split()[5]) for line in offer.splitlines()
                      if line.startswith("a=candidate")}
        dropped_before = sum(server.counters.dropped.values())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for port in ports:
                for datagram in hostile_datagrams():
                    s.sendto(datagram, ("127.0.0.1", port))
        await asyncio.sleep(1.0)
        pairs = ((a, b), (b, a))
        before = [c.received_from(o.participant, "video").packets for c, o in pairs]
        await asyncio.sleep(2.0)
        after = [c.received_from(o.participant, "video").packets for c, o in pairs]
        assert after[0] > before[0] and after[1] > before[1], (before, after)
        assert not [m for c in (a, b) for m in c.messages
                    if m.get("type") in ("error", "ended", "participant_left")]
        assert sum(server.counters.dropped.values()) > dropped_before
        assert server.counters.dropped.get("unknown_address", 0) >= len(hostile_datagrams())
    finally:
        await close_all([a, b])


async def test_garbage_datagrams_at_the_media_port_change_nothing(server, token, clip):
    a, b = await join_all(server.url, [token(sub="a"), token(sub="b")], clip, {"room": "team"})
    try:
        await wait_for(receives_everyone([a, b]), timeout=15)
        offer = (await a.wait_message(lambda m: m["type"] == "offer"))["sdp"]
        port = int(next(line for line in offer.splitlines() if line.startswith("a=candidate")).split()[5])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(300):
                s.sendto(bytes([0x80 | (i % 64), i % 256]) + bytes(range(i % 200)), ("127.0.0.1", port))
        before = b.received_from(a.participant, "video").packets
        await asyncio.sleep(0.7)
        assert b.received_from(a.participant, "video").packets > before
    finally:
        await close_all([a, b])


async def test_a_join_that_never_answers_its_offer_is_let_go_after_the_connect_timeout(token):
    """The connect timer started only once an answer arrived: a join that never answered kept
    its endpoint and UDP port (and whatever anyone sent there) for as long as its socket stayed."""
    srv = await started_server(media={"connect_timeout": 2.0})
    session, sock = await ws(srv, token(sub="silent"))
    try:
        await sock.send_str(json.dumps({"type": "join", "target": {"room": "team"}}))
        seen = []
        while not any(m["type"] == "offer" for m in seen):
            seen.append(await next_json(sock))
        assert len(srv.calls.by_key) == 1
        # no answer: within the timeout and a liveness tick it is told and let go
        told = await next_json(sock, timeout=6.0)
        assert told["type"] == "error" and told["code"] == "media_failed", told
        await wait_for(lambda: not srv.calls.by_key, timeout=3)
    finally:
        await session.close()
        await srv.close()


async def ws_plain(server):
    session = aiohttp.ClientSession()
    sock = await session.ws_connect(f"{server.url.replace('http', 'ws')}/v1/ws")
    return session, sock


async def authed(server, tok: str):
    """A socket that sent its token in a first ``auth`` message and was answered."""
    session, sock = await ws_plain(server)
    await sock.send_str(json.dumps({"type": "auth", "token": tok}))
    assert (await next_json(sock))["type"] == "authenticated"
    return session, sock


async def test_the_token_in_a_first_auth_message_then_join_and_a_refresh(server, token):
    session, sock = await ws_plain(server)
    try:
        await sock.send_str(json.dumps({"type": "auth", "token": token(sub="a")}))
        told = await next_json(sock)
        assert told["type"] == "authenticated" and told["expires_at"].endswith("Z")
        await sock.send_str(json.dumps({"type": "join", "target": {"room": "team"}}))
        assert (await next_json(sock))["type"] == "joined"
        # a fresh token for the same participant: accepted; for someone else: refused, closed
        await sock.send_str(json.dumps({"type": "auth", "token": token(sub="a", ttl=7200)}))
        seen = [await next_json(sock)]
        while seen[-1]["type"] != "authenticated":
            seen.append(await next_json(sock))
        await sock.send_str(json.dumps({"type": "auth", "token": token(sub="b")}))
        while (msg := await next_json(sock))["type"] not in ("error", "closed"):
            pass
        assert msg.get("code") == "unauthorized", msg
        assert (await next_json(sock))["type"] == "closed"
        await wait_for(lambda: not server.calls.by_key, timeout=5)
    finally:
        await session.close()


@pytest.mark.parametrize("first", [
    {"type": "join", "target": {"room": "team"}},  # no auth at all
    {"type": "auth"},
    {"type": "auth", "token": "not a token"},
    {"type": "auth", "token": 42},
])
async def test_without_a_good_first_auth_nothing_else_is_read(server, first):
    session, sock = await ws_plain(server)
    try:
        await sock.send_str(json.dumps(first))
        msg = await next_json(sock)
        assert msg["type"] == "error" and msg["code"] == "unauthorized", msg
        assert (await next_json(sock))["type"] == "closed"
        assert server.calls.by_key == {}
    finally:
        await session.close()


async def test_a_socket_that_never_authenticates_is_closed(token):
    srv = await started_server(session=dict(auth_timeout=0.5))
    session, sock = await ws_plain(srv)
    try:
        msg = await next_json(sock, timeout=3.0)
        assert msg["type"] == "error" and msg["code"] == "unauthorized", msg
        assert (await next_json(sock))["type"] == "closed"
    finally:
        await session.close()
        await srv.close()


async def test_the_operator_may_refuse_tokens_in_the_url(token):
    srv = await started_server(auth={"url_token": False})
    session, sock = await ws(srv, token(sub="a"))
    try:
        await sock.send_str(json.dumps({"type": "join", "target": {"room": "team"}}))
        msg = await next_json(sock)
        assert msg["type"] == "error" and msg["code"] == "unauthorized", msg
        assert srv.calls.by_key == {}
    finally:
        await session.close()
        await srv.close()


async def test_an_authenticated_socket_that_asks_for_nothing_is_closed(token):
    srv = await started_server(session=dict(purpose_timeout=0.5))
    session, sock = await authed(srv, token(sub="idle"))
    busy_session, busy = await authed(srv, token(sub="watcher"))
    try:
        await busy.send_str(json.dumps({"type": "watch", "waiting_area": True}))
        msg = await next_json(sock, timeout=3.0)
        assert msg["type"] == "error" and msg["code"] == "bad_request", msg
        assert (await next_json(sock))["type"] == "closed"
        # the one that asked (a dashboard feed) stays
        await asyncio.sleep(0.8)
        assert not busy.closed
    finally:
        await session.close()
        await busy_session.close()
        await srv.close()


async def test_one_token_cannot_take_every_media_port(token, clip):
    """Eight sockets on one patient token took all eight ports of a small range before."""
    srv = await started_server(limits={"media_per_token": 2})
    sessions = []
    try:
        socks = []
        for _ in range(3):
            session, sock = await ws_plain(srv)
            sessions.append(session)
            socks.append(sock)
            await sock.send_str(json.dumps({"type": "auth", "token": token(sub="greedy")}))
            assert (await next_json(sock))["type"] == "authenticated"
        await socks[0].send_str(json.dumps({"type": "join", "target": {"room": "team"}}))
        assert (await next_json(socks[0]))["type"] == "joined"
        await socks[1].send_str(json.dumps({"type": "precall", "seconds": 5}))
        assert (await next_json(socks[1]))["type"] in ("precall_started", "offer", "tracks")
        await socks[2].send_str(json.dumps({"type": "precall", "seconds": 5}))
        refused = await next_json(socks[2])
        assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
        # someone else is not affected
        other_session, other = await ws_plain(srv)
        sessions.append(other_session)
        await other.send_str(json.dumps({"type": "auth", "token": token(sub="someone-else")}))
        assert (await next_json(other))["type"] == "authenticated"
        await other.send_str(json.dumps({"type": "precall", "seconds": 5}))
        assert (await next_json(other))["type"] in ("precall_started", "offer", "tracks")
    finally:
        for session in sessions:
            await session.close()
        await srv.close()


async def test_a_patient_token_starts_no_precall_after_its_space_ended(server):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/v1/clinics/demo/waiting-area", json={"name": "Ann"}) as r:
            entry = await r.json()
        session, sock = await ws_plain(server)
        try:
            await sock.send_str(json.dumps({"type": "auth", "token": entry["token"]}))
            assert (await next_json(sock))["type"] == "authenticated"
            staff = jwt.encode({"sub": "dr", "role": "staff", "clinic": "demo", "exp": 4102444800},
                               SECRET, algorithm="HS256")
            async with http.post(f"{server.url}/v1/clinics/demo/waiting-area/{entry['space']}/end",
                                 headers={"Authorization": f"Bearer {staff}"}) as r:
                assert r.status == 204
            await sock.send_str(json.dumps({"type": "precall", "seconds": 5}))
            msg = await next_json(sock)
            assert msg["type"] == "error" and msg["code"] == "not_found", msg
        finally:
            await session.close()


async def test_the_waiting_area_feed_ends_at_the_token_expiry_unless_refreshed(token):
    """The feed shows patients' names: an expired token must not keep receiving it."""
    srv = await started_server(session=dict(leeway=0.0))
    stale_session, stale = await ws_plain(srv)
    fresh_session, fresh = await ws_plain(srv)
    try:
        for sock in (stale, fresh):
            await sock.send_str(json.dumps({"type": "auth", "token": token(sub="dr", ttl=2)}))
            assert (await next_json(sock))["type"] == "authenticated"
            await sock.send_str(json.dumps({"type": "watch", "waiting_area": True}))
            assert (await next_json(sock))["type"] == "waiting_area"
        await fresh.send_str(json.dumps({"type": "auth", "token": token(sub="dr", ttl=3600)}))
        assert (await next_json(fresh))["type"] == "authenticated"
        msg = await next_json(stale, timeout=5.0)
        assert msg["type"] == "error" and msg["code"] == "unauthorized", msg
        assert (await next_json(stale))["type"] == "closed"
        # the refreshed one still gets the feed: a patient enters
        async with aiohttp.ClientSession() as http, http.post(
                f"{srv.url}/v1/clinics/demo/waiting-area", json={"name": "Ann"}) as r:
            assert r.status == 201
        while (msg := await next_json(fresh, timeout=5.0))["type"] != "waiting_area":
            pass
        assert len(msg["spaces"]) == 1
    finally:
        await stale_session.close()
        await fresh_session.close()
        await srv.close()
