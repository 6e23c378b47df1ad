"""Budgets per client address (behind a trusted proxy, IPv6 by prefix) and in total; spaces held by
sockets without media; the WebSocket read limit; STUN requests that do not authenticate."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import aiohttp
import pytest
from aioice import stun

from sfu.client.client import Client
from tests.integration.helpers import wait_for
from tests.integration.test_bad_input import authed, next_json, started_server

PROXY = {"trusted_proxies": ["127.0.0.1"]}


async def enter(http: aiohttp.ClientSession, url: str, client: str) -> int:
    async with http.post(f"{url}/v1/clinics/demo/waiting-area", json={"name": "Ann"},
                         headers={"X-Forwarded-For": f"198.51.100.200, {client}"}) as r:
        return r.status


async def test_behind_a_trusted_proxy_each_client_has_its_own_entry_budget():
    """Every patient behind the recommended proxy shared its address: after ten entries from
    anyone, nobody could enter; and an IPv6 client had a /64 of budgets."""
    srv = await started_server(server=PROXY, waiting_area={"entry_rate_limit": 2})
    try:
        async with aiohttp.ClientSession() as http:
            assert [await enter(http, srv.url, "203.0.113.1") for _ in range(3)] == [201, 201, 429]
            assert await enter(http, srv.url, "203.0.113.2") == 201  # someone else behind it
            ipv6 = [await enter(http, srv.url, f"2001:db8:0:7::{i}") for i in (1, 2, 3)]
            assert ipv6 == [201, 201, 429]  # one /64
            assert await enter(http, srv.url, "2001:db8:0:8::1") == 201
    finally:
        await srv.close()


async def ws_from(http: aiohttp.ClientSession, url: str, client: str
                  ) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(f"{url.replace('http', 'ws')}/v1/ws",
                                 headers={"X-Forwarded-For": client})


async def test_websockets_are_bounded_per_client_address_and_in_total():
    srv = await started_server(server=PROXY,
                               limits={"sockets_per_address": 2, "sockets_total": 3})
    try:
        async with aiohttp.ClientSession() as http:
            mine = [await ws_from(http, srv.url, "203.0.113.1") for _ in range(2)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await ws_from(http, srv.url, "203.0.113.1")
            assert refused.value.status == 429
            async with http.get(f"{srv.url}/v1/ws", headers={"X-Forwarded-For": "203.0.113.1"}
                                ) as r:
                assert r.status == 429
                assert (await r.json())["error"]["code"] == "rate_limited"
            other = await ws_from(http, srv.url, "203.0.113.2")
            async with http.get(f"{srv.url}/v1/ws", headers={"X-Forwarded-For": "203.0.113.3"}
                                ) as r:
                assert r.status == 503
                assert (await r.json())["error"]["code"] == "server_full"
            await mine[0].close()
            await wait_for(lambda: sum(srv._sockets.values()) == 2, timeout=3)
            again = await ws_from(http, srv.url, "203.0.113.3")
            for sock in (mine[1], other, again):
                await sock.close()
            await wait_for(lambda: not srv._sockets, timeout=3)
    finally:
        await srv.close()


async def test_media_connections_and_precall_tests_are_bounded_in_total(token):
    srv = await started_server(limits={"media_total": 2, "precall_total": 1})
    sessions = []
    try:
        socks = []
        for sub in ("a", "b", "c", "d"):
            session, sock = await authed(srv, token(sub=sub))
            sessions.append(session)
            socks.append(sock)
        await socks[0].send_str(json.dumps({"type": "precall", "seconds": 5}))
        assert (await next_json(socks[0]))["type"] in ("precall_started", "offer", "tracks")
        await socks[1].send_str(json.dumps({"type": "precall", "seconds": 5}))
        refused = await next_json(socks[1])
        assert refused["type"] == "error" and refused["code"] == "server_full", refused
        await socks[1].send_str(json.dumps({"type": "join", "target": {"room": "team"}}))
        assert (await next_json(socks[1]))["type"] == "joined"
        await socks[2].send_str(json.dumps({"type": "join", "target": {"room": "team"}}))
        refused = await next_json(socks[2])
        assert refused["type"] == "error" and refused["code"] == "server_full", refused
        assert len(next(iter(srv.calls.by_key.values())).participants) == 1
        assert srv.calls.media_connections() == 2
    finally:
        for session in sessions:
            await session.close()
        await srv.close()


async def test_a_joined_patient_socket_without_media_does_not_hold_its_space():
    """A patient socket that joined and never answered (or joins again each time it is let
    go) kept its space, and its place on every dashboard, for as long as it liked."""
    srv = await started_server(waiting_area={"unconnected_expiry": 1.0},
                               media={"connect_timeout": 60.0})
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{srv.url}/v1/clinics/demo/waiting-area",
                                 json={"name": "Ann"}) as r:
                entry = await r.json()
        session, sock = await authed(srv, entry["token"])
        try:
            await sock.send_str(json.dumps({"type": "join", "target": {"space": entry["space"]}}))
            assert (await next_json(sock))["type"] == "joined"
            while (msg := await next_json(sock, timeout=5.0))["type"] != "ended":
                pass
            assert msg["reason"] == "expired"
            assert srv.registry.find_space("demo", entry["space"]) is None
            await wait_for(lambda: not srv.calls.by_key, timeout=3)
        finally:
            await session.close()
    finally:
        await srv.close()


async def test_a_socket_left_idle_after_its_precall_test_is_closed(token, clip):
    """The purpose timer stopped once anything had been asked: a socket whose pre-call test had
    ended stayed open (a descriptor and a writer task) for as long as a stranger liked."""
    srv = await started_server(session=dict(purpose_timeout=3.0))
    client = Client(srv.url, token(sub="tester"), clip=clip)
    try:
        result = await client.precall(seconds=2)
        assert result["type"] == "precall_result"
        told = await client.wait_message(
            lambda m: m["type"] == "error" and m["code"] == "bad_request", timeout=6.0)
        assert "nothing asked for" in told["message"]
        await wait_for(lambda: not srv.sessions, timeout=3)
    finally:
        await client.close()
        await srv.close()


async def test_a_message_over_max_message_bytes_is_not_read_and_closes_with_1009(server, token):
    """Messages up to 1 MiB were read (64 KiB documented)."""
    session, sock = await authed(server, token(sub="a"))
    try:
        frame = json.dumps({"type": "ping", "pad": ""})
        exact = json.dumps({"type": "ping", "pad": "x" * (65536 - len(frame))})
        assert len(exact.encode()) == server.config.server.max_message_bytes
        await sock.send_str(exact)
        assert (await next_json(sock))["type"] == "pong"
        await sock.send_str(exact[:-2] + "x\"}")
        msg = await sock.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        assert sock.close_code == 1009
    finally:
        await session.close()


def stun_request(method: stun.Method = stun.Method.BINDING, username: str | None = None,
                 key: bytes | None = None) -> bytes:
    message = stun.Message(message_method=method, message_class=stun.Class.REQUEST,
                           transaction_id=os.urandom(12))
    if username is not None:
        message.attributes["USERNAME"] = username
        message.attributes["PRIORITY"] = 1853824767
    if key is not None:
        message.add_message_integrity(key)
        message.add_fingerprint()
    return bytes(message)


async def test_stun_requests_that_do_not_authenticate_get_no_answer(token):
    """aioice answered them with an error larger than the request: a media port reflected
    more than it was sent, to whatever source address a datagram claimed."""
    srv = await started_server()
    session, sock = await authed(srv, token(sub="a"))
    try:
        await sock.send_str(json.dumps({"type": "join", "target": {"room": "team"}}))
        while (msg := await next_json(sock))["type"] != "offer":
            pass
        lines = msg["sdp"].splitlines()
        ufrag = next(x for x in lines if x.startswith("a=ice-ufrag:")).split(":", 1)[1]
        pwd = next(x for x in lines if x.startswith("a=ice-pwd:")).split(":", 1)[1].encode()
        port = int(next(x for x in lines if x.startswith("a=candidate")).split()[5])
        hostile = [
            stun_request(),  # no USERNAME, no MESSAGE-INTEGRITY
            stun_request(stun.Method.ALLOCATE),  # not a Binding
            stun_request(username=f"{ufrag}:x"),  # no MESSAGE-INTEGRITY
            stun_request(username="someone-else:x", key=pwd),  # another ufrag
            stun_request(username=f"{ufrag}:x", key=b"wrong password"),
        ]
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            udp.connect(("127.0.0.1", port))
            for request in hostile:
                udp.send(request)
                try:
                    reply = await asyncio.wait_for(loop.sock_recv(udp, 2048), 0.5)
                except TimeoutError:
                    continue
                raise AssertionError(f"{len(request)} bytes answered with {len(reply)}")
            assert srv.counters.dropped.get("stun_unauthenticated", 0) == len(hostile)
            # an authentic check is still answered
            udp.send(stun_request(username=f"{ufrag}:x", key=pwd))
            reply = stun.parse_message(await asyncio.wait_for(loop.sock_recv(udp, 2048), 2.0))
            assert reply.message_class == stun.Class.RESPONSE
    finally:
        await session.close()
        await srv.close()
