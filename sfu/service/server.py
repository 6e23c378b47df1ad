"""The server: HTTP + WebSocket on aiohttp, the clinic registry, the calls, and their owner.

One idempotent ``close`` in a fixed order: stop accepting, tell everyone, close sessions and
endpoints, await every task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCIceServer

from sfu.auth import Claims
from sfu.calls.call import Call, CallKey
from sfu.calls.manager import CallManager
from sfu.config import Config, parse_port_range
from sfu.errors import ApiError, forbidden
from sfu.rooms import events as ev
from sfu.rooms.clinic import ClinicRegistry
from sfu.rooms.policy import ResolvedTarget, require_member
from sfu.service.api import setup_api_routes
from sfu.service.metrics import Metrics
from sfu.service.signaling import SignalingSession
from sfu.service.webhooks import WebhookDispatcher
from sfu.transport.aiortc_glue import IceSettings
from sfu.transport.endpoint import EndpointSettings
from sfu.transport.forwarder import Counters

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent.parent / "web"


class Server:
    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.counters = Counters()
        self.registry = ClinicRegistry(config.clinics, limits=config.limits, waiting_area=config.waiting_area, on_event=self._on_domain_event)
        self.call_manager = CallManager(self)
        self.sessions: set[SignalingSession] = set()
        self.draining = False
        self.metrics = Metrics(self.counters, self.snapshot)
        self.endpoint_settings = self._endpoint_settings(config)
        self.app = self._make_app()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.loop_lag = 0.0
        self.port = config.server.port
        # Listeners of server events (webhooks, tests): called with (event name, JSON payload of
        # opaque ids). Called synchronously; they must only queue work.
        self._space_status: dict[str, str] = {}
        self.event_listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.webhooks = WebhookDispatcher(config.webhooks, clock=clock,
                                          registry=self.metrics.registry)
        self.event_listeners.append(self.webhooks)
        self._metrics_runner: web.AppRunner | None = None
        self.metrics_port = 0  # the separate /metrics port once started (config.metrics.port)

    @staticmethod
    def _endpoint_settings(config: Config) -> EndpointSettings:
        media = config.media
        return EndpointSettings(
            ice=IceSettings(tuple(media.ice_addresses), media.announced_address,
                            parse_port_range(media.udp_ports)),
            ice_servers=tuple(RTCIceServer(urls=s.urls, username=s.username or None,
                                           credential=s.credential or None)
                              for s in media.ice_servers),
            inactivity_timeout=media.inactivity_timeout,
            connect_timeout=media.connect_timeout,
            packet_cache_size=media.packet_cache_size,
            pli_interval=media.pli_interval,
        )

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.server.max_message_bytes)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if not self.config.metrics.port:  # otherwise served on its own port (start)
            app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/ws", self._ws)
        setup_api_routes(app, self.registry, self.config, clock=self.clock)
        if WEB_DIR.is_dir():
            from sfu.service.web import setup_web_routes

            try:
                setup_web_routes(app, WEB_DIR)
            except FileNotFoundError as exc:
                log.warning("reference web client not served: %s", exc)
        return app

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, host: str | None = None, port: int | None = None) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host or self.config.server.host,
                           self.config.server.port if port is None else port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._spawn(self._housekeeping())
        self._spawn(self._measure_loop_lag())
        if self.config.metrics.port:
            await self._start_metrics(host or self.config.server.host)
        await self.webhooks.start()

    async def _start_metrics(self, host: str) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._metrics_runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._metrics_runner.setup()
        site = web.TCPSite(self._metrics_runner, host, self.config.metrics.port)
        await site.start()
        self.metrics_port = self.config.metrics.port

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Refuse new joins, tell everyone ``server_shutdown``, wait (bounded by the caller) for them to go."""
        self.draining = True
        for session in list(self.sessions):
            session.ended("server_shutdown")
        await self.call_manager.wait_empty()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.draining = True
        for session in list(self.sessions):
            session.ended("server_shutdown")
        await self.call_manager.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.webhooks.close()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.registry.expire(self.clock())
            self.call_manager.tick()

    async def _measure_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.25)
            lag = max(0.0, loop.time() - start - 0.25)
            self.loop_lag = lag
            self.metrics.loop_lag.observe(lag)

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        for listener in list(self.event_listeners):
            try:
                listener(name, payload)
            except Exception:  # noqa: BLE001 - a listener must never break signaling
                log.exception("event listener failed for %s", name)

    # -- HTTP -------------------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        if self.loop_lag > 1.0:
            return web.json_response({"status": "overloaded", "loop_lag": self.loop_lag}, status=503)
        return web.json_response({"status": "ready"})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=max(
            4 * self.config.server.max_message_bytes, 1 << 20))
        await ws.prepare(request)
        session = SignalingSession(self, ws)
        self.sessions.add(session)
        await session.run(request.query.get("token"))
        return ws

    # -- joining and leaving (sfu/calls.py) ------------------------------------------------------
    @property
    def calls(self) -> dict[CallKey, Call]:
        return self.call_manager.calls

    def admit(self, session: SignalingSession, claims: Claims,
              resolved: ResolvedTarget) -> tuple[str, str] | None:
        return self.call_manager.admit(session, claims, resolved)

    async def remove_participant(self, session: SignalingSession, reason: str) -> None:
        await self.call_manager.remove(session, reason)

    # -- waiting-area feed ------------------------------------------------------------------------
    def watch(self, session: SignalingSession, claims: Claims, clinic_id: str) -> None:
        try:
            require_member(claims, clinic_id)
        except ApiError:
            raise forbidden("only staff of this clinic may watch its waiting area") from None
        clinic = self.registry.get(clinic_id)
        session.watching = clinic_id
        session.send({"type": "waiting_area", "clinic": clinic_id, **clinic.waiting_area.to_json()})

    def refused(self, claims: Claims | None, code: str, target: Any = None) -> None:
        """Count and announce a refused join."""
        role = claims.role if claims is not None else "unknown"
        self.metrics.join_outcome(role, code)
        payload: dict[str, Any] = {"role": role, "code": code}
        if claims is not None:
            payload["clinic"] = claims.clinic
        if isinstance(target, dict):
            payload.update({k: v for k, v in target.items() if k in ("space", "room")
                            and isinstance(v, str)})
        self.emit("join.refused", payload)

    def _on_domain_event(self, event: ev.DomainEvent) -> None:
        if isinstance(event, ev.SpaceCreated):
            self.emit("space.created", {"clinic": event.clinic, "space": event.space})
        elif isinstance(event, ev.WaitingAreaChanged):
            clinic = self.registry.find(event.clinic)
            if clinic is None:
                return
            for space in clinic.waiting_area.spaces:
                before = self._space_status.get(space.id)
                now_status = space.status
                if before != now_status:
                    self._space_status[space.id] = now_status
                    if now_status == "in_consultation":
                        self.emit("consultation.started", {"clinic": event.clinic, "space": space.id})
                    elif now_status == "on_hold":
                        self.emit("consultation.on_hold", {"clinic": event.clinic, "space": space.id})
            message = {"type": "waiting_area", "clinic": event.clinic,
                       **clinic.waiting_area.to_json()}
            for session in self.sessions:
                if session.watching == event.clinic:
                    session.send(message)
        elif isinstance(event, ev.SpaceEnded):
            self._space_status.pop(event.space, None)
            self.emit("consultation.ended", {"clinic": event.clinic, "space": event.space,
                                             "reason": event.reason})
            self._end_call(CallKey(event.clinic, "space", event.space), event.reason)
        elif isinstance(event, ev.RoomDeleted):
            self._end_call(CallKey(event.clinic, "room", event.room), "room_deleted")

    def _end_call(self, key: CallKey, reason: str) -> None:
        self.call_manager.end_call(key, reason)

    # -- snapshots for metrics and clients ----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        roles, rooms = self.call_manager.snapshot()
        waiting = sum(1 for clinic in self.registry.clinics for s in clinic.waiting_area.spaces
                      if s.status == "waiting" and s.patient_present)
        return {"participants": roles, "rooms": rooms, "waiting_patients": waiting}

    def ice_servers_json(self) -> list[dict[str, Any]]:
        out = []
        for server in self.config.media.ice_servers:
            entry: dict[str, Any] = {"urls": server.urls}
            if server.username:
                entry["username"] = server.username
                entry["credential"] = server.credential
            out.append(entry)
        return out
