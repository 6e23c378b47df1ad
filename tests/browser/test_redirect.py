"""The reference web client follows ``redirect`` in Chromium, within its Content-Security-Policy.

The setup, the simplest honest one until the cluster core answers joins with ``redirect``: the
meeting-room page is served by ``RedirectStub`` (a real aiohttp server on its own port, with the
real ``setup_web_routes`` and ``connect_origins`` naming the real server), whose ``/v1/ws``
answers every ``join`` with ``redirect`` to a real ``Server`` on another port. A synthetic
participant is already in the room on that server. Chromium enforces the CSP, so the call works
only if ``connect-src`` lets the page open the other port; a socket to a port not listed is
refused (checked too). The page must decode the participant's video, with no "reconnecting"
shown for the redirect; when the server drops the page's socket, the page reconnects to the node
it came from (the stub), is redirected again, and decodes video again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from sfu.client.client import Client
from tests.browser.test_patient_consultation import new_page, screenshot, wait_for_live_video
from tests.integration.helpers import close_all, wait_for
from tests.integration.redirect_stub import RedirectStub, ws_url

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

# a WebSocket to a port the CSP does not list: refused by the browser, reported as a violation
BLOCKED_JS = """async (url) => new Promise((resolve) => {
  document.addEventListener("securitypolicyviolation", (e) => resolve(e.violatedDirective + " " + e.blockedURI), { once: true });
  try { new WebSocket(url); } catch (error) { resolve("thrown " + error.name); }
  setTimeout(() => resolve(null), 3000);
})"""


async def test_the_room_page_follows_the_redirect_to_the_hosting_node_and_back_after_a_drop(
        server: Any, browser: Any, token: Callable[..., str], clip: Any) -> None:
    from playwright.async_api import expect

    started = time.monotonic()
    peer = Client(server.url, token(sub="dr-synthetic", name="Dr Synthetic"), clip=clip)
    async with RedirectStub(lambda n: ws_url(server.url), web_pages=True,
                            connect_origins=lambda: [server.url]) as stub:
        context, page, log = await new_page(browser)
        try:
            await peer.join({"room": "team"})
            page_token = token(sub="dr-page", name="Dr Page")
            await page.goto(f"{stub.url}/c/demo/rooms/team#token={page_token}")
            await expect(page.locator("#grid .tile figcaption")).to_have_text(
                "Dr Synthetic (clinic)")
            await wait_for_live_video(page, "after the redirect", within=20)
            await screenshot(page, "redirected-room")
            state = await page.evaluate(
                "() => ({node: sfuCall.nodeUrl, redirects: sfuCall.redirects, "
                "banner: document.querySelector('#banner').textContent})")
            assert state == {"node": ws_url(server.url), "redirects": 1, "banner": ""}
            assert [(j.token, j.target) for j in stub.joins] == [(page_token, {"room": "team"})]
            unlisted = next(p for p in range(20000, 20003) if p not in (stub.port, server.port))
            blocked = await page.evaluate(BLOCKED_JS, f"ws://127.0.0.1:{unlisted}/v1/ws")
            assert blocked is not None and "connect-src" in blocked, blocked

            # the hosting node drops the page's socket: back through the node it came from
            first = await page.evaluate("() => sfuCall.selfId")
            session = next(s for s in server.sessions
                           if s.participant is not None and s.participant.id == first)
            session.close_soon()
            await wait_for(lambda: len(stub.joins) == 2, timeout=10)
            await page.wait_for_function(
                "(first) => window.sfuCall.selfId && window.sfuCall.selfId !== first", arg=first)
            await wait_for_live_video(page, "after the reconnect", within=20)
            assert await page.evaluate("() => [sfuCall.nodeUrl, sfuCall.redirects]") == [
                ws_url(server.url), 1]
            assert not log.errors, log.errors
        finally:
            await close_all([peer])
            await context.close()
    assert time.monotonic() - started < 30


async def test_a_redirect_loop_ends_after_three_hops_with_words_not_a_reconnect_storm(
        browser: Any, token: Callable[..., str]) -> None:
    from playwright.async_api import expect

    async with RedirectStub(lambda n: ws_url(stub.url), web_pages=True) as stub:
        context, page, log = await new_page(browser)
        try:
            await page.goto(f"{stub.url}/c/demo/rooms/team#token={token(sub='dr-loop')}")
            await expect(page.locator("#refused-text")).to_contain_text(
                "could not find where this call is running")
            assert len(stub.joins) == 4 and stub.sockets == 4  # the first join and 3 redirects
            assert await page.evaluate("() => [sfuCall.finished, sfuCall.redirects]") == [True, 3]
            assert not log.errors, log.errors
        finally:
            await context.close()
