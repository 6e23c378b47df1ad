"""Operations against a real server on loopback with real clients: metrics, readiness, drain,
network settings, webhooks end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sfu.client.client import Client
from sfu.service.server import Server

from ..conftest import make_config
from .conftest import eventually, free_port

HOOK_SECRET = "hook-secret-0123456789"


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of Prometheus text, e.g. ``sample(t, "sfu_participants", role="staff")``."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if found == labels:
            return float(m.group(3))
    raise AssertionError(f"{name}{labels} not in /metrics")


def publishing(server: Server) -> Any:
    async def check() -> bool:
        return server.counters.received_packets["video"] > 0

    return check


@pytest.fixture
async def make_server() -> AsyncIterator[Any]:
    servers: list[Server] = []

    async def make(**overrides: Any) -> Server:
        srv = Server(make_config(**overrides))
        await srv.start("127.0.0.1", 0)
        srv.url = f"http://127.0.0.1:{srv.port}"  # type: ignore[attr-defined]
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        await srv.close()


# -- metrics follow a real call -------------------------------------------------------------------
async def test_metrics_follow_a_real_call(server, token, clip) -> None:
    metrics_url = f"{server.url}/metrics"
    a = Client(server.url, token(sub="dr-a", name="Dr A"), clip=clip)
    b = Client(server.url, token(sub="dr-b", name="Dr B"), clip=clip)
    try:
        await a.join({"room": "team"})
        await b.join({"room": "team"})
        _, text = await get(metrics_url)
        assert 'sfu_participants{role="staff"} 2.0' in text.splitlines()
        assert sample(text, "sfu_participants", role="staff") == 2.0
        assert sample(text, "sfu_rooms", kind="room") == 1.0
        assert sample(text, "sfu_joins_total", role="staff", outcome="admitted") == 2.0

        async def video_flowing() -> bool:
            _, t = await get(metrics_url)
            return sample(t, "sfu_rtp_packets_forwarded_total", kind="video") > 0

        await eventually(video_flowing)
        _, text = await get(metrics_url)
        first = sample(text, "sfu_rtp_packets_forwarded_total", kind="video")

        async def video_grew() -> bool:
            _, t = await get(metrics_url)
            return sample(t, "sfu_rtp_packets_forwarded_total", kind="video") > first

        await eventually(video_grew, within=5)
        assert sample(text, "sfu_rtp_bytes_forwarded_total", kind="video") > 0
    finally:
        await a.leave()
        await b.leave()

    async def empty() -> bool:
        _, t = await get(metrics_url)
        return sample(t, "sfu_participants", role="staff") == 0.0

    await eventually(empty, within=5)
    _, text = await get(metrics_url)
    assert sample(text, "sfu_rooms", kind="room") == 0.0
    for name in ("sfu_webhooks_delivered_total", "sfu_webhooks_dropped_total",
                 "sfu_webhooks_failed_total", "process_cpu_seconds_total"):
        sample(text, name)
    # no label carries a clinic, room or participant id
    assert not re.search(r'"(demo|team|p_[0-9a-f]{16}|dr-[ab])"', text)


async def test_gauges_count_open_endpoints_sockets_and_tasks(server, token, clip) -> None:
    """What a soak watches for leaks: the media endpoints and signaling sockets open, and the
    event loop's tasks, which all come back to where they were once the call is over."""
    async with aiohttp.ClientSession() as http:  # one connection: one handler task throughout

        async def scrape() -> str:
            async with http.get(f"{server.url}/metrics") as response:
                return await response.text()

        text = await scrape()
        assert sample(text, "sfu_media_endpoints") == 0.0
        assert sample(text, "sfu_signaling_sockets") == 0.0
        idle_tasks = sample(text, "sfu_asyncio_tasks")
        assert idle_tasks > 0  # at least the housekeeping and this scrape's handler
        a = Client(server.url, token(sub="dr-a"), clip=clip)
        b = Client(server.url, token(sub="dr-b"), clip=clip)
        try:
            await a.join({"room": "team"})
            await b.join({"room": "team"})
            text = await scrape()
            assert sample(text, "sfu_media_endpoints") == 2.0
            assert sample(text, "sfu_signaling_sockets") == 2.0
            assert sample(text, "sfu_asyncio_tasks") > idle_tasks + 4
        finally:
            await a.leave()
            await b.leave()

        async def released() -> bool:
            t = await scrape()
            return (sample(t, "sfu_media_endpoints") == 0.0
                    and sample(t, "sfu_signaling_sockets") == 0.0
                    and sample(t, "sfu_asyncio_tasks") == idle_tasks)

        try:
            await eventually(released, within=20)
        except TimeoutError:
            t = await scrape()
            left = [repr(task.get_coro()) for task in asyncio.all_tasks()]
            raise AssertionError(f"not released: endpoints {sample(t, 'sfu_media_endpoints')}, "
                                 f"sockets {sample(t, 'sfu_signaling_sockets')}, tasks "
                                 f"{sample(t, 'sfu_asyncio_tasks')} (idle {idle_tasks}): {left}"
                                 ) from None


