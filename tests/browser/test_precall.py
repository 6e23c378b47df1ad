"""The patient page's "Test my connection": a pre-call test on a second socket from the waiting area.

A patient enters the waiting area by name, clicks the button, and within 10 s reads the verdict
in plain words with the measured figures: on loopback ``ok`` (the server's padding probe proved
the downlink carries more than ``bandwidth.good_kbps``); the consultation's own socket and peer
connection are untouched (the patient is still shown as waiting and connected on the dashboard),
and the test's peer connection is closed afterwards. tests/netns/test_precall_links.py runs the
same page behind shaped links (``warn``, ``blocked``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.test_patient_consultation import new_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

PATIENT_NAME = "Grace Testpatient"

# Every RTCPeerConnection the page creates, and whether it was closed.
TRACK_PEER_CONNECTIONS = """(() => {
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})();"""


async def test_patient_tests_connection_from_waiting_area(
    server: Any, browser: Any, token: Callable[..., str]
) -> None:
    from playwright.async_api import expect

    context, patient, log = await new_page(browser)
    await context.add_init_script(TRACK_PEER_CONNECTIONS)
    await patient.goto(f"{server.url}/c/demo")
    await patient.fill("#name", PATIENT_NAME)
    await patient.click("#enter")
    await expect(patient.locator("#waiting-title")).to_have_text("You are in the waiting area")

    button = patient.get_by_role("button", name="Test my connection")
    await expect(button).to_be_enabled(timeout=15_000)
    # the consultation's peer connection is up before the test starts
    await patient.wait_for_function(
        "() => window.sfuCall && window.sfuCall.pc && window.sfuCall.pc.connectionState === 'connected'",
        timeout=20_000)
    call_pc_before = await patient.evaluate("() => window.__pcs.indexOf(window.sfuCall.pc)")

    clicked = time.monotonic()
    await button.click()
    result = patient.locator("#precall-result")
    await expect(result).to_contain_text("Testing your connection")
    await expect(result).to_have_attribute("data-verdict", re.compile(r"^(ok|warn|blocked|failed)$"),
                                           timeout=20_000)
    took = time.monotonic() - clicked
    text = await result.text_content() or ""
    verdict = await result.get_attribute("data-verdict")
    print(f"precall-browser: loopback verdict {verdict} after {took:.1f} s: {text}")
    assert verdict == "ok", f"verdict {verdict}: {text}"
    assert took < 10.0, f"the verdict took {took:.1f} s"
    assert "Your connection is good for a video consultation" in text, text
    assert re.search(r"upload (at least )?\d+ kbit/s", text), text
    down = re.search(r"download (at least )?(\d+) kbit/s", text)
    assert down and int(down.group(2)) >= 1000, text  # the probe, not what the camera sent
    await expect(patient.get_by_role("button", name="Test again")).to_be_enabled()
    await screenshot(patient, "patient-precall")

    # the test's peer connection is closed; the consultation's is the same one, still connected
    states = await patient.evaluate(
        "() => window.__pcs.map((pc) => [pc === window.sfuCall.pc, pc.connectionState])")
    assert len(states) == 2, states
    assert states[call_pc_before] == [True, "connected"], states
    assert [s for s in states if not s[0]] == [[False, "closed"]], states
    # the waiting-area connection's video, held during the test, is sent again
    active = await patient.evaluate("""() => window.sfuCall.pc.getSenders()
        .filter((s) => s.track && s.track.kind === "video")
        .map((s) => s.getParameters().encodings.every((e) => e.active !== false))""")
    assert active == [True], active

    # the clinic still sees the patient waiting and connected
    staff_ctx, staff, staff_log = await new_page(browser)
    await staff.goto(f"{server.url}/c/demo/dashboard#token={token(role='staff', sub='dr-lee', name='Dr Lee')}")
    row = staff.locator("#spaces tr", has_text=PATIENT_NAME)
    await expect(row.locator(".status")).to_have_text("Waiting")
    await expect(row.locator(".presence")).to_have_text("connected")
    await expect(patient.locator("#waiting-title")).to_have_text("You are in the waiting area")

    for page_log in (log, staff_log):
        assert not page_log.errors, page_log.errors
    assert not any(PATIENT_NAME in line for line in log.console), "a name reached the console"
    await staff_ctx.close()
    await context.close()
