"""A real server on loopback, on an event loop of its own in a thread, for fuzz tests that are
plain functions (hypothesis drives them) and talk to it over real HTTP and WebSockets.

``run(coro)`` runs a coroutine on the server's loop (a WebSocket client, or a look at the
server's state between two requests); ``loop_errors`` collects what reached the loop's exception
handler (a callback or task that raised), which must stay empty."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sfu.service.server import Server
from tests.conftest import make_config

T = TypeVar("T")


class LiveServer:
    def __init__(self, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server",
                                        daemon=True)
        self._thread.start()
        self.server: Server = self.run(self._start(config))
        self.url = f"http://127.0.0.1:{self.server.port}"

    @staticmethod
    async def _start(config: dict[str, Any]) -> Server:
        server = Server(make_config(**config))
        await server.start("127.0.0.1", 0)
        return server

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
