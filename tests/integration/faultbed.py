"""A test bed for faults: a server of its own with a bystander call that must not notice them.

``fault_bed`` starts a server (short timeouts), puts two clinicians in a call in the room
``case-review`` (the bystanders), watches their audio both ways in every one-second window, and
takes a baseline of what the process holds (asyncio tasks, file descriptors, open endpoints,
signaling sessions). A test then does its fault somewhere else and ends with ``bed.settled()``:
everything it opened is gone again, the bystanders never missed a second, and nothing was
logged at ERROR or with a traceback.

Clients and server share the process (and the event loop), so the baseline counts both: a
test closes its own clients before ``settled``; what remains above the baseline is a leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection

from sfu.client.client import Client
from sfu.client.media import Clip
from sfu.transport.endpoint import Endpoint
from tests.integration.helpers import close_all, join_all, receives_everyone, wait_for
from tests.integration.test_bad_input import started_server

BYSTANDER_ROOM = "case-review"
FAST_MEDIA = {"connect_timeout": 3.0, "inactivity_timeout": 3.0}


class ErrorRecords(logging.Handler):
    """Every record at ERROR or above, or carrying a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def describe(self) -> list[str]:
        return [f"{r.name} {r.levelname}: {r.getMessage()}" for r in self.records]


class MediaWatch:
    """Packets of ``kind`` each receiver got from its source in every one-second window."""

    def __init__(self, pairs: list[tuple[Client, Client]], kind: str = "audio") -> None:
        self.pairs = pairs
        self.kind = kind
        self.windows: list[list[int]] = []
        self._task: asyncio.Task[None] | None = None

    def _counts(self) -> list[int]:
        out = []
        for receiver, source in self.pairs:
            track = receiver.received_from(source.participant or "", self.kind)
            out.append(0 if track is None else track.packets)
        return out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = self._counts()
        next_at = loop.time() + 1.0
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            # a window is a second of the loop's time: after a stall the next one starts now
            next_at = max(next_at + 1.0, loop.time() + 1.0) if loop.time() - next_at > 0.5 \
                else next_at + 1.0
            now = self._counts()
            # a counter that restarted (a recycled m-line) counts from zero
            self.windows.append([n - p if n >= p else n for n, p in zip(now, last, strict=True)])
            last = now

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_windows(self, n: int) -> None:
        """Return once ``n`` more windows have been measured."""
        target = len(self.windows) + n
        await wait_for(lambda: len(self.windows) >= target, timeout=n + 5.0)

    def silent_windows(self) -> list[tuple[int, list[int]]]:
        """(index, counts) of each window in which some receiver got nothing from its source."""
        return [(i, w) for i, w in enumerate(self.windows) if min(w) == 0]


def open_endpoints() -> list[Endpoint]:
    return [o for o in gc.get_objects() if isinstance(o, Endpoint) and not o.closed]


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if not t.done()}


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def media_port(offer_sdp: str) -> int:
    """The server's UDP port in an offer (its first host candidate)."""
    line = next(x for x in offer_sdp.splitlines() if x.startswith("a=candidate"))
    return int(line.split()[5])


@dataclass
class Bed:
    server: Any
    bystanders: list[Client]
    watch: MediaWatch
    errors: ErrorRecords
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    fds: int = 0
    endpoints: int = 0
    sessions: int = 0

    @property
    def url(self) -> str:
        return str(self.server.url)

    def take_baseline(self) -> None:
        gc.collect()
        self.tasks = live_tasks()
        self.fds = fd_count()
        self.endpoints = len(open_endpoints())
        self.sessions = len(self.server.sessions)

    def leftovers(self) -> dict[str, Any]:
        """What the process holds beyond the baseline (empty when nothing leaked)."""
        server = self.server
        out: dict[str, Any] = {}
        calls = {f"{k.kind}:{k.id}": sorted(c.participants) + sorted(c.probing)
                 for k, c in server.calls.by_key.items()}
        mine = sorted(c.participant or "" for c in self.bystanders)
        if calls != {f"room:{BYSTANDER_ROOM}": mine}:
            out["calls"] = calls
        if server.calls.precalls:
            out["precalls"] = len(server.calls.precalls)
        if len(server.sessions) != self.sessions:
            out["sessions"] = len(server.sessions) - self.sessions
        extra = [t for t in live_tasks() - self.tasks if t is not asyncio.current_task()]
        if extra:
            out["tasks"] = sorted(f"{t.get_name()} {t.get_coro()}" for t in extra)
        if fd_count() > self.fds:
            out["fds"] = fd_count() - self.fds
        if not out and len(open_endpoints()) != self.endpoints:  # (the costly one last)
            out["endpoints"] = len(open_endpoints()) - self.endpoints
        return out

    async def settled(self, timeout: float = 10.0) -> None:
        """Everything the test opened is gone (waiting up to ``timeout``), the bystanders had
        audio both ways in every second, and nothing was logged at ERROR or with a traceback."""
        await self.watch.wait_windows(2)  # the bystanders are watched past the end too
        try:
            await wait_for(lambda: not self.leftovers(), timeout)
        except AssertionError:
            raise AssertionError(f"leaked: {self.leftovers()}") from None
        self.assert_bystanders_unaffected()
        self.assert_no_errors()

    def assert_bystanders_unaffected(self) -> None:
        assert len(self.watch.windows) >= 3, self.watch.windows
        assert not self.watch.silent_windows(), self.watch.silent_windows()
        for c in self.bystanders:
            assert not [m for m in c.messages if m["type"] in ("error", "ended", "participant_left")]

    def assert_no_errors(self) -> None:
        assert not self.errors.records, self.errors.describe()