async def test_metrics_on_a_separate_port_when_configured(make_server) -> None:
    port = free_port()
    srv = await make_server(metrics={"port": port})
    status, text = await get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and "sfu_participants" in text
    status, _ = await get(f"{srv.url}/metrics")
    assert status == 404  # not on the public port


async def get_with(url: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status


async def test_metrics_on_the_main_port_only_for_loopback_or_the_scrape_token(make_server) -> None:
    """Patient counts and timings are not for whoever asks the public port: a request relayed by
    a (local) reverse proxy carries forwarding headers and is refused without the token."""
    srv = await make_server(metrics={"token": "scrape-token-0123456789"})
    url = f"{srv.url}/metrics"
    relayed = {"X-Forwarded-For": "203.0.113.9"}
    assert (await get(url))[0] == 200  # a local scraper
    assert await get_with(url, relayed) == 403
    assert await get_with(url, {"Forwarded": "for=203.0.113.9"}) == 403
    assert await get_with(url, {**relayed, "Authorization": "Bearer wrong"}) == 403
    assert await get_with(url, {**relayed, "Authorization": "Bearer scrape-token-0123456789"}) == 200
    opened = await make_server(metrics={"public": True})
    assert await get_with(f"{opened.url}/metrics", relayed) == 200


# -- health, readiness, drain ---------------------------------------------------------------------
async def test_readiness_is_503_while_draining_and_joins_are_refused(server, token, clip) -> None:
    assert (await get(f"{server.url}/readyz"))[0] == 200
    c = Client(server.url, token(sub="dr-a"), clip=clip)
    late = Client(server.url, token(sub="dr-late"), clip=clip)
    try:
        await c.join({"room": "team"})
        # connected (answer applied, media arriving) before the drain starts
        await eventually(publishing(server))
        drain = asyncio.ensure_future(asyncio.wait_for(server.drain(), timeout=5))
        await c.wait_message(lambda m: m["type"] == "ended")
        assert c.ended == "server_shutdown"
        status, body = await get(f"{server.url}/readyz")
        assert status == 503 and "draining" in body
        assert (await get(f"{server.url}/healthz"))[0] == 200  # alive, just not ready
        with pytest.raises(Exception, match="draining"):
            await late.join({"room": "team"})
        await asyncio.wait_for(drain, 5)
        assert not server.calls.by_key
    finally:
        await c.close()
        await late.close()
    _, text = await get(f"{server.url}/metrics")
    assert sample(text, "sfu_joins_total", role="staff", outcome="draining") == 1.0


# -- network settings -----------------------------------------------------------------------------
async def test_every_ice_candidate_port_lies_in_the_configured_range(make_server, token, clip) -> None:
    srv = await make_server(media={"udp_ports": "41000-41049", "inactivity_timeout": 5.0})
    c = Client(srv.url, token(sub="dr-a"), clip=clip)
    try:
        await c.join({"room": "team"})
        offer = await c.wait_message(lambda m: m["type"] == "offer")
    finally:
        await c.leave()
    ports = [int(line.split()[5]) for line in offer["sdp"].splitlines()
             if line.startswith("a=candidate:")]
    assert ports, "the offer carries no candidates"
    assert all(41000 <= p <= 41049 for p in ports), ports


async def test_ice_servers_are_handed_to_clients_in_joined(make_server, token, clip) -> None:
    turn = {"urls": ["turn:turn.example.org:3478?transport=udp"], "username": "u",
            "credential": "p"}
    from sfu.transport.settings import IceServer

    srv = await make_server(media={"ice_servers": [IceServer(**turn)],  # type: ignore[arg-type]
                                   "inactivity_timeout": 5.0})
    # the server itself does not gather via TURN; clients are still handed the configured servers
    srv.config = dataclasses.replace(srv.config, media=dataclasses.replace(srv.config.media,
                                                                            ice_servers=[]))
    # (the client does not try that TURN server: it is not there; tests/netns/test_turn_relay.py
    # relays through a real one)
    c = Client(srv.url, token(sub="dr-a"), clip=clip, use_turn=False)
    try:
        joined = await c.join({"room": "team"})
    finally:
        await c.leave()
    assert joined["ice_servers"] == [turn]


# -- webhooks end to end ---------------------------------------------------------------------------
async def test_a_join_and_a_leave_reach_the_webhook_receiver_signed(make_server, receivers, token,
                                                                   clip) -> None:
    rx = await receivers()
    srv = await make_server(webhooks={"urls": [rx.url], "secret": HOOK_SECRET})
    c = Client(srv.url, token(sub="dr-a", name="Dr Alice Example"), clip=clip)
    await c.join({"room": "team"})
    await c.leave()
    await rx.wait_for(lambda: srv.webhooks.delivered == 2)
    assert all(r.verifies(HOOK_SECRET) for r in rx.requests)
    (joined,) = rx.events("participant.joined")
    (left,) = rx.events("participant.left")
    assert joined["data"] == {"clinic": "demo", "room": "team", "participant": c.participant,
                              "role": "staff"}
    assert left["data"]["participant"] == c.participant and left["data"]["reason"] == "left"
    assert joined["id"] != left["id"]
    assert all(b"Alice" not in r.body for r in rx.requests)
    assert srv.webhooks.delivered == 2 and srv.webhooks.failed == 0


async def test_event_payloads_carry_opaque_ids_never_names(server, token, clip) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    server.event_listeners.append(lambda name, payload: seen.append((name, payload)))
    c = Client(server.url, token(sub="dr-a", name="Dr Alice Example"), clip=clip)
    await c.join({"room": "team"})
    await c.leave()
    refused = Client(server.url, token(role="patient", sub="pt", name="Pat Example", space="nope"),
                     clip=clip)
    with pytest.raises(Exception):  # noqa: B017 - any refusal
        await refused.join({"room": "team"})
    await refused.close()
    await eventually(lambda: any(n == "participant.left" for n, _ in seen), within=5)
    names = {n for n, _ in seen}
    assert {"participant.joined", "participant.left", "join.refused"} <= names

    def keys(value: Any) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {k for v in value.values() for k in keys(v)}
        if isinstance(value, list):
            return {k for v in value for k in keys(v)}
        return set()

    for name, payload in seen:
        assert not {"name", "display_name", "patient_name"} & keys(payload), (name, payload)
        assert not re.search(r"Alice|Pat Example", repr(payload)), (name, payload)


async def test_sockets_without_a_valid_token_are_counted_not_told(server) -> None:
    """A flood of token-less sockets queued a join.refused webhook each, pushing a clinic's real
    events out of the bounded queue; they are counted in the metrics instead."""
    seen: list[str] = []
    server.event_listeners.append(lambda name, payload: seen.append(name))
    _, before = await get(f"{server.url}/metrics")
    async with aiohttp.ClientSession() as http:
        for _ in range(20):
            async with http.ws_connect(f"{server.url.replace('http', 'ws')}/v1/ws") as sock:
                await sock.send_json({"type": "auth", "token": "not a token"})
                await sock.receive()
    _, after = await get(f"{server.url}/metrics")
    assert "join.refused" not in seen
    assert sample(after, "sfu_joins_total", outcome="unauthorized", role="unknown") \
        - sample(before, "sfu_joins_total", outcome="unauthorized", role="unknown") == 20


async def test_idle_http_connections_are_closed_after_the_keepalive_timeout(make_server) -> None:
    """aiohttp keeps an idle keep-alive connection for an hour by default: file descriptors a
    stranger could hold by the thousand."""
    srv = await make_server(server={"keepalive_timeout": 0.5})
    host, port = "127.0.0.1", srv.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        # idle: the server closes the connection within the timeout (and a beat)
        assert await asyncio.wait_for(reader.read(), 3) == b""
    finally:
        writer.close()
