"""Browser end-to-end tests: headless Chromium (Debian's) driven by Playwright for Python.

``playwright install`` is not needed: the tests use the system browser through ``executable_path``
(``SFU_CHROMIUM`` overrides ``/usr/bin/chromium``). Without Playwright or the browser they skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
]


def chromium_path() -> str | None:
    path = os.environ.get("SFU_CHROMIUM") or "/usr/bin/chromium"
    if Path(path).is_file():
        return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A fresh headless Chromium (a new temporary profile every time)."""
    playwright_api = pytest.importorskip("playwright.async_api")
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed")
    async with playwright_api.async_playwright() as p:
        instance = await p.chromium.launch(executable_path=executable, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()
