"""A whole consultation in two headless Chromium pages, through the real server on loopback.

A patient enters the waiting area by name; the staff dashboard shows them; staff joins from the
dashboard; each page decodes the other's live video (``framesDecoded`` keeps growing); staff ends
the consultation; the patient page says so. And a patient token opened on a meeting room's page is
refused in plain words.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

PATIENT_NAME = "Ada Testpatient"
FRAMES_JS = """async () => {
  const call = window.sfuCall;
  if (!call || !call.pc) return 0;
  const stats = await call.pc.getStats();
  let frames = 0;
  stats.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0;
  });
  return frames;
}"""


class PageLog:
    """Console lines and uncaught errors of a page, to check at the end."""

    def __init__(self, page: Any) -> None:
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))


async def new_page(browser: Any) -> tuple[Any, Any, PageLog]:
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    page.set_default_timeout(30_000)
    return context, page, PageLog(page)


async def screenshot(page: Any, name: str) -> None:
    """With SFU_SCREENSHOTS=<directory>, keep a picture of the page (to look at, not to compare)."""
    directory = os.environ.get("SFU_SCREENSHOTS")
    if directory:
        await page.screenshot(path=os.path.join(directory, f"{name}.png"))


RTP_STATS_JS = """async () => {
  const call = window.sfuCall;
  if (!call || !call.pc) return [];
  const keep = ["type", "kind", "mid", "ssrc", "packetsReceived", "packetsLost", "framesDecoded",
    "keyFramesDecoded", "framesDropped", "nackCount", "pliCount", "firCount", "freezeCount",
    "packetsSent", "framesEncoded", "keyFramesEncoded", "qualityLimitationReason", "retransmittedPacketsSent"];
  const out = [{ quality: call.quality || null }];
  (await call.pc.getStats()).forEach((r) => {
    if (r.type !== "inbound-rtp" && r.type !== "outbound-rtp") return;
    if (r.kind !== "video") return;
    out.push(Object.fromEntries(keep.filter((k) => k in r).map((k) => [k, r[k]])));
  });
  return out;
}"""


async def rtp_stats(page: Any) -> list[dict[str, Any]]:
    """The page's video RTP statistics, for failure messages."""
    return list(await page.evaluate(RTP_STATS_JS))


async def decoded_frames(page: Any) -> int:
    return int(await page.evaluate(FRAMES_JS))


async def wait_for_live_video(page: Any, label: str, within: float = 45.0) -> int:
    """Wait until the page has decoded video and the count has grown since; return the count."""
    deadline = time.monotonic() + within
    first: int | None = None
    last = 0
    while time.monotonic() < deadline:
        last = await decoded_frames(page)
        if first is None and last > 0:
            first = last
        elif first is not None and last >= first + 10:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{label}: no live remote video (framesDecoded {first} -> {last}); "
                         f"stats: {await rtp_stats(page)}")


async def start_consultation(server: Any, browser: Any, token: Callable[..., str]
                             ) -> tuple[tuple[Any, Any, PageLog], tuple[Any, Any, PageLog], Any]:
    """A patient enters by name, staff joins from the dashboard: ((context, page, log) of the
    patient, the same of staff, the dashboard's row of that patient)."""
    from playwright.async_api import expect

    patient_ctx, patient, patient_log = await new_page(browser)
    staff_ctx, staff, staff_log = await new_page(browser)
    await patient.goto(f"{server.url}/c/demo")
    await patient.fill("#name", PATIENT_NAME)
    await patient.click("#enter")
    await expect(patient.locator("#waiting-title")).to_have_text("You are in the waiting area")
    staff_token = token(role="staff", sub="dr-lee", name="Dr Lee")
    await staff.goto(f"{server.url}/c/demo/dashboard#token={staff_token}")
    row = staff.locator("#spaces tr", has_text=PATIENT_NAME)
    await row.get_by_role("button", name="Join").click()
    await expect(row.locator(".status")).to_have_text("In consultation")
    return (patient_ctx, patient, patient_log), (staff_ctx, staff, staff_log), row


