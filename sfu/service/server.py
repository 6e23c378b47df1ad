"""The server: HTTP + WebSocket on aiohttp; it builds the control plane and owns the edge.

It wires narrow pieces together: the clinic registry (sfu/rooms), the calls manager (sfu/calls)
with an endpoint factory bound to the media settings, the events sink (metrics, webhooks) and the
waiting-area feed. One idempotent ``close`` in a fixed order: stop accepting, tell everyone,
close sessions and endpoints, await every task.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from sfu.auth import ADMIN, ALL_CLINICS, GUEST
from sfu.calls.events import CallKey
from sfu.calls.manager import Calls
from sfu.calls.media import MediaEndpoint
from sfu.cluster.node import ClusterNode
from sfu.errors import ApiError, rate_limited, server_full
from sfu.rooms import IN_CONSULTATION, ON_HOLD, WAITING
from sfu.rooms import events as ev
from sfu.rooms.clinic import ClinicRegistry
from sfu.service import memory
from sfu.service.api import client_addresses, error_response, refuse_revoked, setup_api_routes
from sfu.service.config import Config
from sfu.service.events import ServerEvents
from sfu.service.feed import WaitingAreaFeed
from sfu.service.metrics import Metrics
from sfu.service.signaling import SessionContext, SignalingSession
from sfu.service.turn import ice_servers_json
from sfu.service.webhooks import WebhookDispatcher
from sfu.transport.counters import Counters
from sfu.transport.endpoint import Endpoint, EndpointListener

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent.parent / "web"


class Server:
    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.counters = Counters()
        self.metrics = Metrics(self.counters, self.snapshot)
        self.events = ServerEvents(self.metrics)
        self.registry = ClinicRegistry(config.clinics, limits=config.limits,
                                       waiting_area=config.waiting_area,
                                       on_event=self._on_domain_event)
        self.sessions: set[SignalingSession] = set()
        self.memory_trims = 0  # housekeeping's malloc_trim calls that returned memory
        # every endpoint made, for the gauge of open ones (a closed one drops out with its owner)
        self._endpoints: weakref.WeakSet[Endpoint] = weakref.WeakSet()
        self.draining = False
        self.calls = Calls(registry=self.registry, new_endpoint=self._new_endpoint,
                           events=self.events, limits=config.limits,
                           bandwidth=config.bandwidth, clock=clock)
        # [cluster]: this node mirrors its registry into Redis and places calls (sfu/cluster)
        self.cluster: ClusterNode | None = None
        if config.cluster is not None:
            self.cluster = ClusterNode(
                config.cluster, node_id=config.cluster.node_id, url=config.cluster.advertise_url,
                registry=self.registry, cluster_token=self._cluster_token, load=self._load,
                hosts_call=lambda clinic, kind, id: CallKey(clinic, kind, id) in self.calls.by_key,
                clock=clock)
            self.registry.add_listener(self.cluster.on_domain_event)
        self.feed = WaitingAreaFeed(
            self.registry, source=self.cluster.waiting_list if self.cluster is not None else None)
        if self.cluster is not None:
            self.cluster.on_waiting_area = self.feed.changed
            self.cluster.on_space_ended = lambda clinic, space, reason: self.events.emit(
                "consultation.ended", {"clinic": clinic, "space": space, "reason": reason})
        self._node_token: tuple[float, str] = (0.0, "")
        self.addresses = client_addresses(config)
        self._sockets: dict[str, int] = {}  # open WebSockets per client address
        self._ice_server_settings = config.media.ice_servers
        self._session_context = SessionContext(
            calls=self.calls, feed=self.feed, events=self.events, secret=config.auth.secret,
            max_message_bytes=config.server.max_message_bytes,
            ice_servers=self._ice_servers,
            on_outbox_full=lambda: self.counters.drop("signaling_outbox_full"),
            url_token=config.auth.url_token, media_budget=self._media_budget,
            verify=lambda token: refuse_revoked(config.auth.verify(token), self.registry),
            leeway=config.auth.leeway,
            route=self.cluster.route if self.cluster is not None else None)
        self.app = self._make_app()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.loop_lag = 0.0
        self.port = config.server.port
        self.webhooks = WebhookDispatcher(config.webhooks, clock=clock,
                                          registry=self.metrics.registry)
        self.events.listeners.append(self.webhooks)
        self._metrics_runner: web.AppRunner | None = None
        self.metrics_port = 0  # the separate /metrics port once started (config.metrics.port)

    @property
    def event_listeners(self) -> list[Callable[[str, dict[str, Any]], None]]:
        """Listeners of server events (webhooks, tests): (event name, JSON payload of ids)."""
        return self.events.listeners

    def _new_endpoint(self, endpoint_id: str, listener: EndpointListener) -> MediaEndpoint:
        """The one place the server makes a media endpoint."""
        endpoint = Endpoint(endpoint_id, self.config.media, listener, self.counters)
        self._endpoints.add(endpoint)
        return endpoint

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.server.max_message_bytes)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if not self.config.metrics.port:  # otherwise served on its own port (start)
            app.router.add_get("/metrics", self._public_metrics)
        app.router.add_get("/v1/ws", self._ws)
        setup_api_routes(app, self.registry, self.config, clock=self.clock,
                         addresses=self.addresses, cluster=self.cluster)
        if WEB_DIR.is_dir():
            from sfu.service.web import setup_web_routes

            try:
                # connect_origins: the cluster's nodes (a join may be redirected to one)
                setup_web_routes(app, WEB_DIR, self.config.server.embed_origins,
                                 connect_origins=self.cluster.node_origins if self.cluster is not None else (lambda: []))
            except FileNotFoundError as exc:
                log.warning("reference web client not served: %s", exc)
        return app

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, host: str | None = None, port: int | None = None) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                     keepalive_timeout=self.config.server.keepalive_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host or self.config.server.host,
                           self.config.server.port if port is None else port)
        await site.start()
        addresses = self._runner.addresses  # (host, port, ...) of each bound socket
        if addresses:
            self.port = int(addresses[0][1])
        if self.cluster is not None:
            if not self.cluster.id:
                self.cluster.id = f"{socket.gethostname()}-{self.port}".replace(".", "-")
            if not self.cluster.url:
                self.cluster.url = f"http://{host or self.config.server.host}:{self.port}"
            await self.cluster.start()
        cluster = self.config.cluster
        if cluster is not None and cluster.shared_port:  # shared with this host's other nodes
            shared = web.TCPSite(self._runner, host or self.config.server.host,
                                 cluster.shared_port, reuse_port=True)
            await shared.start()
        # a first trim now: the worker thread the minute's trims run in starts with the server
        # (a fixed part of its baseline, not a thread that appears under load)
        self.memory_trims += await asyncio.to_thread(memory.trim)
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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _end_everything(self) -> None:
        """No new joins; every participant and every other socket hears ``server_shutdown``."""
        self.draining = True
        if self.cluster is not None:
            self.cluster.set_draining()  # no new calls are placed here
        self.calls.end_all("server_shutdown")
        for session in list(self.sessions):
            session.ended("server_shutdown")

    async def drain(self) -> None:
        """Refuse new joins, tell everyone ``server_shutdown``, wait (bounded by the caller) for them to go.

        In a cluster with other live nodes, the calls here move instead: this node gives its
        spaces and placements back first, then every participant is sent ``redirect`` to a live
        node, where their client joins again with the same token (the space keeps its place in
        the waiting list; the call is placed on the least loaded node)."""
        if self.cluster is not None and not self._closed:
            await self._move_calls_away()
        self._end_everything()
        await self.calls.wait_empty()

    async def _move_calls_away(self) -> None:
        assert self.cluster is not None
        self.draining = True
        self.calls.draining = True  # no join here from now on
        target = await self.cluster.leave()
        if target is None:
            return  # no other node: everyone hears server_shutdown
        moved = 0
        for session in list(self.sessions):
            if session.participant is not None:
                session.send({"type": "redirect", "url": target})
                session.close_soon()
                moved += 1
        log.info("draining: %d participants sent to another node", moved)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._end_everything()
        await self.calls.close()
        await self.feed.close()
        if self.cluster is not None:
            await self.cluster.close()  # its spaces go back to the waiting list, unplaced
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
        loop = asyncio.get_running_loop()
        next_trim = loop.time() + memory.TRIM_INTERVAL
        while True:
            await asyncio.sleep(1.0)
            self.registry.expire(self.clock())
            self.calls.tick()
            if loop.time() >= next_trim:  # freed heap back to the system (sfu/service/memory.py)
                next_trim = loop.time() + memory.TRIM_INTERVAL
                # in a worker thread: a trim walks the heap (~20 ms), which the loop must not stall
                # for (packets in flight would bunch up); allocations meanwhile mostly come from
                # Python's own arenas, not glibc's locked ones
                self.memory_trims += await asyncio.to_thread(memory.trim)

    async def _measure_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.25)
            lag = max(0.0, loop.time() - start - 0.25)
            self.loop_lag = lag
            self.metrics.loop_lag.observe(lag)

    # -- HTTP -------------------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        if self.loop_lag > 1.0:
            return web.json_response({"status": "overloaded", "loop_lag": self.loop_lag}, status=503)
        return web.json_response({"status": "ready"})

    def _media_budget(self, session: SignalingSession) -> None:
        """Refuse one more media connection (a UDP port) beyond the per-token and per-address
        budgets: one token's sockets took every port of a small range before."""
        limits = self.config.limits
        others = [s for s in self.sessions if s is not session and s.holds_media()]
        mine = sum(1 for s in others if s.identity == session.identity)
        if mine >= limits.media_per_token:
            raise ApiError("rate_limited", f"this token already has {mine} media connections "
                           f"open (at most {limits.media_per_token}); close one first", 429)
        near = sum(1 for s in others if s.address == session.address)
        if near >= limits.media_per_address:
            raise ApiError("rate_limited", f"{near} media connections are open from this "
                           f"address (at most {limits.media_per_address})", 429)

    async def _public_metrics(self, request: web.Request) -> web.Response:
        """/metrics on the main (public) port: patient counts and timings are not for anyone
        who asks. Loopback without forwarding headers (a local scraper, not a request relayed by
        a local reverse proxy), the scrape token, or ``metrics.public``."""
        m = self.config.metrics
        token = request.headers.get("Authorization", "")
        local = (request.remote in ("127.0.0.1", "::1")
                 and not any(h in request.headers for h in ("Forwarded", "X-Forwarded-For",
                                                            "X-Real-IP")))
        if not (m.public or local
                or (m.token and hmac.compare_digest(token, f"Bearer {m.token}"))):
            return error_response(ApiError(
                "forbidden", "metrics are served to loopback clients or with the scrape token "
                "(metrics.token); or set metrics.public, or a separate metrics.port", 403))
        return await self._metrics(request)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    def _socket_budget(self, address: str) -> None:
        """Refuse one more WebSocket from ``address`` (429) or at all (503): each holds a file
        descriptor, a reader and a writer task."""
        limits = self.config.limits
        if sum(self._sockets.values()) >= limits.sockets_total:
            raise server_full(f"this server holds its most WebSockets ({limits.sockets_total}); "
                              "try again later")
        if self._sockets.get(address, 0) >= limits.sockets_per_address:
            raise rate_limited(f"too many WebSockets open from this address (at most "
                               f"{limits.sockets_per_address})")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        address = self.addresses.key(request.remote, request.headers)
        try:
            self._socket_budget(address)
        except ApiError as exc:
            return error_response(exc)  # before the upgrade: an HTTP error with the code
        self._sockets[address] = self._sockets.get(address, 0) + 1
        try:
            # aiohttp refuses a message of max_msg_size bytes or more (close code 1009) as soon
            # as its frame header says so: the largest accepted is max_message_bytes
            ws = web.WebSocketResponse(heartbeat=20,
                                       max_msg_size=self.config.server.max_message_bytes + 1)
            try:
                await ws.prepare(request)
            except ConnectionError:  # the client went away during the upgrade: nothing to serve
                log.debug("a WebSocket closed during its upgrade")
                return web.Response()  # aiohttp's own write of it meets the closed connection
            session = SignalingSession(self._session_context, ws, address)
            self.sessions.add(session)
            try:
                await session.run(request.query.get("token"))
            finally:
                self.sessions.discard(session)
            return ws
        finally:
            left = self._sockets[address] - 1
            if left:
                self._sockets[address] = left
            else:
                del self._sockets[address]

    # -- what the clinic domain tells -------------------------------------------------------------
    def _on_domain_event(self, event: ev.DomainEvent) -> None:
        emit = self.events.emit
        if isinstance(event, ev.SpaceCreated):
            emit("space.created", {"clinic": event.clinic, "space": event.space})
        elif isinstance(event, ev.SpaceStatusChanged):
            if event.status == IN_CONSULTATION:
                emit("consultation.started", {"clinic": event.clinic, "space": event.space})
            elif event.status == ON_HOLD:
                emit("consultation.on_hold", {"clinic": event.clinic, "space": event.space})
        elif isinstance(event, ev.WaitingAreaChanged):
            self.feed.changed(event.clinic)
        elif isinstance(event, ev.SpaceEnded):
            emit("consultation.ended", {"clinic": event.clinic, "space": event.space,
                                        "reason": event.reason})
            self.calls.end_call(CallKey(event.clinic, "space", event.space), event.reason)
        elif isinstance(event, ev.RoomDeleted):
            self.calls.end_call(CallKey(event.clinic, "room", event.room), "room_deleted")
        elif isinstance(event, ev.InviteRevoked):
            self.calls.put_out(event.clinic, event.sub, GUEST, "invite_revoked")

    # -- snapshots for metrics and clients ----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        roles, rooms = self.calls.snapshot()
        waiting = sum(1 for clinic in self.registry.clinics for s in clinic.waiting_area.spaces
                      if s.status == WAITING and s.patient_present)
        return {"participants": roles, "rooms": rooms, "waiting_patients": waiting,
                "endpoints": sum(1 for e in list(self._endpoints) if not e.closed),
                "sockets": len(self.sessions), "tasks": _task_count(),
                "video_layers": self._video_layers(), "cluster": self._cluster_snapshot()}

    def _cluster_snapshot(self) -> dict[str, int]:
        node = self.cluster
        if node is None:
            return {}
        return {"nodes": len(node.live), "redirects": node.redirects, "relayed": node.relayed,
                "redis_errors": node.redis_errors}

    def _video_layers(self) -> dict[str, int]:
        """How many (receiver, video) pairs get which simulcast layer (its RID), a publisher's
        only encoding (``single``), nothing yet (``starting``) or nothing (``paused``)."""
        counts: dict[str, int] = {}
        for endpoint in list(self._endpoints):
            if endpoint.closed:
                continue
            for consumer in endpoint.consumers():
                producer = consumer.producer
                if producer.kind != "video":
                    continue
                if consumer.paused:
                    key = "paused"
                elif not producer.rids:
                    key = "single"
                elif consumer.layer is None:
                    key = "starting"
                else:
                    key = producer.rids[consumer.layer]
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _load(self) -> tuple[int, int]:
        """(participants, calls) here: a cluster node's load report."""
        roles, _ = self.calls.snapshot()
        return sum(roles.values()), len(self.calls.by_key)

    def _cluster_token(self) -> str:
        """This node's token on requests to other nodes: an admin of every clinic, ``node:<id>``
        (made again every 30 s)."""
        now = self.clock()
        made, token = self._node_token
        if now - made > 30 or not token:
            assert self.cluster is not None
            token = self.config.auth.mint(sub=f"node:{self.cluster.id}", role=ADMIN,
                                          clinic=ALL_CLINICS, ttl=60, now=now)
            self._node_token = (now, token)
        return token

    def _ice_servers(self, participant: str) -> list[dict[str, Any]]:
        """The ``ice_servers`` of ``participant``'s ``joined``: its own TURN credentials."""
        return ice_servers_json(self._ice_server_settings, participant, self.clock())


def _task_count() -> int:
    """Tasks of the running event loop; 0 when rendered outside one (no server running)."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop: nothing to count
        return 0
