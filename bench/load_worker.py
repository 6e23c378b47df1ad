"""One worker of ``bench.load``: an event loop that plays a :class:`~bench.load_plan.WorkerPlan`.

Each synthetic participant is the project's :class:`~sfu.client.client.Client`: it publishes the
pre-encoded clip and counts what it receives without decoding. The worker measures join latency
(see ``docs/load-testing.md``), samples how many packets each participant has sent (once a second),
and at the end hands back one :class:`Record` per participant session.

Runs either in a process of its own (:func:`worker_main`, started by ``multiprocessing`` with
``spawn``) or, with ``--workers 0``, on the orchestrator's loop (:meth:`Worker.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import socket
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.load_plan import Lane, Session, WorkerPlan
from sfu.auth import mint_token
from sfu.client.client import Client, ClientError, TrackStats
from sfu.client.media import Clip, ClipParams, Renditions, load_clip, load_layers, load_renditions
from sfu.client.sender import SendScheduler

Emit = Callable[[tuple[Any, ...]], None]
SAMPLE_INTERVAL = 1.0


@dataclass(frozen=True)
class WorkerSpec:
    url: str
    secret: str
    clinic: str
    clip_params: ClipParams
    clip_dir: str | None = None
    join_timeout: float = 10.0  # join sent -> `joined`
    media_timeout: float = 10.0  # join sent -> media from everybody
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    entry_sources: tuple[str, ...] = ()  # local addresses to spread waiting-area entries over
    token_ttl: float = 6 * 3600
    renditions_kbps: tuple[int, ...] = ()  # publish these renditions, following REMB; () one clip
    start_kbps: int = 600  # the rendition a publisher starts with (the highest at most this)
    remb: bool = True  # participants send REMB like Chromium
    # publish simulcast (media.load_layers: 180p, 360p, 720p) when the server offers it; the
    # delivered ratio then counts audio only (a receiver gets one of the layers, not all)
    simulcast: bool = False


@dataclass
class Record:
    """What one participant session did. Times are ``time.monotonic()`` seconds."""

    key: str
    role: str
    call: str = ""  # "room:<id>" or "space:<id>"
    participant: str | None = None  # the server's id for it
    join_sent: float | None = None
    joined_at: float | None = None
    ready_at: float | None = None  # media from everyone present at join (or `joined` if alone)
    left_at: float | None = None
    failure: str | None = None  # join refused or failed, or media never came (code)
    dropped: str | None = None  # lost after joining: an `error`, an unexpected `ended`, ...
    waited: float | None = None  # patients: joined -> a staff member joined them
    late_skips: int = 0  # clip frames the publisher skipped because its loop was late
    simulcast_layers: int = 0  # video layers it published as simulcast (0: one stream)
    node: str | None = None  # the node its call is on (in a cluster, after any redirect)
    redirects: int = 0  # redirects its join followed
    # (time, packets sent so far, {publisher: (packets, video packets) received}); every active
    # participant of a worker is sampled at the same instants (each second, each join and leave)
    samples: list[tuple[float, int, dict[str, tuple[int, int]]]] = field(default_factory=list)
    # (publisher, kind, packets, bytes, first_packet_at, last_packet_at) per received stream
    streams: list[tuple[str, str, int, int, float | None, float | None]] = field(
        default_factory=list)

    @property
    def latency(self) -> float | None:
        if self.ready_at is None or self.join_sent is None:
            return None
        return self.ready_at - self.join_sent


class MessageLog(list[dict[str, Any]]):
    """The client's message list, which also notices when the server reuses an m-line.

    ``Client`` keeps one ``TrackStats`` per mid and, when a ``tracks`` message gives a mid to
    another participant, only relabels it. Appending is the first thing the client does with a
    message, so here a publisher's counters are put aside when it leaves (``participant_left``:
    what comes later on its m-lines is the next publisher's) or, failing that, when its m-line is
    given to someone else, and the mid counts from zero again.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tracks: dict[str, TrackStats] = {}
        self.retired: list[tuple[str, str, int, int, float | None, float | None]] = []
        self._orphans: set[str] = set()  # mids whose publisher left, counting afresh

    def _retire(self, mid: str, stats: TrackStats) -> None:
        if stats.packets:
            self.retired.append(stream_row(stats))
        stats.packets = stats.bytes = stats.frames = stats.keyframes = 0
        stats.first_packet_at = stats.last_packet_at = None

    def append(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "participant_left":
            gone = (message.get("participant") or {}).get("id")
            for mid, stats in self.tracks.items():
                if gone and stats.participant == gone and mid not in self._orphans:
                    self._retire(mid, stats)
                    self._orphans.add(mid)
        elif kind == "tracks":
            for t in message.get("tracks", []):
                mid = t.get("mid")
                stats = self.tracks.get(mid)
                if stats is None or stats.participant == t.get("participant"):
                    continue
                if mid in self._orphans:
                    self._orphans.discard(mid)  # its counts since are the new publisher's
                elif stats.participant:
                    self._retire(mid, stats)
        super().append(message)


def stream_row(t: TrackStats) -> tuple[str, str, int, int, float | None, float | None]:
    return (t.participant, t.kind, t.packets, t.bytes, t.first_packet_at, t.last_packet_at)


def received_rows(client: Client) -> list[tuple[str, str, int, int, float | None, float | None]]:
    log = client.messages
    rows = list(log.retired) if isinstance(log, MessageLog) else []
    rows += [stream_row(t) for t in client.tracks.values() if t.participant and t.packets]
    return rows


def received_by_publisher(client: Client, *, audio_only: bool = False
                          ) -> dict[str, tuple[int, int]]:
    """Packets received so far per publisher: (all, video only); with ``audio_only``, (audio,
    video only)."""
    received: dict[str, tuple[int, int]] = {}
    for publisher, kind, packets, *_ in received_rows(client):
        total, video = received.get(publisher, (0, 0))
        counted = packets if kind == "audio" or not audio_only else 0
        received[publisher] = (total + counted, video + (packets if kind == "video" else 0))
    return received


def sent_packets(client: Client, *, audio_only: bool = False) -> int:
    """Packets the client has published so far (every stream, or its audio only)."""
    if audio_only:
        return sum(s.packets for s in client.senders if s.kind == "audio")
    return client.packets_sent()


def media_arrival(client: Client, participant: str) -> float | None:
    """When media from ``participant`` counts as arrived: its first video keyframe, or its first
    audio packet when the server forwards no video of it to this client."""
    video = audio = None
    for t in client.tracks.values():
        if t.participant == participant:
            if t.kind == "video":
                video = t
            elif t.kind == "audio":
                audio = t
    if video is not None:
        return video.first_keyframe_at
    if audio is not None:
        return audio.first_packet_at
    return None


class Worker:
    def __init__(self, index: int, spec: WorkerSpec, plan: WorkerPlan, emit: Emit,
                 clip: Clip | None = None) -> None:
        self.index = index
        self.spec = spec
        self.plan = plan
        self.emit = emit
        self.clip = clip
        self.renditions: Renditions | None = None
        self.layers: Renditions | None = None  # simulcast layers, with spec.simulcast
        self.records: list[Record] = []
        self.active: dict[str, tuple[Record, Client]] = {}
        self.stop = asyncio.Event()
        self.t0 = 0.0
        self._entries = 0
        self._media: dict[str, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None
        self.scheduler = SendScheduler(0.02)  # one pacing timer (20 ms) for every track here

    def load(self) -> None:
        directory = Path(self.spec.clip_dir) if self.spec.clip_dir else None
        if self.clip is None:
            self.clip = load_clip(directory, self.spec.clip_params)
        if self.renditions is None and self.spec.renditions_kbps:
            self.renditions = load_renditions(directory, self.spec.clip_params,
                                              self.spec.renditions_kbps)
        if self.layers is None and self.spec.simulcast:
            self.layers = load_layers(directory, self.spec.clip_params)

    # -- the run --------------------------------------------------------------------------------
    async def run(self, t0: float) -> list[Record]:
        self.load()
        self.t0 = t0
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        sampler = asyncio.ensure_future(self._sample())
        snapshots = asyncio.ensure_future(self._snapshots())
        self.scheduler.start()
        try:
            jobs = [self._session(s) for s in self.plan.sessions]
            jobs += [self._lane(lane) for lane in self.plan.lanes]
            await asyncio.gather(*jobs)
        finally:
            await self.scheduler.close()
            for task in (sampler, snapshots):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._http.close()
        return self.records

    async def _until(self, at: float | None) -> bool:
        """Sleep until ``t0 + at`` (forever if None); False if told to stop first."""
        if self.stop.is_set():
            return False
        delay = None if at is None else self.t0 + at - time.monotonic()
        if delay is not None and delay <= 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), delay)
            return False
        return True

    def _token(self, sub: str, role: str) -> str:
        return mint_token(self.spec.secret, sub=sub, role=role, clinic=self.spec.clinic,
                          name=sub, ttl=self.spec.token_ttl)

    def _client(self, token: str) -> Client:
        log = MessageLog()
        client = Client(self.spec.url, token, clip=self.clip, messages=log,
                        ice_addresses=self.spec.ice_addresses, count_only=True,
                        scheduler=self.scheduler, renditions=self.renditions,
                        start_kbps=self.spec.start_kbps, send_remb=self.spec.remb,
                        simulcast=self.layers)
        log.tracks = client.tracks
        return client

    def _fail(self, rec: Record, code: str, stage: str = "join") -> None:
        rec.failure = rec.failure or code
        self.emit(("failed", self.index, time.monotonic(), code, stage))

    # -- one participant: join, stay, leave -------------------------------------------------------
    async def _join(self, rec: Record, client: Client, target: dict[str, str]) -> bool:
        rec.call = "".join(f"{k}:{v}" for k, v in target.items())
        try:
            await asyncio.wait_for(client.connect(), self.spec.join_timeout)
            msg = await client.join(target, timeout=self.spec.join_timeout)
        except ClientError as exc:
            self._fail(rec, exc.code)
        except TimeoutError:
            self._fail(rec, "join_timeout")
        except aiohttp.WSServerHandshakeError as exc:
            self._fail(rec, f"http_{exc.status}")
        except (aiohttp.ClientError, OSError):
            self._fail(rec, "connect_error")
        else:
            rec.join_sent, rec.joined_at = client.joined_at, time.monotonic()
            rec.participant = msg["participant"]
            rec.node, rec.redirects = client.node_url, client.redirects
            self._sample_all()
            self.active[rec.key] = (rec, client)
            self.emit(("joined", self.index, rec.joined_at))
            others = {p["id"] for p in msg.get("participants", [])}
            self._media[rec.key] = asyncio.ensure_future(self._await_media(rec, client, others))
            return True
        await self._close(client)
        return False

    async def _await_media(self, rec: Record, client: Client, others: set[str]) -> None:
        """Set ``rec.ready_at`` once media from everybody in ``others`` arrived (the session owns
        this task: :meth:`_finish` cancels it)."""
        assert rec.join_sent is not None and rec.joined_at is not None

        def ready() -> float | None:
            gone = {m["participant"]["id"] for m in client.messages
                    if m.get("type") == "participant_left"}
            times = [media_arrival(client, p) for p in others - gone]
            if any(t is None for t in times):
                return None
            return max([rec.joined_at, *[t for t in times if t is not None]])

        deadline = rec.join_sent + self.spec.media_timeout
        while (at := ready()) is None:
            if time.monotonic() >= deadline or rec.left_at is not None:
                if rec.left_at is None:
                    self._fail(rec, "media_timeout", "media")
                return
            with contextlib.suppress(TimeoutError):
                await client.wait_until(lambda: ready() is not None,
                                        timeout=max(0.01, deadline - time.monotonic()))
        rec.ready_at = at
        self.emit(("latency", self.index, rec.join_sent, at - rec.join_sent))

    async def _stay(self, rec: Record, client: Client, leave_at: float | None,
                    *, expect_end: bool = False) -> None:
        """Stay until ``t0 + leave_at`` (or stop); note it if the call ends or fails first."""
        def trouble(m: dict[str, Any]) -> bool:
            return m.get("type") in ("error", "ended")

        watch = asyncio.ensure_future(client.wait_message(trouble, timeout=1e9))
        timer = asyncio.ensure_future(self._until(leave_at))
        try:
            await asyncio.wait([watch, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            watch.cancel()
            await asyncio.gather(timer, watch, return_exceptions=True)
        if watch.cancelled():
            return
        exc = watch.exception()
        if exc is not None:
            rec.dropped = getattr(exc, "code", "closed")
        else:
            message = watch.result()
            if message["type"] == "ended" and expect_end:
                return
            rec.dropped = (message.get("code") if message["type"] == "error"
                           else f"ended_{message.get('reason')}")
        if rec.dropped:
            self.emit(("failed", self.index, time.monotonic(), rec.dropped, "call"))

    async def _finish(self, rec: Record, client: Client) -> None:
        """Leave, then record the final counters (what was sent while leaving counts too)."""
        self.active.pop(rec.key, None)
        media = self._media.pop(rec.key, None)
        if media is not None and not media.done():
            self._fail(rec, "left_before_media", "media")
            media.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await media
        self._sample_all()
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError, OSError):
            await asyncio.wait_for(client.leave(), 5.0)
        await self._close(client)
        now = time.monotonic()
        rec.left_at = rec.left_at or now
        rec.samples.append(self._counters(now, client))
        rec.streams = received_rows(client)
        rec.late_skips = sum(t.late_skips for t in (client.video_track, client.audio_track)
                             if t is not None)
        rec.simulcast_layers = len(client.simulcast_rids)
        self.emit(("left", self.index, now))

    async def _close(self, client: Client) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError, OSError):
            await asyncio.wait_for(client.close(), 5.0)

    # -- scenarios --------------------------------------------------------------------------------
    async def _session(self, s: Session) -> None:
        if not await self._until(s.start):
            return
        rec = Record(s.key, "staff")
        self.records.append(rec)
        client = self._client(self._token(s.key, "staff"))
        if await self._join(rec, client, {"room": s.room}):
            await self._stay(rec, client, s.leave)
            await self._finish(rec, client)

    async def _lane(self, lane: Lane) -> None:
        """Patients enter on their own schedule; the staff member sees them in order."""
        joined: list[asyncio.Future[tuple[str, Record] | None]] = []
        ended: list[asyncio.Event] = []
        tasks = []
        for key, entry in lane.patients:
            joined.append(asyncio.get_running_loop().create_future())
            ended.append(asyncio.Event())
            tasks.append(asyncio.ensure_future(
                self._patient(key, entry, joined[-1], ended[-1])))
        token = self._token(lane.staff, "staff")
        try:
            for n, future in enumerate(joined):
                got = await future
                if got is None or self.stop.is_set():
                    continue
                space, patient = got
                rec = Record(f"{lane.staff}-{n}", "staff")
                self.records.append(rec)
                client = self._client(token)
                if await self._join(rec, client, {"space": space}):
                    assert rec.joined_at is not None and patient.joined_at is not None
                    patient.waited = rec.joined_at - patient.joined_at
                    await self._stay(rec, client, rec.joined_at - self.t0 + lane.consult)
                    rec.left_at = time.monotonic()
                    await self._end_space(space, token, rec)
                    await self._finish(rec, client)
                ended[n].set()
        finally:
            for event in ended:
                event.set()
            await asyncio.gather(*tasks)

    async def _patient(self, key: str, entry: float,
                       joined: asyncio.Future[tuple[str, Record] | None],
                       ended: asyncio.Event) -> None:
        try:
            if not await self._until(entry):
                return
            rec = Record(key, "patient")
            self.records.append(rec)
            space, token = await self._enter(rec)
            if space is None or token is None:
                return
            client = self._client(token)
            if not await self._join(rec, client, {"space": space}):
                return
            joined.set_result((space, rec))
            stay = asyncio.ensure_future(self._stay(rec, client, None, expect_end=True))
            done = asyncio.ensure_future(ended.wait())
            await asyncio.wait([stay, done], return_when=asyncio.FIRST_COMPLETED)
            if not stay.done():  # staff ended it (or gave up): give the `ended` a moment
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stay), 2.0)
            for task in (stay, done):
                task.cancel()
            await asyncio.gather(stay, done, return_exceptions=True)
            await self._finish(rec, client)
        finally:
            if not joined.done():
                joined.set_result(None)

    async def _enter(self, rec: Record) -> tuple[str | None, str | None]:
        """POST the waiting area: a new space and a patient token for it."""
        url = f"{self.spec.url}/v1/clinics/{self.spec.clinic}/waiting-area"
        session = self._http
        own: aiohttp.ClientSession | None = None
        if self.spec.entry_sources:  # a different loopback address per entry (rate limit)
            source = self.spec.entry_sources[self._entries % len(self.spec.entry_sources)]
            self._entries += 1
            own = session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=(source, 0), family=socket.AF_INET),
                timeout=aiohttp.ClientTimeout(total=15))
        assert session is not None
        try:
            async with session.post(url, json={"name": f"Patient {rec.key}"}) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 201:
                    self._fail(rec, _error_code(body, resp.status))
                    return None, None
                rec.call = f"space:{body['space']}"
                return body["space"], body["token"]
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError, TypeError):
            self._fail(rec, "entry_error")
            return None, None
        finally:
            if own is not None:
                await own.close()

    async def _end_space(self, space: str, token: str, rec: Record) -> None:
        assert self._http is not None
        url = f"{self.spec.url}/v1/clinics/{self.spec.clinic}/waiting-area/{space}/end"
        try:
            async with self._http.post(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status != 204:
                    body = await resp.json(content_type=None)
                    self.emit(("failed", self.index, time.monotonic(),
                               "end_" + _error_code(body, resp.status), "end"))
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            self.emit(("failed", self.index, time.monotonic(), "end_error", "end"))

    # -- counters ----------------------------------------------------------------------------------
    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            self._sample_all()

    def _sample_all(self) -> None:
        """Every active publisher's packet count now (also at each join and leave, so that the
        windows of the delivered ratio start and end on a sample)."""
        now = time.monotonic()
        for rec, client in self.active.values():
            rec.samples.append(self._counters(now, client))

    def _counters(self, now: float, client: Client) -> tuple[float, int, dict[str, tuple[int, int]]]:
        """(now, packets sent, received per publisher): audio only when publishing simulcast,
        where a subscriber gets one of a publisher's video layers."""
        audio_only = self.spec.simulcast
        return (now, sent_packets(client, audio_only=audio_only),
                received_by_publisher(client, audio_only=audio_only))

    async def _snapshots(self) -> None:
        """Ramp: at each planned time, every active participant's counters, in one go."""
        for at in self.plan.snapshots:
            if not await self._until(at):
                return
            rows = [(rec.participant, rec.call, *self._counters(at, client)[1:])
                    for rec, client in self.active.values()]
            self.emit(("snapshot", self.index, at, rows))


def quiet_warnings() -> None:
    """PyJWT warns about every token signed with a short secret; once is enough (bench.load)."""
    warnings.filterwarnings("ignore", message="The HMAC key is")


def _error_code(body: Any, status: int) -> str:
    try:
        return str(body["error"]["code"])
    except (KeyError, TypeError):
        return f"http_{status}"


# -- process entry ------------------------------------------------------------------------------
def worker_main(index: int, spec: WorkerSpec, plan: WorkerPlan, events: Any,
                commands: Any) -> None:
    """Body of a worker process: load the clip, say ``up``, wait for ``go``, play, say ``done``."""
    logging.basicConfig(level=logging.WARNING)
    quiet_warnings()
    for name in ("aiortc", "aioice", "sfu"):
        logging.getLogger(name).setLevel(logging.ERROR)
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    try:
        runner(_process_main(index, spec, plan, events, commands))
    except BaseException:  # noqa: BLE001 - reported to the orchestrator, then the process ends
        events.put(("crash", index, traceback.format_exc()))


async def _process_main(index: int, spec: WorkerSpec, plan: WorkerPlan, events: Any,
                        commands: Any) -> None:
    worker = Worker(index, spec, plan, events.put)
    worker.load()
    events.put(("up", index, os.getpid()))
    t0 = None
    while t0 is None:
        command = await _next_command(commands)
        if command[0] == "go":
            t0 = command[1]
        elif command[0] == "stop":
            events.put(("done", index, []))
            return

    async def listen() -> None:
        while True:
            command = await _next_command(commands)
            if command[0] == "stop":
                worker.stop.set()
                return

    listener = asyncio.ensure_future(listen())
    try:
        records = await worker.run(t0)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    events.put(("done", index, [dataclasses.asdict(r) for r in records]))


async def _next_command(commands: Any) -> tuple[Any, ...]:
    while True:
        try:
            return tuple(commands.get_nowait())
        except queue.Empty:
            await asyncio.sleep(0.25)
