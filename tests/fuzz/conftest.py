"""The fuzz tests' hypothesis profile (``tests/fuzz/budget.py``) and a real server per module.
(Logged tracebacks: the root conftest's ``no_traceback_logged``, asserted on inside examples too,
so that hypothesis sees the failure where it happens and shrinks it.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.fuzz.budget import PROFILE
from tests.fuzz.live import LiveServer

settings.load_profile(PROFILE)


@pytest.fixture(scope="module")
def live(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A real server on loopback for the module's tests (``tests/fuzz/live.py``), with the
    config overrides in the module's ``LIVE_CONFIG`` (as ``make_config`` takes them)."""
    server = LiveServer(**getattr(request.module, "LIVE_CONFIG", {}))
    try:
        yield server
    finally:
        server.close()
