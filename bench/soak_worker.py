"""The client side of ``bench.soak``: consultations that churn until they are told to stop.

A worker process plays some of the soak's slots. Each slot is one consultation that goes on for
the whole run:

- a waiting-area slot: a patient enters through the HTTP API and joins the space, a clinician
  joins, the clinician ends the space, and the next patient enters;
- a meeting-room slot: three staff members in a room, each staying a while, then leaving,
  reloading (the socket dropped without ``leave``, back at once) or vanishing, and coming back.

What happens in a consultation follows a fixed rotation (``SPACE_VARIANTS``, ``ROOM_ACTIONS``), so
a short run sees every kind; stays are random (seeded). A vanished client (``Client.go_silent``:
no media, no RTCP, no consent answers, no pong, no close) is held until the server closes its
signaling socket; how long that took is recorded, and one the server has not dropped within
``hold`` seconds is counted as ``not_dropped`` (a failure of the soak). Whoever waits for a
vanished participant waits for that, so the server's own timers are what end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.load_worker import quiet_warnings
from sfu.auth import STAFF, mint_token
from sfu.client.client import Client, ClientError
from sfu.client.media import Clip, ClipParams, load_clip
from sfu.client.sender import SendScheduler

# one consultation after another in each waiting-area slot, in this order (from the slot's index)
SPACE_VARIANTS = (
    "plain",                         # pre-call test, patient, clinician, ended by the clinician
    "patient_reconnects",            # the patient's page reloads mid-call: back with its token
    "patient_vanishes",              # the patient's network goes; the server must notice
    "interpreter",                   # a second staff member joins for a while (three in the call)
    "patient_vanishes_and_returns",  # the network changes: back before the server noticed
    "clinician_vanishes",            # the clinician's network goes; the space is ended over HTTP
    "patient_leaves_early",          # leaves before anyone came: the space waits out its grace
)
ROOM_ACTIONS = ("leave", "reload", "vanish")  # what a meeting-room member does after its stay
PRECALL_VARIANTS = ("plain", "interpreter")


@dataclass(frozen=True)
class SoakSpec:
    url: str
    secret: str
    clinic: str
    clip_params: ClipParams
    clip_dir: str | None = None
    stay: tuple[float, float] = (20.0, 60.0)  # seconds a consultation / a room member lasts
    seed: int = 1
    hold: float = 120.0  # a vanished client not dropped by the server by then: not_dropped
    join_timeout: float = 15.0
    token_ttl: float = 6 * 3600


@dataclass(frozen=True)
class Slot:
    index: int
    room: str | None = None  # a meeting room of three; None: waiting-area consultations


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    detect: list[float] = field(default_factory=list)  # vanish -> server closed its socket (s)

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "detect": self.detect}


class SoakWorker:
    def __init__(self, index: int, spec: SoakSpec, slots: list[Slot], clip: Clip) -> None:
        self.index = index
        self.spec = spec
        self.slots = slots
        self.clip = clip
        self.rng = random.Random(spec.seed * 1009 + index)
        self.stop = asyncio.Event()
        self.release = asyncio.Event()  # after the stop: let go of the vanished still held
        self.tally = Tally()
        self.scheduler = SendScheduler(0.02)
        self._silent: list[tuple[Client, float, asyncio.Event]] = []  # vanished, held
        self._closing: set[asyncio.Task[None]] = set()  # local closes the reaper started
        self._http: aiohttp.ClientSession | None = None

    async def run(self, stopped: Any = None) -> Tally:
        """Play every slot until ``stop``; then (``stopped()`` called) hold the vanished ones
        until ``release``."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        self.scheduler.start()
        reaper = asyncio.ensure_future(self._reap())
        try:
            await asyncio.gather(*(self._play(slot) for slot in self.slots))
            if stopped is not None:
                stopped()
            await self.release.wait()
            self._reap_once(final=True)
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            for client, _, _ in self._silent:
                await self._close(client)
            self._silent.clear()
            await asyncio.gather(*list(self._closing), return_exceptions=True)
            await self.scheduler.close()
            await self._http.close()
        return self.tally

    async def _play(self, slot: Slot) -> None:
        if slot.room is not None:
            await asyncio.gather(*(self._member(slot, j) for j in range(3)))
        else:
            await self._consultations(slot)

    # -- helpers ------------------------------------------------------------------------------
    def count(self, what: str, n: int = 1) -> None:
        self.tally.counts[what] += n

    def _stay(self) -> float:
        return self.rng.uniform(*self.spec.stay)

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False if the stop came first."""
        if self.stop.is_set():
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
            return False
        return True

    def _token(self, sub: str) -> str:
        return mint_token(self.spec.secret, sub=sub, role=STAFF, clinic=self.spec.clinic,
                          name=sub, ttl=self.spec.token_ttl)

    def _client(self, token: str) -> Client:
        return Client(self.spec.url, token, clip=self.clip, count_only=True,
                      scheduler=self.scheduler)

    async def _join(self, token: str, target: dict[str, str]) -> Client | None:
        client = self._client(token)
        try:
            await asyncio.wait_for(client.connect(), self.spec.join_timeout)
            await client.join(target, timeout=self.spec.join_timeout)
        except ClientError as exc:
            self.count(f"join_failed:{exc.code}")
        except TimeoutError:
            self.count("join_failed:join_timeout")
        except aiohttp.WSServerHandshakeError as exc:
            self.count(f"join_failed:http_{exc.status}")
        except (aiohttp.ClientError, OSError):
            self.count("join_failed:connect_error")
        else:
            self.count("joins")
            return client
        await self._close(client)
        return None

    async def _precall(self, token: str) -> None:
        """A pre-call test on a socket of its own, as a patient's page runs before joining."""
        client = self._client(token)
        try:
            await asyncio.wait_for(client.connect(), self.spec.join_timeout)
            await client.precall(seconds=2.0, timeout=20.0)
            self.count("precalls")
        except ClientError as exc:
            self.count(f"precall_failed:{exc.code}")
        except (TimeoutError, aiohttp.ClientError, OSError):
            self.count("precall_failed:timeout_or_connect")
        finally:
            await self._close(client)

    async def _leave(self, client: Client) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError, OSError,
                                 aiohttp.ClientError):
            await asyncio.wait_for(client.leave(), 5.0)
        self.count("leaves")
        await self._close(client)

    async def _close(self, client: Client) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError, OSError,
                                 aiohttp.ClientError):
            await asyncio.wait_for(client.close(), 5.0)
        for m in client.messages:  # what the call said on the way (not counted per vanish)
            if m.get("type") == "error":
                self.count(f"error:{m.get('code')}")
            elif m.get("type") == "ended":
                self.count(f"ended:{m.get('reason')}")

    async def _reload(self, client: Client) -> None:
        """The socket and the media dropped without ``leave`` (a page reload)."""
        await client.vanish()
        self.count("reloads")
        await self._close(client)

    async def _vanish(self, client: Client) -> asyncio.Event:
        """Go silent; the reaper sets the event once the server has dropped the client."""
        await client.go_silent()
        self.count("vanishes")
        dropped = asyncio.Event()
        self._silent.append((client, time.monotonic(), dropped))
        return dropped

    async def _until_dropped(self, dropped: asyncio.Event) -> bool:
        """Wait until the server dropped a vanished client; False if the stop came first."""
        stop = asyncio.ensure_future(self.stop.wait())
        done = asyncio.ensure_future(dropped.wait())
        try:
            await asyncio.wait([stop, done], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stop, done):
                task.cancel()
            await asyncio.gather(stop, done, return_exceptions=True)
        return dropped.is_set()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self._reap_once()

    def _reap_once(self, final: bool = False) -> None:
        now = time.monotonic()
        for entry in list(self._silent):
            client, since, dropped = entry
            if client.signaling_lost:
                self.tally.detect.append(now - since)
                self.count("dropped_by_server")
            elif final or now - since > self.spec.hold:
                self.count("not_dropped")
            else:
                continue
            self._silent.remove(entry)
            dropped.set()
            self._spawn_close(client)

    def _spawn_close(self, client: Client) -> None:
        task = asyncio.ensure_future(self._close(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- HTTP -----------------------------------------------------------------------------------
    async def _enter(self, slot: Slot) -> tuple[str, str] | None:
        assert self._http is not None
        url = f"{self.spec.url}/v1/clinics/{self.spec.clinic}/waiting-area"
        try:
            async with self._http.post(url, json={"name": f"Soak {slot.index}"}) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 201:
                    self.count(f"entry_failed:http_{resp.status}")
                    return None
                self.count("spaces_entered")
                return str(body["space"]), str(body["token"])
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError, TypeError):
            self.count("entry_failed:error")
            return None

    async def _end(self, space: str, token: str) -> None:
        assert self._http is not None
        url = f"{self.spec.url}/v1/clinics/{self.spec.clinic}/waiting-area/{space}/end"
        try:
            async with self._http.post(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                self.count("spaces_ended" if resp.status == 204 else f"end_failed:http_{resp.status}")
        except (aiohttp.ClientError, OSError, TimeoutError):
            self.count("end_failed:error")

    # -- waiting-area slots -----------------------------------------------------------------------
    async def _consultations(self, slot: Slot) -> None:
        n = slot.index
        await self._pause(self.rng.uniform(0.0, 2.0))
        while not self.stop.is_set():
            variant = SPACE_VARIANTS[n % len(SPACE_VARIANTS)]
            n += 1
            try:
                await self._consultation(slot, variant)
            except Exception:  # noqa: BLE001 - one consultation's bug must not end the soak
                self.count("worker_error")
                logging.getLogger(__name__).exception("consultation %s failed", variant)
            await self._pause(self.rng.uniform(0.5, 2.0))

    async def _consultation(self, slot: Slot, variant: str) -> None:
        live: list[Client] = []
        staff = self._token(f"soak-dr-{slot.index}")
        space: str | None = None
        end = variant != "patient_leaves_early"
        try:
            entered = await self._enter(slot)
            if entered is None:
                return
            space, patient_token = entered
            target = {"space": space}
            if variant in PRECALL_VARIANTS:
                await self._precall(patient_token)
            patient = await self._join(patient_token, target)
            if patient is None:
                return
            live.append(patient)
            if variant == "patient_leaves_early":
                if await self._pause(self.rng.uniform(2.0, 5.0)):
                    live.remove(patient)
                    await self._leave(patient)
                return
            if not await self._pause(self.rng.uniform(1.0, 4.0)):
                return
            clinician = await self._join(staff, target)
            if clinician is None:
                return
            live.append(clinician)
            stay = self._stay()
            if not await self._pause(stay / 2):
                return
            if variant in ("patient_reconnects", "patient_vanishes_and_returns"):
                live.remove(patient)
                if variant == "patient_reconnects":  # a reload: back 1-3 s later
                    await self._reload(patient)
                    away = self.rng.uniform(1.0, 3.0)
                else:  # a network change: back 2-5 s later, before the server noticed
                    await self._vanish(patient)
                    away = self.rng.uniform(2.0, 5.0)
                if not await self._pause(away):
                    return
                if (back := await self._join(patient_token, target)) is not None:
                    live.append(back)
                    self.count("reconnects")
            elif variant in ("patient_vanishes", "clinician_vanishes"):
                gone = patient if variant == "patient_vanishes" else clinician
                live.remove(gone)
                if not await self._until_dropped(await self._vanish(gone)):
                    return
            elif variant == "interpreter":
                extra = await self._join(self._token(f"soak-in-{slot.index}"), target)
                if extra is not None:
                    live.append(extra)
                    if not await self._pause(stay / 4):
                        return
                    live.remove(extra)
                    await self._leave(extra)
            await self._pause(stay / 2)
        finally:
            if space is not None and end:
                await self._end(space, staff)  # the clinician ends it: the others hear `ended`
            for client in live:
                await self._leave(client)

    # -- meeting-room slots -------------------------------------------------------------------------
    async def _member(self, slot: Slot, j: int) -> None:
        assert slot.room is not None
        token = self._token(f"soak-r{slot.index}-m{j}")
        n = slot.index + j
        if not await self._pause(j * 1.5 + self.rng.uniform(0.0, 1.0)):
            return
        while not self.stop.is_set():
            client = await self._join(token, {"room": slot.room})
            if client is None:
                await self._pause(2.0)
                continue
            action = ROOM_ACTIONS[n % len(ROOM_ACTIONS)]
            n += 1
            if not await self._pause(self._stay()):
                await self._leave(client)
                return
            if action == "leave":
                await self._leave(client)
                await self._pause(self.rng.uniform(1.0, 4.0))
            elif action == "reload":
                await self._reload(client)
                await self._pause(self.rng.uniform(0.5, 2.0))
            else:
                await self._until_dropped(await self._vanish(client))


# -- process entry --------------------------------------------------------------------------------
def worker_main(index: int, spec: SoakSpec, slots: list[Slot], events: Any,
                commands: Any) -> None:
    """Body of a worker process: load the clip, say ``up``, play from ``go`` to ``stop``, say
    ``stopped``, let go of the vanished at ``release``, say ``done`` with the tally."""
    logging.basicConfig(level=logging.WARNING)
    quiet_warnings()
    for name in ("aiortc", "aioice", "sfu", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        asyncio.run(_process_main(index, spec, slots, events, commands))
    except BaseException:  # noqa: BLE001 - reported to the orchestrator, then the process ends
        events.put(("crash", index, traceback.format_exc()))


async def _process_main(index: int, spec: SoakSpec, slots: list[Slot], events: Any,
                        commands: Any) -> None:
    clip = load_clip(Path(spec.clip_dir) if spec.clip_dir else None, spec.clip_params)
    worker = SoakWorker(index, spec, slots, clip)
    parent = os.getppid()
    events.put(("up", index, os.getpid()))
    while (first := await _command(commands, parent))[0] != "go":
        if first[0] == "orphaned":
            return

    async def listen() -> None:
        while True:
            command = await _command(commands, parent)
            if command[0] in ("stop", "orphaned"):
                worker.stop.set()
            if command[0] in ("release", "orphaned"):
                worker.release.set()
                return

    async def report() -> None:
        while True:
            await asyncio.sleep(5.0)
            events.put(("tally", index, worker.tally.to_json()))

    listener = asyncio.ensure_future(listen())
    reporter = asyncio.ensure_future(report())
    try:
        tally = await worker.run(lambda: events.put(("stopped", index)))
    finally:
        for task in (listener, reporter):
            task.cancel()
        await asyncio.gather(listener, reporter, return_exceptions=True)
    events.put(("done", index, tally.to_json()))


async def _command(commands: Any, parent: int) -> tuple[Any, ...]:
    """The orchestrator's next command; ``("orphaned",)`` once it is gone (killed): then the
    clients leave and the process ends instead of churning on unwatched."""
    while True:
        try:
            return tuple(commands.get_nowait())
        except queue.Empty:
            if os.getppid() != parent:
                return ("orphaned",)
            await asyncio.sleep(0.25)
