"""The reference web client in a real two-node cluster (in-process nodes, a real redis-server).

The patient page comes from node n1; their space is placed on n2 (n1 is made the busier), so the
entry is relayed to n2 and the page's join is redirected there, to another origin its CSP must
allow. The clinician's dashboard is served by n2 and shows the patient by name; Join. Both pages
decode each other's video. Then n2 drains (SIGTERM's path): it sends both pages ``redirect`` to
n1, where they join again by themselves; both decode each other's video again, nothing is shown
to either user, and the space keeps its place in the waiting list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from sfu.auth import mint_token
from tests.browser.test_patient_consultation import (
    new_page,
    rtp_stats,
    screenshot,
    wait_for_live_video,
)
from tests.cluster.nodes import node_config, redis_server
from tests.conftest import SECRET, running_server
from tests.integration.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

PATIENT_NAME = "Mary Cluster-Patient"


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[list[Any]]:
    with redis_server(tmp_path) as redis_url:
        stack = []
        nodes = []
        try:
            for name in ("n1", "n2"):
                cm = running_server(node_config(redis_url, name, inactivity_timeout=10.0))
                nodes.append(await cm.__aenter__())
                stack.append(cm)
            await wait_for(lambda: all(len(n.cluster.live) == 2 for n in nodes), timeout=5)
            yield nodes
        finally:
            for cm in reversed(stack):
                await cm.__aexit__(None, None, None)


async def test_pages_follow_the_call_to_its_node_and_move_with_it_when_the_node_drains(
        two_nodes: list[Any], browser: Any) -> None:
    from playwright.async_api import expect

    n1, n2 = two_nodes
    r = aioredis.from_url(n1.config.cluster.redis_url)
    await r.zincrby(n1.cluster.keys.load, 1, "n1")  # n1 counts a call more: n2 gets the space
    await r.aclose()
    patient_ctx, patient, patient_log = await new_page(browser)
    staff_ctx, staff, staff_log = await new_page(browser)
    try:
        await patient.goto(f"{n1.url}/c/demo")
        await patient.fill("#name", PATIENT_NAME)
        await patient.click("#enter")
        await expect(patient.locator("#waiting-title")).to_have_text("You are in the waiting area")
        space = n2.registry.get("demo").waiting_area.spaces[0]
        assert space.patient_name == PATIENT_NAME and not n1.registry.get("demo").waiting_area.spaces
        waiting_since = space.waiting_since

        staff_token = mint_token(SECRET, sub="dr-lee", role="staff", clinic="demo",
                                 name="Dr Lee", ttl=600)
        await staff.goto(f"{n2.url}/c/demo/dashboard#token={staff_token}")
        row = staff.locator("#spaces tr", has_text=PATIENT_NAME)
        await expect(row.locator(".presence")).to_have_text("connected")
        await row.get_by_role("button", name="Join").click()
        await expect(row.locator(".status")).to_have_text("In consultation")
        await asyncio.gather(wait_for_live_video(patient, "patient page on n2"),
                             wait_for_live_video(staff, "staff page on n2"))
        ws2 = n2.url.replace("http://", "ws://") + "/v1/ws"
        assert await patient.evaluate("() => sfuCall.nodeUrl") == ws2
        await screenshot(patient, "cluster-patient-n2")

        await asyncio.wait_for(n2.drain(), timeout=15)  # n2 leaves: the call moves to n1
        ws1 = n1.url.replace("http://", "ws://") + "/v1/ws"
        await expect(patient.locator("#grid .tile figcaption")).to_have_text("Dr Lee (clinic)")
        deadline = asyncio.get_running_loop().time() + 20
        while (await patient.evaluate("() => sfuCall.nodeUrl") != ws1
               or await staff.evaluate("() => sfuCall.nodeUrl") != ws1):
            assert asyncio.get_running_loop().time() < deadline, "the pages did not move to n1"
            await asyncio.sleep(0.2)
        moved_space = n1.registry.get("demo").waiting_area.find(space.id)
        assert moved_space is not None and moved_space.waiting_since == waiting_since
        await wait_for(lambda: moved_space.status == "in_consultation", timeout=15)
        try:
            await asyncio.gather(wait_for_live_video(patient, "patient page on n1"),
                                 wait_for_live_video(staff, "staff page on n1"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\npatient {await rtp_stats(patient)}\n"
                                 f"console {patient_log.console[-10:]} {staff_log.console[-10:]}"
                                 ) from None
        for page in (patient, staff):
            assert await page.locator("#banner").text_content() in ("", None)
        assert patient_log.errors == [] and staff_log.errors == []
        await screenshot(patient, "cluster-patient-n1")
    finally:
        await patient_ctx.close()
        await staff_ctx.close()
