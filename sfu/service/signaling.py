"""One WebSocket signaling session (API.md "WebSocket"): a thin adapter.

It parses messages and turns them into commands on the control plane (``Calls.join``,
``Participant.answer`` / ``add_candidate`` / ``close``, ``Calls.precall``) or the dashboard feed,
and renders the control plane's notifications (the ``sfu.calls.events.Client`` interface) as
messages. It holds no call state: only a handle on what it drives, a participant or a pre-call
test.

The token is checked before anything else: the one in the URL, or the first message's (``auth``),
which may come again later to refresh it. Outgoing messages go through a bounded queue and one
writer task, so that notifying a participant never awaits its socket; a socket that cannot keep up
with signaling is closed. Every refusal is an ``error`` with a contract code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from sfu.auth import Claims, verify_token
from sfu.calls.call import Participant
from sfu.calls.events import CallEvents, CallKey, Member, QualityNotice
from sfu.calls.manager import Calls
from sfu.calls.precall import PrecallTest
from sfu.errors import ApiError, NegotiationError, bad_request
from sfu.rooms.text import iso_time
from sfu.service.jsontext import parse_json
from sfu.transport.endpoint import TrackInfo

log = logging.getLogger(__name__)

OUTBOX_SIZE = 256


class Feed(Protocol):
    """The waiting-area feed, as a session subscribes to it."""

    def watch(self, session: SignalingSession, claims: Claims, clinic: str) -> None: ...
    def unwatch(self, session: SignalingSession) -> None: ...


@dataclass(frozen=True)
class SessionContext:
    """What a session needs of the server: narrow, no ``Server``."""

    calls: Calls
    feed: Feed
    events: CallEvents
    secret: str
    max_message_bytes: int
    # the ``ice_servers`` of ``joined`` for a participant id: its own TURN credentials, minted now
    ice_servers: Callable[[str], list[dict[str, Any]]]
    on_outbox_full: Callable[[], None]
    # the token's claims (401 ApiError when not valid): the server's [auth] rules
    verify: Callable[[str], Claims] = lambda token: verify_token(token, "")
    # raises ApiError (rate_limited) when the session may not open one more media connection
    media_budget: Callable[[SignalingSession], None] = lambda session: None
    url_token: bool = True  # ``?token=`` on the WebSocket URL accepted
    auth_timeout: float = 10.0  # a socket without a token in its URL must send ``auth`` by then
    # an authenticated socket must ask for something (join, precall, watch) by then, or it is
    # closed: an idle socket holds a file descriptor and a writer task for nothing
    purpose_timeout: float = 60.0
    leeway: float = 30.0  # the token's exp is past this long after it (auth.leeway)
    # in a cluster: where a join goes (None: here; a URL: the node hosting the call, ``redirect``)
    route: Callable[[Claims, object], Awaitable[str | None]] | None = None
    wall_clock: Callable[[], float] = time.time  # tokens' exp is wall-clock time


class SignalingSession:
    def __init__(self, ctx: SessionContext, ws: web.WebSocketResponse,
                 address: str = "unknown") -> None:
        self.ctx = ctx
        self.ws = ws
        self.address = address  # the client's address (for budgets; never logged with a name)
        self.id = "ws_" + secrets.token_hex(6)
        self.claims: Claims | None = None
        self.participant: Participant | None = None
        self.precall: PrecallTest | None = None
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX_SIZE)
        self._closing = False
        # since when the socket has had nothing to do (no call, no pre-call test running, no
        # feed), on the loop's clock; None while it has
        self._idle_since: float | None = asyncio.get_running_loop().time()
        self._feed_expiry_running = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- outgoing -----------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("session %s: signaling outbox full, closing", self.id)
            self.ctx.on_outbox_full()
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

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the session --------------------------------------------------------------------------
    async def run(self, token: str | None) -> None:
        """``token``: the one in the URL (``?token=``), or None: then the first message must be
        ``auth`` (API.md), within ``auth_timeout``."""
        writer = asyncio.ensure_future(self._writer())
        try:
            if token is not None:
                if not self.ctx.url_token:
                    self._refuse("this server takes the token only in an 'auth' message")
                    return
                try:
                    self.claims = self.ctx.verify(token)
                except ApiError as exc:
                    self._refuse(exc.message)
                    return
            else:
                self._spawn(self._auth_deadline())
            self._spawn(self._purpose_deadline())
            await self._read_loop()
        finally:
            self.ctx.feed.unwatch(self)
            if self.participant is not None:
                await self.participant.close("disconnected")
            if self.precall is not None:
                await self.precall.close()
            self.close_soon()
            try:
                await asyncio.wait_for(writer, timeout=2)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def identity(self) -> tuple[str | None, ...] | None:
        """Whose token this is (the same person in the same scope), None before ``auth``."""
        c = self.claims
        return None if c is None else (c.clinic, c.role, c.sub, c.space, c.room)

    def holds_media(self) -> bool:
        """A media connection (a UDP port) is open for this session: a call or a pre-call test."""
        return ((self.participant is not None and not self.participant.closed)
                or (self.precall is not None and not self.precall.closed))

    def _refuse(self, message: str) -> None:
        """An unusable token: ``unauthorized`` and the socket closes (nothing else is read)."""
        self.ctx.events.join_refused("unknown", "unauthorized", {})
        self.error("unauthorized", message)
        self.close_soon()

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(self.ctx.auth_timeout)
        if self.claims is None and not self._closing:
            self._refuse(f"no 'auth' message within {self.ctx.auth_timeout:g} s")

    def _busy(self) -> None:
        self._idle_since = None

    def _idle(self) -> None:
        """Nothing to do any more (a pre-call test's result, ``watch`` off)."""
        if self._idle_since is None and not self._closing:
            self._idle_since = asyncio.get_running_loop().time()

    async def _purpose_deadline(self) -> None:
        """A socket with nothing to do for ``purpose_timeout`` (from its opening, or from the
        end of its pre-call test) is told and closed: it held a descriptor and a writer task,
        and a finished pre-call test's socket could stay for as long as a stranger liked."""
        loop = asyncio.get_running_loop()
        timeout = self.ctx.purpose_timeout
        while not self._closing:
            since = self._idle_since
            if since is None:
                await asyncio.sleep(timeout)  # busy: it cannot become idle sooner than this
                continue
            left = since + timeout - loop.time()
            if left <= 0:
                self.error("bad_request", f"nothing asked for (join, precall, watch) within "
                                          f"{timeout:g} s")
                self.close_soon()
                return
            await asyncio.sleep(left)

    async def _on_auth(self, message: dict[str, Any]) -> None:
        """The token (first message, or a refresh before ``exp``): ``authenticated`` with its
        expiry. A refresh must name the same identity and scope; anything else is refused."""
        token = message.get("token")
        if not isinstance(token, str) or not token:
            self._refuse("'auth' needs a string 'token'")
            return
        try:
            claims = self.ctx.verify(token)
        except ApiError as exc:
            self._refuse(exc.message)
            return
        old = self.claims
        if old is not None and (claims.sub, claims.role, claims.clinic, claims.space, claims.room) \
                != (old.sub, old.role, old.clinic, old.space, old.room):
            self._refuse("a refreshed token must be for the same participant and scope")
            return
        self.claims = claims
        self.send({"type": "authenticated", "expires_at": iso_time(claims.exp)})

    async def _read_loop(self) -> None:
        limit = self.ctx.max_message_bytes
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
            message = parse_json(data)
        except ValueError:
            self.error("bad_request", "message is not valid JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.error("bad_request", "message must be a JSON object with a string 'type'")
            return
        kind = message["type"]
        if kind == "auth":
            await self._on_auth(message)
            return
        if self.claims is None:
            self._refuse("the first message must be 'auth' with a token")
            return
        handler = {
            "join": self._on_join, "answer": self._on_answer, "candidate": self._on_candidate,
            "leave": self._on_leave, "watch": self._on_watch, "ping": self._on_ping,
            "precall": self._on_precall, "precall_stats": self._on_precall_stats,
            "precall_upload": self._on_precall_upload,
        }.get(kind)
        if handler is None:
            self.error("bad_request", f"unknown message type {kind!r}")
            return
        try:
            await handler(message)
        except ApiError as exc:
            self.error(exc.code, exc.message)

    # -- commands -------------------------------------------------------------------------------
    def _media(self) -> Participant | PrecallTest | None:
        """What this session's offers and answers are about."""
        if self.precall is not None and not self.precall.closed:
            return self.precall
        return self.participant

    async def _on_join(self, message: dict[str, Any]) -> None:
        assert self.claims is not None
        if self.participant is not None:
            raise bad_request("already joined; send 'leave' first")
        if self.precall is not None and not self.precall.closed:
            raise bad_request("a pre-call test is running; join after its result")
        try:
            if self.ctx.route is not None:
                url = await self.ctx.route(self.claims, message.get("target", {}))
                if url is not None:  # the call lives on another node: the client goes there
                    self.send({"type": "redirect", "url": url})
                    self.close_soon()
                    return
            self.ctx.media_budget(self)
            self.participant = self.ctx.calls.join(self.claims, message.get("target", {}), self)
            self._busy()
        except ApiError as exc:
            self.error(exc.code, exc.message)
            if exc.code != "bad_request":
                self.close_soon()

    async def _on_precall(self, message: dict[str, Any]) -> None:
        if self._media() is not None:
            raise bad_request("a pre-call test runs before joining, one at a time")
        assert self.claims is not None
        self.ctx.media_budget(self)
        self.precall = self.ctx.calls.precall(self, message.get("seconds", 5), self.claims)
        # before its first offer (made in a task of its own): the TURN servers, so a client behind
        # a firewall that blocks the media ports tests the path its call will take
        self.send({"type": "precall_started", "ice_servers": self.ctx.ice_servers(self.precall.id)})
        self._busy()

    async def _on_precall_stats(self, message: dict[str, Any]) -> None:
        """The client's own view during a pre-call test: ``outgoing_kbps`` (its uplink estimate)."""
        if self.precall is None:
            raise bad_request("'precall_stats' belongs to a pre-call test")
        try:
            self.precall.report_outgoing(message.get("outgoing_kbps"))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        # (after the result it changes nothing: a report may cross the result on the wire)

    async def _on_precall_upload(self, message: dict[str, Any]) -> None:
        """Filler the client sends when asked (``precall_upload``): base64 of random bytes (which
        the socket's compression cannot shrink); the uplink probe counts the bytes it carries."""
        data = message.get("data")
        if self.precall is None:
            raise bad_request("'precall_upload' belongs to a pre-call test")
        if not isinstance(data, str):
            raise bad_request("'precall_upload' needs a string 'data'")
        self.precall.on_upload(len(data) * 3 // 4)

    async def _on_ping(self, message: dict[str, Any]) -> None:
        self.send({"type": "pong"})

    async def _on_answer(self, message: dict[str, Any]) -> None:
        sdp = message.get("sdp")
        if not isinstance(sdp, str) or not sdp.strip():
            raise bad_request("'answer' needs a string 'sdp'")
        media = self._media()
        if media is None:
            raise bad_request("no offer to answer: join first")
        try:
            await media.answer(sdp)
        except NegotiationError as exc:
            raise bad_request(f"answer does not fit the offer: {exc}") from exc

    async def _on_candidate(self, message: dict[str, Any]) -> None:
        media = self._media()
        if media is None:
            raise bad_request("join first")
        candidate = message.get("candidate")
        if candidate in (None, ""):
            return  # end of candidates
        if not isinstance(candidate, str):
            raise bad_request("'candidate' must be a string")
        mid = message.get("sdpMid")
        try:
            await media.add_candidate(candidate, mid if isinstance(mid, str) else None)
        except NegotiationError as exc:
            raise bad_request(str(exc)) from exc
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise bad_request(f"malformed candidate: {exc}") from exc

    async def _on_leave(self, message: dict[str, Any]) -> None:
        if self.participant is not None:
            await self.participant.close("left")
        self.close_soon()

    async def _on_watch(self, message: dict[str, Any]) -> None:
        assert self.claims is not None
        if message.get("waiting_area") is not True:
            self.ctx.feed.unwatch(self)
            if self.participant is None and not self.holds_media():
                self._idle()
            return
        requested = message.get("clinic")
        clinic = requested if isinstance(requested, str) else self.claims.clinic
        self.ctx.feed.watch(self, self.claims, clinic)
        self._busy()
        if not self._feed_expiry_running:
            self._feed_expiry_running = True
            self._spawn(self._feed_expiry())

    async def _feed_expiry(self) -> None:
        """The waiting-area feed shows patients' names: it ends when the token expires unless a
        fresh ``auth`` came (a call the same socket is in goes on)."""
        while not self._closing:
            assert self.claims is not None
            left = self.claims.exp + self.ctx.leeway - self.ctx.wall_clock()
            if left > 0:
                await asyncio.sleep(min(left, 3600.0))
                continue
            self.ctx.feed.unwatch(self)
            self.error("unauthorized", "the token has expired: send a fresh 'auth' and 'watch' "
                                       "again to go on receiving the waiting area")
            if not self.holds_media():
                self.close_soon()
            break
        self._feed_expiry_running = False

    # -- notifications (sfu.calls.events.Client) ------------------------------------------------
    def joined(self, me: Member, key: CallKey, others: list[Member]) -> None:
        self.send({"type": "joined", "participant": me.id, "target": key.target(),
                   "participants": [m.to_json() for m in others],
                   "ice_servers": self.ctx.ice_servers(me.id)})

    def offer(self, sdp: str, tracks: list[TrackInfo]) -> None:
        self.send({"type": "tracks", "tracks": [
            {"mid": t.mid, "participant": t.participant, "kind": t.kind} for t in tracks]})
        self.send({"type": "offer", "sdp": sdp})

    def member_joined(self, member: Member) -> None:
        self.send({"type": "participant_joined", "participant": member.to_json()})

    def member_left(self, member: Member) -> None:
        self.send({"type": "participant_left", "participant": member.to_json()})

    def quality(self, notice: QualityNotice) -> None:
        message: dict[str, Any] = {"type": "quality", "participant": notice.participant,
                                   "level": notice.level, "reason": notice.reason,
                                   **notice.estimates}
        if notice.admission:
            message["admission"] = True
        self.send(message)

    def publish_layers(self, layers: dict[str, bool]) -> None:
        self.send({"type": "publish_layers", "layers": layers})

    def video_layers(self, layers: dict[str, Any]) -> None:
        self.send({"type": "video_layers", "layers": layers})

    def failed(self, code: str, message: str) -> None:
        self.error(code, message)
        self.close_soon()

    def ended(self, reason: str) -> None:
        """The call is over for this client (or the server shuts down)."""
        self.send({"type": "ended", "reason": reason})
        self.close_soon()

    def precall_result(self, result: dict[str, Any]) -> None:
        self.send(result)
        if self.participant is None:
            self._idle()  # the test is over

    def precall_upload(self, kbps: float, seconds: float) -> None:
        self.send({"type": "precall_upload", "kbps": round(kbps), "seconds": seconds})

    def precall_uploaded(self, total: int) -> None:
        self.send({"type": "precall_uploaded", "bytes": total})
