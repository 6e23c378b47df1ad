"""Ops fixtures: a real local webhook receiver on 127.0.0.1, free ports."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from sfu.service.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    def verifies(self, secret: str) -> bool:
        return verify_signature(secret, self.headers.get(TIMESTAMP_HEADER), self.body,
                                self.headers.get(SIGNATURE_HEADER), now=time.time())


@dataclass
class Receiver:
    """An HTTP receiver: answers with ``statuses`` in order (then 200), records every request."""

    statuses: list[int] = field(default_factory=list)
    hang: bool = False  # hold every request until ``release`` is set
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Received(body, dict(request.headers), time.monotonic()))
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r.event for r in self.requests if kind is None or r.event["type"] == kind]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` (about this receiver or the sender's counters) holds."""
        await eventually(predicate, within, every=0.01)


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    runners: list[tuple[web.AppRunner, Receiver]] = []

    async def make(**kw: Any) -> Receiver:
        receiver = Receiver(**kw)
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        receiver.url = f"http://127.0.0.1:{port}/hook"
        runners.append((runner, receiver))
        return receiver

    yield make
    for runner, receiver in runners:
        receiver.release.set()
        await runner.cleanup()


async def eventually(predicate: Callable[[], bool | Awaitable[bool]], within: float = 10.0,
                     every: float = 0.05) -> None:
    """Poll ``predicate`` (sync or async) until true; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
