"""Shared fixtures: a real server on loopback, tokens, the pre-encoded clip."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sfu.auth import mint_token
from sfu.client.media import Clip, ClipParams, load_clip
from sfu.service.config import Config, default_config
from sfu.transport.settings import MediaSettings

SECRET = "test-secret-0123456789abcdef-0123"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: end-to-end test in headless Chromium (needs playwright and chromium)")
    config.addinivalue_line(
        "markers", "netns: needs root: network namespaces, veth pairs and tc tbf (real constrained links)")
    config.addinivalue_line(
        "markers", "traceback_expected: the test provokes a logged traceback on purpose")


class _Tracebacks(logging.Handler):
    """Collects every log record that carries a traceback, whatever its logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[0] is not None:
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_traceback_logged(request: pytest.FixtureRequest) -> object:
    """The server logs no traceback under any test (issue 11: hostile input, faults, floods).

    In-process servers, clients and aiortc log through ``logging``; asyncio's "Task exception was
    never retrieved" and loop exception handler do too. A test that provokes one on purpose says so
    with ``@pytest.mark.traceback_expected``.
    """
    handler = _Tracebacks()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
    if handler.records and request.node.get_closest_marker("traceback_expected") is None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        shown = "\n".join(formatter.format(r) for r in handler.records[:3])
        pytest.fail(f"{len(handler.records)} log record(s) with a traceback:\n{shown}", pytrace=False)


def make_config(**overrides: object) -> Config:
    cfg = default_config()
    cfg = dataclasses.replace(cfg, auth=dataclasses.replace(cfg.auth, secret=SECRET))
    media = overrides.pop("media", None)
    if isinstance(media, dict):
        cfg = dataclasses.replace(cfg, media=dataclasses.replace(MediaSettings(), **media))
    for section, values in overrides.items():
        assert isinstance(values, dict)
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **values)})
    return cfg


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    directory = Path(os.environ.get("SFU_CLIP_DIR") or tmp_path_factory.mktemp("clip"))
    return load_clip(directory, ClipParams(seconds=5))


@pytest.fixture
def token() -> Callable[..., str]:
    def mint(role: str = "staff", sub: str = "dr-lee", clinic: str = "demo", **kw: object) -> str:
        return mint_token(SECRET, sub=sub, role=role, clinic=clinic, **kw)  # type: ignore[arg-type]

    return mint


@contextlib.asynccontextmanager
async def running_server(cfg: Config) -> AsyncIterator[Any]:
    """A server with ``cfg`` on a free loopback port, its base URL as ``url``; closed after."""
    from sfu.service.server import Server

    srv = Server(cfg)
    await srv.start("127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{srv.port}"  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        await srv.close()
        await asyncio.sleep(0)
        gc.collect()


@pytest.fixture
async def server() -> AsyncIterator[object]:
    async with running_server(make_config(media={"inactivity_timeout": 5.0})) as srv:
        yield srv
