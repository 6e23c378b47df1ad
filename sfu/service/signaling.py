"""One WebSocket signaling session (API.md "WebSocket"): token, join, offer/answer, leave.

The token is checked before anything else. Outgoing messages go through a bounded queue and
one writer task, so that notifying a participant never awaits its socket; a socket that cannot
keep up with signaling is closed. Every refusal is an ``error`` with a contract code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from sfu.auth import Claims, verify_token
from sfu.calls.call import Call, Participant
from sfu.calls.precall import PrecallTest
from sfu.errors import ApiError, NegotiationError, bad_request
from sfu.rooms.policy import authorize_join
from sfu.transport.endpoint import Endpoint, EndpointListener, TrackInfo

if TYPE_CHECKING:
    from sfu.service.server import Server

log = logging.getLogger(__name__)

OUTBOX_SIZE = 256


class SignalingSession(EndpointListener):
    def __init__(self, server: Server, ws: web.WebSocketResponse) -> None:
        self.server = server
        self.ws = ws
        self.id = "ws_" + secrets.token_hex(6)
        self.claims: Claims | None = None
        self.participant: Participant | None = None
        self.call: Call | None = None
        self.endpoint: Endpoint | None = None
        self.venue: Any = None
        self.watching: str | None = None  # clinic whose waiting area this session watches
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX_SIZE)
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._left = False
        self.precall: PrecallTest | None = None

    # -- outgoing -----------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("session %s: signaling outbox full, closing", self.id)
            self.server.counters.drop("signaling_outbox_full")
            self.close_soon()

    def error(self, code: str, message: str) -> None:
        self.send({"type": "error", "code": code, "message": message})

    def close_soon(self) -> None:
        """Flush what is queued, then close the socket."""
        if self._closing:
            return
        self._closing = True
        try:
            self._outbox.put_nowait(None)
        except asyncio.QueueFull:
            self._spawn(self.ws.close())

    async def _writer(self) -> None:
        while True:
            message = await self._outbox.get()
            if message is None:
                await self.ws.close()
                return
            try:
                await self.ws.send_str(json.dumps(message, separators=(",", ":")))
            except (ConnectionError, RuntimeError):
                return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the session --------------------------------------------------------------------------
    async def run(self, token: str | None) -> None:
        writer = asyncio.ensure_future(self._writer())
        try:
            try:
                self.claims = verify_token(token or "", self.server.config.auth.secret)
            except ApiError as exc:
                self.server.refused(None, "unauthorized")
                self.error(exc.code, exc.message)
                self.close_soon()
                return
            await self._read_loop()
        finally:
            await self._leave("disconnected")
            self.watching = None
            self.server.sessions.discard(self)
            self.close_soon()
            try:
                await asyncio.wait_for(writer, timeout=2)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_loop(self) -> None:
        limit = self.server.config.server.max_message_bytes
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                data: str = msg.data
                if len(data.encode()) > limit:
                    self.error("bad_request", f"message larger than {limit} bytes")
                    continue
                await self._handle_text(data)
            elif msg.type == WSMsgType.BINARY:
                self.error("bad_request", "binary frames are not part of the protocol")
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
            if self._closing:
                break

    async def _handle_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.error("bad_request", "message is not valid JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.error("bad_request", "message must be a JSON object with a string 'type'")
            return
        kind = message["type"]
        handler = {
            "join": self._on_join, "answer": self._on_answer, "candidate": self._on_candidate,
            "leave": self._on_leave, "watch": self._on_watch, "ping": self._on_ping,
            "precall": self._on_precall,
        }.get(kind)
        if handler is None:
            self.error("bad_request", f"unknown message type {kind!r}")
            return
        try:
            await handler(message)
        except ApiError as exc:
            self.error(exc.code, exc.message)

    async def _on_precall(self, message: dict[str, Any]) -> None:
        if self.participant is not None or self.endpoint is not None:
            raise bad_request("a pre-call test runs before joining, one at a time")
        if self.server.draining:
            raise ApiError("draining", "the server is shutting down")
        seconds = message.get("seconds", 5)
        if not isinstance(seconds, int | float) or not 2 <= seconds <= 15:
            raise bad_request("'seconds' must be a number from 2 to 15")
        endpoint = Endpoint("pc_" + secrets.token_hex(6), self.server.endpoint_settings, self,
                            self.server.counters)
        self.endpoint = endpoint
        self.precall = PrecallTest(endpoint, self.server.call_manager.admission, float(seconds))
        self._spawn(self._run_precall(self.precall))

    async def _run_precall(self, test: PrecallTest) -> None:
        try:
            result = await test.run()
            self.send(result)
        finally:
            self.precall = None
            self.endpoint = None
            await test.endpoint.close()

    async def _on_ping(self, message: dict[str, Any]) -> None:
        self.send({"type": "pong"})

    async def _on_join(self, message: dict[str, Any]) -> None:
        assert self.claims is not None
        claims = self.claims
        if self.participant is not None or self._left:
            raise bad_request("already joined; send 'leave' first")
        if self.precall is not None:
            raise bad_request("a pre-call test is running; join after its result")
        server = self.server
        try:
            resolved = authorize_join(claims, server.registry, message.get("target", {}))
        except ApiError as exc:
            server.refused(claims, exc.code, message.get("target"))
            self.error(exc.code, exc.message)
            if exc.code != "bad_request":
                self.close_soon()
            return
        outcome = server.admit(self, claims, resolved)
        if outcome is not None:
            code, text = outcome
            server.refused(claims, code, message.get("target"))
            self.error(code, text)
            self.close_soon()
            return

    def probing(self, call: Call, participant: Participant, endpoint: Endpoint, venue: Any) -> None:
        """The join would fill the call: media starts, ``joined`` waits for the probe's verdict."""
        self.call, self.participant, self.endpoint, self.venue = call, participant, endpoint, venue
        endpoint.start()
        endpoint.renegotiate()

    def own(self, task: asyncio.Task[None]) -> None:
        """Tasks working for this session are cancelled and awaited when it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refuse(self, code: str, message: str) -> None:
        """A probed newcomer is refused: nothing about the call changed."""
        self.error(code, message)
        self._spawn(self._leave("refused"))
        self.close_soon()

    def mark_left(self) -> None:
        self._left = True

    def joined(self, call: Call, participant: Participant, endpoint: Endpoint, venue: Any) -> None:
        """Called by the server once admitted."""
        probed = self.endpoint is endpoint
        self.call, self.participant, self.endpoint, self.venue = call, participant, endpoint, venue
        self.send({
            "type": "joined", "participant": participant.id, "target": call.key.target(),
            "participants": [p.public() for p in call.others(participant.id)],
            "ice_servers": self.server.ice_servers_json(),
        })
        if not probed:
            endpoint.start()
            endpoint.renegotiate()

    async def _on_answer(self, message: dict[str, Any]) -> None:
        sdp = message.get("sdp")
        if not isinstance(sdp, str) or not sdp.strip():
            raise bad_request("'answer' needs a string 'sdp'")
        if self.endpoint is None:
            raise bad_request("no offer to answer: join first")
        try:
            await self.endpoint.apply_answer(sdp)
        except NegotiationError as exc:
            raise bad_request(f"answer does not fit the offer: {exc}") from exc

    async def _on_candidate(self, message: dict[str, Any]) -> None:
        if self.endpoint is None:
            raise bad_request("join first")
        candidate = message.get("candidate")
        if candidate in (None, ""):
            return  # end of candidates
        if not isinstance(candidate, str):
            raise bad_request("'candidate' must be a string")
        mid = message.get("sdpMid")
        try:
            await self.endpoint.add_candidate(candidate, mid if isinstance(mid, str) else None)
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise bad_request(f"malformed candidate: {exc}") from exc

    async def _on_leave(self, message: dict[str, Any]) -> None:
        await self._leave("left")
        self.close_soon()

    async def _on_watch(self, message: dict[str, Any]) -> None:
        assert self.claims is not None
        if message.get("waiting_area") is not True:
            self.watching = None
            return
        requested = message.get("clinic")
        clinic = requested if isinstance(requested, str) else self.claims.clinic
        self.server.watch(self, self.claims, clinic)

    async def _leave(self, reason: str) -> None:
        if self._left or self.participant is None:
            return
        await self.server.remove_participant(self, reason)

    # -- EndpointListener -----------------------------------------------------------------------
    async def send_offer(self, endpoint: Endpoint, sdp: str, tracks: list[TrackInfo]) -> None:
        self.send({"type": "tracks", "tracks": [
            {"mid": t.mid, "participant": t.participant, "kind": t.kind} for t in tracks]})
        self.send({"type": "offer", "sdp": sdp})

    def producers_changed(self, endpoint: Endpoint) -> None:
        if self.precall is not None:
            self.precall.producers_changed()
        if self.call is not None and self.participant is not None:
            self.call.producers_changed(self.participant)

    def failed(self, endpoint: Endpoint, reason: str) -> None:
        log.info("participant %s: media failed (%s)", self.participant.id if self.participant else "-",
                 reason)
        self.error("media_failed", f"media connection lost: {reason}")
        self._spawn(self._leave("failed"))
        self.close_soon()

    def first_media(self, endpoint: Endpoint) -> None:
        if self.participant is not None:
            self.server.metrics.first_media(self.server.clock() - self.participant.joined_at)

    def ended(self, reason: str) -> None:
        """The space or room is gone, or the server shuts down."""
        self.send({"type": "ended", "reason": reason})
        self._spawn(self._leave(reason))
        self.close_soon()
