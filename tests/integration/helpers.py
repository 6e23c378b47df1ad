"""Helpers for tests that run real clients against a real server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from sfu.client.client import Client, ClientError
from sfu.client.media import Clip


async def join_all(url: str, tokens: list[str], clip: Clip, target: dict[str, str],
                   **kw: object) -> list[Client]:
    clients = []
    for tok in tokens:
        c = Client(url, tok, clip=clip, **kw)  # type: ignore[arg-type]
        await c.join(target)
        clients.append(c)
    return clients


def receives_everyone(clients: list[Client], *, keyframe: bool = True) -> Callable[[], bool]:
    def check() -> bool:
        for c in clients:
            for other in clients:
                if other is c:
                    continue
                for kind in ("audio", "video"):
                    t = c.received_from(other.participant or "", kind)
                    if t is None or t.packets < 5:
                        return False
                    if kind == "video" and keyframe and t.keyframes < 1:
                        return False
        return True

    return check


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def close_all(clients: list[Client]) -> None:
    for c in clients:
        with contextlib.suppress(ClientError, ConnectionError, RuntimeError):
            await c.leave()
