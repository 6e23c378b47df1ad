"""What the page says about link quality: audio only at once, a reduced picture only once it has
lasted 5 s (a dip the estimate recovers from is nothing a person can act on), and nothing once the
link is good again. Driven through the page's own message handler (``window.sfuCall``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.test_patient_consultation import start_consultation

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

TELL = """(level) => window.sfuCall.onQuality({type: "quality", participant: window.sfuCall.selfId,
  level, reason: "downlink about 400 kbit/s: some video reduced or paused"})"""
BANNER = """() => { const b = document.querySelector("#banner");
  return b && !b.hidden ? b.textContent || "" : ""; }"""


async def test_a_reduced_picture_is_told_once_it_lasts_and_audio_only_at_once(
    server: Any, browser: Any, token: Callable[..., str]
) -> None:
    (_, patient, _), _, _ = await start_consultation(server, browser, token)

    # a dip of 2 s: never shown
    await patient.evaluate(TELL, "degraded")
    await asyncio.sleep(2.0)
    assert await patient.evaluate(BANNER) == ""
    await patient.evaluate(TELL, "good")
    await asyncio.sleep(4.0)
    assert await patient.evaluate(BANNER) == ""

    # a reduction that lasts: shown after 5 s
    await patient.evaluate(TELL, "degraded")
    await asyncio.sleep(3.0)
    assert await patient.evaluate(BANNER) == ""
    await asyncio.sleep(3.0)
    assert "video quality is reduced" in await patient.evaluate(BANNER)

    # audio only: at once; back to good: gone at once
    await patient.evaluate(TELL, "audio_only")
    assert "audio only" in await patient.evaluate(BANNER)
    await patient.evaluate(TELL, "good")
    assert await patient.evaluate(BANNER) == ""
