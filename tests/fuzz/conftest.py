"""The fuzz tests' hypothesis profile (``tests/fuzz/budget.py``), a log watch, and a real
server per module."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.fuzz.budget import PROFILE
from tests.fuzz.live import LiveServer

settings.load_profile(PROFILE)


class Tracebacks(logging.Handler):
    """Every record logged with a traceback, or at ERROR and above."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)

    def texts(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}\n{logging.Formatter().formatException(r.exc_info)}"
                if r.exc_info else f"{r.name}: {r.getMessage()}" for r in self.records]


@pytest.fixture
def tracebacks() -> Iterator[Tracebacks]:
    """Collects what the code under test logs with a traceback (from any thread)."""
    handler = Tracebacks()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture(scope="module")
def live(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A real server on loopback for the module's tests (``tests/fuzz/live.py``), with the
    config overrides in the module's ``LIVE_CONFIG`` (as ``make_config`` takes them)."""
    server = LiveServer(**getattr(request.module, "LIVE_CONFIG", {}))
    try:
        yield server
    finally:
        server.close()