@contextlib.asynccontextmanager
async def fault_bed(token: Callable[..., str], clip: Clip, *, media: dict[str, float] | None = None,
                    **config: Any) -> AsyncIterator[Bed]:
    errors = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(errors)
    server = await started_server(media={**FAST_MEDIA, **(media or {})}, **config)
    bystanders: list[Client] = []
    watch = MediaWatch([])
    try:
        async with aiohttp.ClientSession() as http, http.put(
                f"{server.url}/v1/clinics/demo/rooms/{BYSTANDER_ROOM}", json={"name": "Bystanders"},
                headers={"Authorization": f"Bearer {token(role='admin', sub='root')}"}) as r:
            assert r.status in (200, 201), await r.text()
        bystanders = await join_all(server.url, [token(sub="bystander-a"), token(sub="bystander-b")],
                                    clip, {"room": BYSTANDER_ROOM})
        await wait_for(receives_everyone(bystanders), timeout=15)
        a, b = bystanders
        watch.pairs = [(a, b), (b, a)]
        watch.start()
        bed = Bed(server, bystanders, watch, errors)
        await wait_for(lambda: len(watch.windows) >= 1, timeout=3)
        bed.take_baseline()
        yield bed
    finally:
        await watch.stop()
        await close_all(bystanders)
        await server.close()
        root.removeHandler(errors)


# -- clients that misbehave ------------------------------------------------------------------------

class FaultyClient(Client):
    """The real client, with faults switched on by attribute:

    ``block_dtls``: its ICE works but not one DTLS record leaves it (no ClientHello);
    ``hold_offers``: offers received from now on are not answered."""

    block_dtls = False
    hold_offers = False

    async def _on_offer(self, sdp: str) -> None:
        if self.hold_offers:
            self.offers += 1
            return
        if self._pc is None and self.block_dtls:
            self._pc = _without_dtls(RTCPeerConnection(RTCConfiguration(
                iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)))
        await super()._on_offer(sdp)

    def ice_state(self) -> str:
        return "new" if self._pc is None else str(self._pc.iceConnectionState)

    def silence_media(self) -> None:
        """The network is gone: nothing is sent any more and its UDP sockets are closed
        (no DTLS close, no RTCP BYE)."""
        for task in (self._rtcp_task, self._twcc_task, *self._sender_tasks):
            if task is not None:
                task.cancel()
        if self._pc is not None:
            connection = self._pc.getTransceivers()[0].receiver.transport.transport._connection
            for protocol in connection._protocols:
                protocol.transport.close()

    def drop_socket(self) -> None:
        """The signaling socket's TCP connection is cut without a WebSocket close."""
        assert self._ws is not None
        connection = self._ws._conn
        assert connection is not None and connection.transport is not None
        connection.transport.abort()


def _without_dtls(pc: RTCPeerConnection) -> RTCPeerConnection:
    """A peer connection whose ICE transports send nothing but STUN: its DTLS handshake never
    reaches the wire (aiortc's DTLS transport writes through ``RTCIceTransport._send``)."""
    original = pc.setLocalDescription

    async def nothing(data: bytes) -> None:
        return None

    async def set_local(description: Any) -> None:
        for transceiver in pc.getTransceivers():
            transceiver.receiver.transport.transport._send = nothing
        await original(description)

    pc.setLocalDescription = set_local  # type: ignore[method-assign]
    return pc
