"""A stand-in for a cluster node that does not host the call: every ``join`` is answered with
``redirect`` (contract13.md "Nodes"), then the socket closes, as a real node does.

It is a real aiohttp server on loopback: ``/v1/ws`` takes the token as a real node does (an
``auth`` message, answered ``authenticated``, or ``?token=``), records each join, and redirects
to where ``redirect_to(n)`` says for the n-th join (1-based). With ``web_pages`` it also serves
the reference web client (the real ``setup_web_routes``) whose CSP allows ``connect_origins()``,
so a browser page loaded from here can follow the redirect to another port.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web


@dataclass
class SeenJoin:
    token: str | None
    target: Any
    redirected_to: str


def ws_url(http_url: str) -> str:
    """The signaling WebSocket of a node at ``http_url``."""
    return http_url.replace("http://", "ws://", 1) + "/v1/ws"


class RedirectStub:
    def __init__(self, redirect_to: Callable[[int], str], *, web_pages: bool = False,
                 connect_origins: Callable[[], Iterable[str]] = lambda: []) -> None:
        self.redirect_to = redirect_to
        self.joins: list[SeenJoin] = []
        self.sockets = 0  # WebSocket connections accepted
        self.app = web.Application()
        self.app.router.add_get("/v1/ws", self._ws)
        if web_pages:
            from sfu.service.server import WEB_DIR
            from sfu.service.web import setup_web_routes

            setup_web_routes(self.app, WEB_DIR, connect_origins=connect_origins)
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        self.url = ""
        self.port = 0

    async def start(self) -> RedirectStub:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def close(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> RedirectStub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets += 1
        token = request.query.get("token")
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data.get("type") == "auth":
                token = data.get("token")
                await ws.send_str(json.dumps({"type": "authenticated", "expires_at": 0}))
            elif data.get("type") == "join":
                url = self.redirect_to(len(self.joins) + 1)
                self.joins.append(SeenJoin(token, data.get("target"), url))
                await ws.send_str(json.dumps({"type": "redirect", "url": url}))
                break  # the node closes the socket after a redirect
        await ws.close()
        return ws