async def test_patient_enters_staff_joins_both_see_video_staff_ends(
    server: Any, browser: Any, token: Callable[..., str]
) -> None:
    from playwright.async_api import expect

    patient_ctx, patient, patient_log = await new_page(browser)
    staff_ctx, staff, staff_log = await new_page(browser)

    # the patient enters by name and waits, seeing themselves and a running wait time
    await patient.goto(f"{server.url}/c/demo")
    await patient.fill("#name", PATIENT_NAME)
    await patient.click("#enter")
    await expect(patient.locator("#waiting-title")).to_have_text("You are in the waiting area")
    await expect(patient.locator("#wait-time")).not_to_have_text("0:00", timeout=10_000)
    await screenshot(patient, "patient-waiting")

    # the dashboard lists them, live
    staff_token = token(role="staff", sub="dr-lee", name="Dr Lee")
    await staff.goto(f"{server.url}/c/demo/dashboard#token={staff_token}")
    row = staff.locator("#spaces tr", has_text=PATIENT_NAME)
    await expect(row).to_be_visible()
    await expect(row.locator(".status")).to_have_text("Waiting")
    await expect(row.locator(".presence")).to_have_text("connected")
    assert "token=" not in staff.url, "the token must leave the address bar"
    await screenshot(staff, "dashboard-waiting")

    # staff joins from the dashboard; both sides decode each other's video
    await row.get_by_role("button", name="Join").click()
    await expect(row.locator(".status")).to_have_text("In consultation")
    await expect(patient.locator("#grid .tile figcaption")).to_have_text("Dr Lee (clinic)")
    await expect(staff.locator("#grid .tile figcaption")).to_have_text(PATIENT_NAME)
    try:
        seen_by_patient, seen_by_staff = await asyncio.gather(
            wait_for_live_video(patient, "patient page"), wait_for_live_video(staff, "staff page"))
    except AssertionError as exc:
        notes = [await page.locator(sel).text_content() for page, sel in
                 ((staff, "#notice"), (staff, "#banner"), (patient, "#banner"))]
        raise AssertionError(
            f"{exc}\nother side: patient {await rtp_stats(patient)}, staff {await rtp_stats(staff)}"
            f"\nnotes {notes}\nconsole: patient {patient_log.console[-8:]} staff {staff_log.console[-8:]}"
        ) from None
    await asyncio.sleep(2.0)
    await screenshot(patient, "patient-consultation")
    await screenshot(staff, "dashboard-in-call")

    # staff invites a guest; the link lets them into this consultation, and everyone sees them
    await row.get_by_role("button", name="Invite guest").click()
    await expect(staff.locator("#invite-url")).to_have_value(re.compile(r"#token="))
    invite_url = await staff.locator("#invite-url").input_value()
    assert invite_url.startswith(f"{server.url}/c/demo?space=sp_") and "#token=" in invite_url
    await screenshot(staff, "dashboard-invite")
    guest_ctx, guest, guest_log = await new_page(browser)
    await guest.goto(invite_url)
    await expect(patient.locator("#grid .tile")).to_have_count(2)
    await expect(staff.locator("#grid .tile")).to_have_count(2)
    await expect(guest.locator("#grid .tile")).to_have_count(2)
    await wait_for_live_video(guest, "guest page")
    assert await decoded_frames(patient) > seen_by_patient, "patient's remote video stalled"
    assert await decoded_frames(staff) > seen_by_staff, "staff's remote video stalled"

    # staff ends the consultation (End asks for confirmation); the patient page says so
    await row.get_by_role("button", name="End").click()
    await row.get_by_role("button", name="Confirm end").click()
    await expect(patient.locator("#ended-title")).to_have_text("The consultation has ended")
    await expect(patient.locator("#ended")).to_be_visible()
    await expect(guest.locator("#ended-title")).to_have_text("The consultation has ended")
    await screenshot(patient, "patient-ended")
    await expect(staff.locator("#spaces tr", has_text=PATIENT_NAME)).to_have_count(0)
    await expect(staff.locator("#call-panel")).to_be_hidden()

    for log in (patient_log, staff_log, guest_log):
        assert not log.errors, log.errors
        assert not any(PATIENT_NAME in line for line in log.console), "a name reached the console"
    for context in (patient_ctx, staff_ctx, guest_ctx):
        await context.close()


async def test_patient_token_on_meeting_room_page_is_refused_in_plain_words(
    server: Any, browser: Any, token: Callable[..., str]
) -> None:
    from playwright.async_api import expect

    context, page, log = await new_page(browser)
    patient_token = token(role="patient", sub="pt-1", space="sp_AAAAAAAAAAAAAAAA", name="Pat")
    await page.goto(f"{server.url}/c/demo/rooms/team#token={patient_token}")
    await expect(page.locator("#refused")).to_be_visible()
    await expect(page.locator("#refused-text")).to_contain_text(
        "Your link does not let you into this meeting room")
    await screenshot(page, "room-refused")
    assert not log.errors, log.errors
    await context.close()


async def test_two_colleagues_in_a_meeting_room_see_each_other(
    server: Any, browser: Any, token: Callable[..., str]
) -> None:
    from playwright.async_api import expect

    pages = []
    for sub, name in (("dr-lee", "Dr Lee"), ("nurse-kim", "Nurse Kim")):
        context, page, log = await new_page(browser)
        await page.goto(f"{server.url}/c/demo/rooms/team#token={token(role='staff', sub=sub, name=name)}")
        pages.append((context, page, log))
    (_, lee, _), (_, kim, _) = pages
    await expect(lee.locator("#grid .tile figcaption")).to_have_text("Nurse Kim (clinic)")
    await expect(kim.locator("#people")).to_have_text("In this room with you: Dr Lee")
    await asyncio.gather(wait_for_live_video(lee, "first colleague"),
                         wait_for_live_video(kim, "second colleague"))
    await kim.get_by_role("button", name="Leave").click()
    await expect(kim.locator("#ended-title")).to_have_text("You have left the meeting")
    await expect(lee.locator("#grid .tile")).to_have_count(0)
    for context, _, log in pages:
        assert not log.errors, log.errors
        await context.close()
