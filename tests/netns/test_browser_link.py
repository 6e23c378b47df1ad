"""Chromium behind a shaped downlink: capped or paused in time, back in time, audio throughout.

Three headless Chromium pages of the project's web client in the meeting room ``team``: two
publish the fake camera from the host; the third runs inside a network namespace whose
downlink is shaped by ``tc tbf`` (bench/browser_link.py runs the scenario and samples it once
a second). The link is 700 kbit/s for 25 s (less than the two videos need), then 3 Mbit/s:

* audio from the others never stops (no second without audio packets, none under a third of
  the normal rate over two seconds);
* video is capped or paused within 10 s of the page joining (the page is told, or the server
  pauses video for it);
* within 5 s of the link going to 3 Mbit/s, no video is paused for it any more and it decodes
  both videos again (at least 10 frames/s each).

Needs root (namespaces) and Chromium; skipped with the reason otherwise. About a minute.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import netns

pytestmark = [pytest.mark.netns, pytest.mark.browser, pytest.mark.asyncio]

SENDERS = 2
STEPS = [(700.0, 25.0), (3000.0, 15.0)]
ADAPT_WITHIN_S = 10.0
BACK_WITHIN_S = 5.0
AUDIO_PPS = 50 * SENDERS  # Opus: 50 packets a second from each sender


def _back_after(rows: list[dict[str, Any]], step_at: float) -> float | None:
    """Seconds from ``step_at`` to the first sample with nothing paused and every video decoding
    at 10 frames/s or more (the fake camera sends about 20)."""
    for row in rows:
        if row["t"] >= step_at and row.get("paused") == 0 and row.get("fps", 0) >= 10 * SENDERS:
            return float(row["t"] - step_at)
    return None


async def test_chromium_behind_700kbit_then_3mbit() -> None:
    ok, why = netns.available()
    if not ok:
        pytest.skip(f"needs network namespaces: {why}")
    pytest.importorskip("playwright.async_api")
    from tests.browser.conftest import chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed")
    from bench import browser_link

    result = await browser_link.run(STEPS, n_senders=SENDERS, verbose=True)
    rows = [r for r in result["rows"] if "fps" in r]
    assert rows and rows[-1]["t"] >= sum(s for _, s in STEPS) - 2, rows[-1:]

    # audio throughout
    audio = [r.get("audio", 0) for r in rows]
    assert min(audio) > 0, audio
    pairs = [a + b for a, b in zip(audio, audio[1:], strict=False)]
    assert min(pairs) >= 2 * AUDIO_PPS / 3, audio

    # capped or paused within 10 s of joining
    down, up = result["events"]
    assert down["adapted_after_s"] is not None and down["adapted_after_s"] <= ADAPT_WITHIN_S, down

    # back within 5 s of the link recovering
    step_at = STEPS[0][1]
    back = _back_after(rows, step_at)
    print(f"\nbrowser-link: adapted after {down['adapted_after_s']} s; video back "
          f"{back} s after the step to {STEPS[1][0]:.0f} kbit/s; audio per second "
          f"min {min(audio)}")
    assert back is not None and back <= BACK_WITHIN_S, [
        (r["t"], r.get("paused"), r.get("fps"), r.get("level")) for r in rows if r["t"] >= step_at]
