"""The pre-call test measures a client's link and gives a verdict by the clinic's thresholds."""

from __future__ import annotations

import asyncio

from sfu.client.client import Client
from tests.integration.helpers import close_all, receives_everyone, wait_for


async def test_precall_on_loopback_is_ok_with_measured_figures(server, token, clip):
    c = Client(server.url, token(sub="p"), clip=clip)
    try:
        result = await c.precall(seconds=3)
        assert result["verdict"] == "ok", result
        assert result["up_kbps"] > 330 and result["down_kbps"] and result["down_kbps"] > 330
        assert "kbit/s" in result["message"]
        assert server.calls.by_key == {}
        # the same socket can join afterwards, with a new peer connection
        other = Client(server.url, token(sub="q"), clip=clip)
        await other.join({"room": "team"})
        await c.join({"room": "team"})
        await wait_for(receives_everyone([c, other]), timeout=15)
        await other.leave()
    finally:
        await close_all([c])


async def test_precall_without_media_is_blocked(server, token, clip):
    c = Client(server.url, token(sub="p"), clip=clip, publish_audio=False, publish_video=False)
    try:
        result = await c.precall(seconds=2)
        assert result["verdict"] == "blocked"
    finally:
        await close_all([c])


def _precall_tasks(test_id: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if test_id in t.get_name()]


async def test_precall_padding_is_bounded_and_ends_with_the_test(server, token, clip):
    """The downlink probe pads only the test's own peer, within its budget (ceiling x schedule),
    and nothing of it (padding, timers, tasks) outlives the result."""
    c = Client(server.url, token(sub="p"), clip=clip)
    try:
        running = asyncio.ensure_future(c.precall(seconds=3))
        await wait_for(lambda: len(server.calls.precalls) == 1, timeout=10)
        (test,) = server.calls.precalls
        await wait_for(lambda: test.endpoint.padding_octets > 0, timeout=10)
        result = await running
        assert result["verdict"] == "ok" and result["down_kbps"] >= 1000, result
        settings = test.probe.settings
        budget_kbit = settings.ceiling_kbps * (2 * settings.step_s + settings.hold_s)
        assert 0 < test.endpoint.padding_octets * 8 / 1000 <= 1.1 * budget_kbit
        assert test.closed and test.endpoint.closed and not test.endpoint._timers
        await wait_for(lambda: not server.calls.precalls and not _precall_tasks(test.id), timeout=5)
        sent = test.endpoint.padding_octets
        await asyncio.sleep(0.3)
        assert test.endpoint.padding_octets == sent
    finally:
        await close_all([c])


async def test_precall_padding_stops_when_the_client_vanishes(server, token, clip):
    c = Client(server.url, token(sub="p"), clip=clip)
    running = asyncio.ensure_future(c.precall(seconds=5))
    try:
        await wait_for(lambda: len(server.calls.precalls) == 1, timeout=10)
        (test,) = server.calls.precalls
        await wait_for(lambda: test.endpoint.padding_octets > 0, timeout=10)
        assert test.probe.target_kbps(server.calls.monotonic()) is not None  # mid-probe
        await c.vanish()
        await wait_for(lambda: test.closed and test.endpoint.closed, timeout=5)
        await wait_for(lambda: not server.calls.precalls and not _precall_tasks(test.id), timeout=5)
        assert not test.endpoint._timers
        sent = test.endpoint.padding_octets
        await asyncio.sleep(0.3)
        assert test.endpoint.padding_octets == sent
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_precall_stats_reports_the_clients_estimate_and_bad_ones_change_nothing(
        server, token, clip):
    lone = Client(server.url, token(sub="q"), clip=clip)
    c = Client(server.url, token(sub="p"), clip=clip)
    try:
        await lone.connect()
        await lone.send({"type": "precall_stats", "outgoing_kbps": 500})
        error = await lone.wait_message(lambda m: m["type"] == "error")
        assert error["code"] == "bad_request" and "pre-call" in error["message"]

        def errors() -> list[dict[str, object]]:
            return [m for m in c.messages if m["type"] == "error"]

        await c.connect()
        await c.send({"type": "precall", "seconds": 3})
        await wait_for(lambda: len(server.calls.precalls) == 1, timeout=10)
        (test,) = server.calls.precalls
        for n, bad in enumerate(("fast", -1, True, None, 1e9), start=1):
            await c.send({"type": "precall_stats", "outgoing_kbps": bad})
            await wait_for(lambda n=n: len(errors()) == n, timeout=5)
            assert errors()[-1]["code"] == "bad_request", errors()
            assert "outgoing_kbps" in str(errors()[-1]["message"]), errors()
        assert test.outgoing_kbps is None and not test.closed
        await c.send({"type": "precall_stats", "outgoing_kbps": 2500})
        await wait_for(lambda: test.outgoing_kbps == 2500.0, timeout=5)
        result = await c.wait_message(lambda m: m["type"] == "precall_result", timeout=15)
        assert result["verdict"] == "ok" and result["up_at_least"] and result["up_kbps"] >= 2500
    finally:
        await close_all([lone, c])


async def test_precall_upload_filler_measures_the_uplink(server, token, clip):
    """A client that sends the filler asked for (``precall_upload``, base64 of random bytes)
    has its uplink measured by it: all of it arriving in time is "at least" the rate asked."""
    import base64
    import os

    c = Client(server.url, token(sub="p"), clip=clip, send_precall_upload=False)  # by hand here
    try:
        await c.connect()
        await c.send({"type": "precall_upload", "data": "AAAA"})
        error = await c.wait_message(lambda m: m["type"] == "error")
        assert error["code"] == "bad_request"  # no test running: nothing counted
        await c.send({"type": "precall", "seconds": 3})
        ask = await c.wait_message(lambda m: m["type"] == "precall_upload", timeout=10)
        (test,) = server.calls.precalls
        await c.send({"type": "precall_upload", "data": 12345})
        await wait_for(lambda: sum(m["type"] == "error" for m in c.messages) == 2, timeout=5)
        assert test.upload_bytes == 0
        left = ask["kbps"] * 1000 // 8 * ask["seconds"]
        while left > 0:
            chunk = os.urandom(min(6000, int(left)))
            await c.send({"type": "precall_upload", "data": base64.b64encode(chunk).decode()})
            left -= len(chunk)
        result = await c.wait_message(lambda m: m["type"] == "precall_result", timeout=15)
        assert result["verdict"] == "ok" and result["up_at_least"], result
        assert result["up_kbps"] >= ask["kbps"], result
        assert test.upload_bytes >= ask["kbps"] * 1000 / 8 * ask["seconds"] * 0.95
    finally:
        await close_all([c])
