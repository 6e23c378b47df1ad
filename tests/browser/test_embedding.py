"""The call inside a clinic portal's page: an iframe from a listed origin works, others are refused.

A portal (a small aiohttp app on two ports of its own) shows the patient page in an iframe with
``allow="camera; microphone; autoplay"``. The server lists ``http://localhost:<portal port>`` in
``server.embed_origins``; the server itself is ``http://127.0.0.1:<port>``, so the frame is
cross-site (a third party: Chromium refuses it storage). From the listed origin the frame is our
page, getUserMedia gives it the fake camera and microphone, the patient enters the waiting area
and a clinician (the Python client) receives their video while the frame decodes the clinician's.
Without the ``allow`` attribute the browser refuses the camera and the page says so. From
``http://127.0.0.1:<portal port>`` (another host) and ``http://localhost:<other port>``
(another port) Chromium refuses the frame for ``frame-ancestors``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from sfu.client.client import Client
from sfu.client.media import Clip
from tests.browser.test_patient_consultation import PageLog, new_page, wait_for_live_video
from tests.conftest import make_config, running_server
from tests.integration.helpers import close_all, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

PATIENT_NAME = "Ida Embedded"


class Portal:
    """A clinic portal's page holding the server's patient page in an iframe, on two ports."""

    def __init__(self) -> None:
        self.frame_src = ""
        self.runner: web.AppRunner | None = None
        self.ports: list[int] = []

    async def page(self, request: web.Request) -> web.Response:
        allow = "" if "no-allow" in request.query else ' allow="camera; microphone; autoplay"'
        return web.Response(content_type="text/html", text=(
            "<!doctype html><title>Clinic portal</title><link rel=\"icon\" href=\"data:,\">"
            f'<h1>Your appointment</h1><iframe src="{self.frame_src}"{allow}'
            ' width="900" height="700"></iframe>'))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/appointment", self.page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        for _ in range(2):
            await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.ports = [int(address[1]) for address in self.runner.addresses]

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def portal() -> AsyncIterator[Portal]:
    site = Portal()
    await site.start()
    try:
        yield site
    finally:
        await site.close()


@pytest.fixture
async def embedding_server(portal: Portal) -> AsyncIterator[Any]:
    """A server whose pages the portal's first port, as http://localhost, may frame."""
    cfg = make_config(server={"embed_origins": [f"http://localhost:{portal.ports[0]}"]})
    async with running_server(cfg) as srv:
        portal.frame_src = f"{srv.url}/c/demo"
        yield srv


async def our_frame(page: Any, server: Any) -> Any:
    frames = [f for f in page.frames if f.url.startswith(server.url)]
    assert len(frames) == 1, [f.url for f in page.frames]
    return frames[0]


async def test_a_listed_portal_embeds_the_patient_page_with_camera_and_media_flows(
    embedding_server: Any, portal: Portal, browser: Any, token: Callable[..., str], clip: Clip,
) -> None:
    from playwright.async_api import expect

    server = embedding_server
    context, page, log = await new_page(browser)
    await page.goto(f"http://localhost:{portal.ports[0]}/appointment")
    frame = await our_frame(page, server)
    assert await frame.evaluate("() => isSecureContext && window.top !== window")

    # the patient enters from inside the portal's page; the camera starts in the frame
    await expect(frame.locator("#entry-form")).to_be_visible(timeout=10_000)
    await frame.locator("#name").fill(PATIENT_NAME)
    await frame.locator("#enter").click()
    await expect(frame.locator("#waiting-title")).to_have_text("You are in the waiting area")
    await frame.wait_for_function(
        "() => { const s = document.querySelector('#self-video').srcObject;"
        " return s && s.getTracks().filter((t) => t.readyState === 'live').length === 2; }")
    assert await frame.locator("#media-error").is_hidden(), await frame.locator("#media-error").text_content()

    # a clinician joins the space; each side receives the other's video
    staff = Client(server.url, token(role="staff", sub="dr-lee", name="Dr Lee"), clip=clip)
    try:
        await staff.connect()
        await staff.send({"type": "watch", "waiting_area": True})
        listed = await staff.wait_message(lambda m: m["type"] == "waiting_area" and m["spaces"])
        await staff.join({"space": listed["spaces"][0]["space"]})
        started = time.monotonic()

        def patient_video() -> int:
            return max((t.packets for t in staff.tracks.values()
                        if t.kind == "video" and t.keyframes >= 1), default=0)

        await wait_for(lambda: patient_video() >= 100, timeout=20)
        print(f"embed: clinician received {patient_video()} video packets from the framed patient "
              f"{time.monotonic() - started:.1f} s after joining")
        await wait_for_live_video(frame, "framed patient page", within=20)
    finally:
        await close_all([staff])
    assert not log.errors, log.errors
    assert not [line for line in log.console if line.startswith("error")], log.console
    await context.close()


async def test_without_the_iframes_allow_the_page_says_the_portal_withholds_the_camera(
    embedding_server: Any, portal: Portal, browser: Any,
) -> None:
    from playwright.async_api import expect

    context, page, log = await new_page(browser)
    await page.goto(f"http://localhost:{portal.ports[0]}/appointment?no-allow")
    frame = await our_frame(page, embedding_server)
    await frame.locator("#name").fill(PATIENT_NAME)
    await frame.locator("#enter").click()
    await expect(frame.locator("#media-error")).to_contain_text(
        "shown inside another website that does not let it use your camera and microphone")
    await expect(frame.locator("#waiting-title")).to_have_text("You are in the waiting area")
    assert not log.errors, log.errors
    await context.close()


async def test_other_origins_cannot_frame_the_pages(
    embedding_server: Any, portal: Portal, browser: Any,
) -> None:
    server = embedding_server
    listed = f"http://localhost:{portal.ports[0]}"
    for framing in (f"http://127.0.0.1:{portal.ports[0]}", f"http://localhost:{portal.ports[1]}"):
        context, page, log = await new_page(browser)
        await page.goto(f"{framing}/appointment")
        refusal = await console_line(log, "frame-ancestors")
        assert f"frame-ancestors 'self' {listed}" in refusal, refusal
        child = page.frames[1]
        # the error page commits just after the refusal is logged
        await wait_for(lambda frame=child: frame.url != "", timeout=5)
        assert child.url.startswith("chrome-error://"), (framing, child.url)
        assert not [f for f in page.frames if f.url.startswith(server.url)]
        assert await child.locator("#entry-form").count() == 0
        await context.close()


async def console_line(log: PageLog, containing: str, within: float = 5.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [line for line in log.console if containing in line]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no console line with {containing!r}: {log.console}")
