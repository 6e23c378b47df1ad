"""The pre-call test measures a client's link and gives a verdict by the clinic's thresholds."""

from __future__ import annotations

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
