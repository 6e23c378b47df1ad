"""One node of a cluster: its heartbeat, where calls are placed, and the shared waiting lists.

The node keeps its own ``ClinicRegistry`` as the one truth about what it hosts (the spaces placed
on it, with their patients' names, and the calls in them) and mirrors it into Redis; what other
nodes changed (clinics, rooms, opening hours, revoked invites) comes back through the events
channel and is applied to the registry. Nothing here runs per packet: Redis is touched on a join
that is not local, on every change of a waiting list (a join, a leave, an entry), on the admin
API, and once per heartbeat.

Tasks (each owned here, cancelled and awaited by ``close``): the heartbeat (load report, lost
nodes, placements nobody uses), the events listener, and the writer that mirrors the registry's
changes in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

import aiohttp
import redis as redis_sync
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sfu.auth import PATIENT, Claims
from sfu.cluster.settings import ClusterSettings
from sfu.cluster.store import PLACE, RELEASE, ClinicRecord, Keys, NodeLoad, SpaceRecord
from sfu.errors import ApiError
from sfu.rooms import ClinicRegistry
from sfu.rooms import events as ev
from sfu.rooms.policy import check_join_scope
from sfu.rooms.space import ENDED_BY_STAFF, PATIENT_LEFT, WAITING
from sfu.rooms.text import iso_time

log = logging.getLogger(__name__)

UNUSED_PLACEMENT = 10.0  # a call placed here that nobody joined for this long is given back
HOUSEKEEPING_BEATS = 5  # placements nobody uses and spaces nobody rejoined: every 5 heartbeats
REMOTE_TIMEOUT = 2.0  # a request to another node (relay, names) gives up after this long
CLUSTER_HEADER = "X-SFU-Cluster"  # a node's own token on requests between nodes


def unavailable(message: str) -> ApiError:
    return ApiError("unavailable", message, 503)


class ClusterNode:
    def __init__(self, settings: ClusterSettings, *, node_id: str, url: str,
                 registry: ClinicRegistry, cluster_token: Callable[[], str],
                 load: Callable[[], tuple[int, int]],
                 hosts_call: Callable[[str, str, str], bool],
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.id = node_id
        self.url = url.rstrip("/")
        self.registry = registry
        self.keys = Keys(settings.key_prefix)
        self._cluster_token = cluster_token
        self._load = load  # (participants, calls) of this node
        self._hosts_call = hosts_call  # (clinic, kind, id): a live call of that key is here
        self.clock = clock
        # Any: redis-py's annotations cannot say that decode_responses=True answers str, not bytes
        self.redis: Any = aioredis.from_url(settings.redis_url, decode_responses=True)
        self._http: aiohttp.ClientSession | None = None
        self.live: dict[str, NodeLoad] = {}  # the nodes that reported within the TTL
        self.draining = False
        self.redis_errors = 0
        self.redirects = 0
        self.relayed = 0
        # what other nodes changed in a waiting list: the dashboard feed refreshes it
        self.on_waiting_area: Callable[[str], None] = lambda clinic: None
        # a space no node hosted ended here (nobody rejoined it in time): (clinic, space, reason)
        self.on_space_ended: Callable[[str, str, str], None] = lambda clinic, space, reason: None
        self._applying = False  # applying another node's change: not ours to mirror back
        self._leaving = False  # draining: the calls here move away, nothing more is mirrored
        self._handed_back = False
        # changes of clinics to write, in order: (clinic, "name" | "room" | "hours", room id)
        self._clinic_ops: list[tuple[str, str, str]] = []
        self._flushing: set[str] = set()  # clinics whose changes are being written
        self._dirty_areas: set[str] = set()  # waiting lists to write
        self._revocations: list[tuple[str, str]] = []
        self._written: dict[str, dict[str, str]] = {}  # clinic -> space -> record as written
        self._written_hours: dict[str, tuple[bool, str]] = {}  # clinic -> (closed, message)
        self._unused_since: dict[str, float] = {}  # placement key -> first seen unused
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._cpu = (time.process_time(), time.monotonic())
        self._started = clock()
        self._pubsub: Any = None
        self._report_text = ""
        self._cpu_percent = 0.0
        self._stop_keep_alive = threading.Event()
        self._keep_alive_thread: threading.Thread | None = None
        self._beats = 0

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Join the cluster: seed and load the clinics, report, listen. Raises when Redis is not
        there (a node that cannot see its cluster must not serve as if alone)."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise RuntimeError(f"cluster: cannot reach Redis at {self.settings.redis_url}: {exc}"
                               ) from exc
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REMOTE_TIMEOUT))
        # a previous run of this node (a crash, a restart quicker than the TTL) left calls
        # placed here that this process does not have: back to the waiting list, like a lost node's
        left = await self.redis.smembers(self.keys.calls(self.id))
        if left:
            log.warning("cluster: %d calls of this node's previous run go back to the waiting "
                        "list", len(left))
            for clinic_id in sorted(await self._unplace(self.id, left)):
                await self._publish({"t": "wa", "c": clinic_id})
        await self.redis.zadd(self.keys.load, {self.id: 0}, nx=True)
        for clinic in self.registry.clinics:  # the config's clinics, unless the cluster has them
            if not await self.redis.exists(self.keys.clinic(clinic.id)):
                await self.redis.hset(self.keys.clinic(clinic.id),
                                      mapping=self._clinic_record(clinic.id).fields())
            await self.redis.sadd(self.keys.clinics, clinic.id)
        await self._load_clinics()
        await self._report()
        await self._heartbeat_once()
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.keys.events)
        self._pubsub = pubsub
        self._spawn(self._listen(pubsub))
        self._spawn(self._heartbeat())
        self._keep_alive_thread = threading.Thread(target=self._keep_alive, daemon=True,
                                                   name=f"cluster-keepalive-{self.id}")
        self._keep_alive_thread.start()
        self._spawn(self._writer())
        log.info("cluster: node %s joined at %s (%d nodes live)", self.id, self.url, len(self.live))

    def set_draining(self) -> None:
        """No new calls are placed here; the next report says so at once."""
        if self.draining or self._closed:
            return
        self.draining = True
        self._spawn(self._report_now())

    async def leave(self) -> str | None:
        """Drain: stop mirroring this node's registry (its calls are about to move), give its
        spaces and placements back, report draining. The WebSocket URL of the least loaded
        other live node, or None when there is none."""
        self.draining = True
        self._leaving = True
        try:
            await self._report()
            if not self._handed_back:
                self._handed_back = True
                await self._hand_back(remove_node=False)
        except (RedisError, OSError) as exc:
            self.redis_errors += 1
            log.warning("cluster: could not hand this node's calls back: %s", exc)
            return None
        others = [n for n in self.candidates() if n != self.id]
        return self.ws_url(others[0]) if others else None

    async def close(self) -> None:
        """Leave the cluster: the spaces hosted here go back to the waiting list unplaced (their
        patients keep their place and rejoin on a live node), placements are given back."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._stop_keep_alive.set()
        if self._keep_alive_thread is not None:  # before the hand back removes the report
            await asyncio.to_thread(self._keep_alive_thread.join, 5.0)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        # redis-py may swallow a cancellation in the middle of a command; every loop here also
        # ends once ``_closed`` is set, so the wait is short either way
        _, pending = await asyncio.wait(tasks, timeout=5.0) if tasks else (set(), set())
        for task in pending:
            log.error("cluster: task %s did not stop", task.get_name())
        try:
            if not self._handed_back:
                self._handed_back = True
                await self._hand_back()
            else:
                await self._forget_node(self.id)
        except (RedisError, OSError) as exc:
            log.warning("cluster: could not hand back this node's calls: %s", exc)
        if self._http is not None:
            await self._http.close()
        await self.redis.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what this node's registry tells ------------------------------------------------------------
    def on_domain_event(self, event: ev.DomainEvent) -> None:
        """Mirror a change of this node's registry (the writer task does the writing)."""
        if self._applying or self._closed or self._leaving:
            return
        if isinstance(event, ev.ClinicUpdated):
            self._clinic_ops.append((event.clinic, "name", ""))
        elif isinstance(event, ev.RoomUpdated | ev.RoomDeleted):
            self._clinic_ops.append((event.clinic, "room", event.room))
        elif isinstance(event, ev.WaitingAreaChanged):
            self._dirty_areas.add(event.clinic)
            self._clinic_ops.append((event.clinic, "hours", ""))  # written only when changed
        elif isinstance(event, ev.InviteRevoked):
            self._revocations.append((event.clinic, event.sub))
        else:
            return
        self._wake.set()

    async def _writer(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            try:
                await self._flush()
            except (RedisError, OSError) as exc:
                self.redis_errors += 1
                log.warning("cluster: writing to Redis failed (%s); retrying", exc)
                await asyncio.sleep(min(1.0, self.settings.heartbeat))
                self._wake.set()

    async def _flush(self) -> None:
        ops, self._clinic_ops = self._clinic_ops, []
        areas, self._dirty_areas = self._dirty_areas, set()
        revoked, self._revocations = self._revocations, []
        self._flushing = {clinic for clinic, _, _ in ops}
        try:
            changed = await self._write_clinic_ops(ops)
            for clinic_id, invite in revoked:
                clinic = self.registry.find(clinic_id)
                until = clinic.revocations().get(invite) if clinic is not None else None
                if until is not None:
                    await self.redis.hset(self.keys.revoked(clinic_id), invite, str(until))
                    await self._publish({"t": "revoke", "c": clinic_id, "i": invite, "e": until})
            for clinic_id in sorted(areas):
                await self._write_area(clinic_id)
            for clinic_id in sorted(changed):
                await self._publish({"t": "clinic", "c": clinic_id})
            self._flushing = set()
            for clinic_id in sorted(changed):  # what others changed meanwhile, merged
                await self._reload_clinic(clinic_id)
        except BaseException:
            self._clinic_ops[:0] = ops
            self._dirty_areas |= areas
            self._revocations[:0] = revoked
            raise
        finally:
            self._flushing = set()

    async def _write_clinic_ops(self, ops: list[tuple[str, str, str]]) -> set[str]:
        """Write each change of a clinic as the one field it changed (a whole record written by
        two nodes at once lost one's rooms). The clinics that changed."""
        changed: set[str] = set()
        for clinic_id, what, room_id in ops:
            clinic = self.registry.find(clinic_id)
            if clinic is None:
                continue
            key = self.keys.clinic(clinic_id)
            if what == "name":
                await self.redis.hset(key, "name", clinic.name)
                await self.redis.sadd(self.keys.clinics, clinic_id)
            elif what == "room":
                room = clinic.find_room(room_id)
                if room is None:
                    await self.redis.hdel(key, f"room:{room_id}")
                else:
                    await self.redis.hset(key, f"room:{room_id}", room.name)
            else:
                area = clinic.waiting_area
                hours = (area.closed, area.closed_message)
                if self._written_hours.get(clinic_id) == hours:
                    continue
                await self.redis.hset(key, mapping={"closed": "1" if area.closed else "0",
                                                    "message": area.closed_message})
                self._written_hours[clinic_id] = hours
            changed.add(clinic_id)
        return changed

    async def _write_area(self, clinic_id: str) -> None:
        """This node's spaces of one clinic as records: what changed is written, what ended is
        removed (and its placement given back); then every node hears the list changed."""
        clinic = self.registry.find(clinic_id)
        now_local = {} if clinic is None else {
            s.id: SpaceRecord(status=s.status, waiting_since=s.waiting_since, patient=s.patient_sub,
                              host=self.id, participants=[{"id": p["id"], "role": p["role"]}
                                                          for p in s.participants]).dumps()
            for s in clinic.waiting_area.spaces}
        written = self._written.setdefault(clinic_id, {})
        changed = {k: v for k, v in now_local.items() if written.get(k) != v}
        gone = [k for k in written if k not in now_local]
        if not changed and not gone:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            if changed:
                pipe.hset(self.keys.spaces(clinic_id), mapping=changed)
            for space_id in gone:
                pipe.hdel(self.keys.spaces(clinic_id), space_id)
                pipe.eval(RELEASE, 2, self.keys.call(clinic_id, "space", space_id), self.keys.load,
                          self.keys.prefix, self.id)
            await pipe.execute()
        written.update(changed)
        for space_id in gone:
            del written[space_id]
        await self._publish({"t": "wa", "c": clinic_id})

    def _clinic_record(self, clinic_id: str) -> ClinicRecord:
        clinic = self.registry.get(clinic_id)
        area = clinic.waiting_area
        return ClinicRecord(name=clinic.name, rooms={r.id: r.name for r in clinic.rooms},
                            closed=area.closed, message=area.closed_message)

    async def _publish(self, event: dict[str, Any]) -> None:
        await self.redis.publish(self.keys.events, json.dumps({**event, "n": self.id}))

    # -- what other nodes changed -------------------------------------------------------------------
    async def _listen(self, pubsub: Any) -> None:
        while not self._closed:
            try:
                async for message in pubsub.listen():
                    if self._closed:
                        return
                    if message.get("type") == "message":
                        await self._on_event(message.get("data", ""))
            except (RedisError, OSError) as exc:
                self.redis_errors += 1
                log.warning("cluster: events subscription lost (%s); resubscribing", exc)
                await asyncio.sleep(min(1.0, self.settings.heartbeat))
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.subscribe(self.keys.events)
                    await self._load_clinics()  # what may have been missed meanwhile

    async def _on_event(self, data: str) -> None:
        try:
            event = json.loads(data)
            kind, clinic, origin = event["t"], event.get("c"), event["n"]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: an event that is not ours on the channel was ignored")
            return
        if origin == self.id:
            return
        if kind == "wa" and isinstance(clinic, str):
            self.on_waiting_area(clinic)
        elif kind == "clinic" and isinstance(clinic, str):
            await self._reload_clinic(clinic)
        elif kind == "revoke" and isinstance(clinic, str):
            self._apply_revocation(clinic, str(event.get("i", "")), float(event.get("e", 0)))

    async def _reload_clinic(self, clinic_id: str) -> None:
        """Apply what Redis says of one clinic, unless this node has changes of it not yet
        written (their write reloads it after)."""
        if self._pending(clinic_id):
            return
        record = ClinicRecord.from_fields(await self.redis.hgetall(self.keys.clinic(clinic_id)))
        if record is not None and not self._pending(clinic_id):  # (none came in meanwhile)
            self._apply_clinic(clinic_id, record)

    def _pending(self, clinic_id: str) -> bool:
        return clinic_id in self._flushing or any(c == clinic_id for c, _, _ in self._clinic_ops)

    async def _load_clinics(self) -> None:
        for clinic_id in sorted(await self.redis.smembers(self.keys.clinics)):
            await self._reload_clinic(clinic_id)
            revoked = await self.redis.hgetall(self.keys.revoked(clinic_id))
            for invite, until in revoked.items():
                with contextlib.suppress(ValueError):
                    self._apply_revocation(clinic_id, invite, float(until))

    def _apply_clinic(self, clinic_id: str, record: ClinicRecord) -> None:
        """Make this node's registry say what the cluster says about one clinic."""
        self._applying = True
        try:
            clinic = self.registry.find(clinic_id)
            if clinic is None or clinic.name != record.name:
                clinic, _ = self.registry.put_clinic(clinic_id, record.name)
            for room_id, name in record.rooms.items():
                room = clinic.find_room(room_id)
                if room is None or room.name != name:
                    clinic.put_room(room_id, name)
            for room in clinic.rooms:
                if room.id not in record.rooms:
                    clinic.delete_room(room.id)  # its call, if here, ends (RoomDeleted)
            area = clinic.waiting_area
            if record.closed and (not area.closed or area.closed_message != record.message):
                area.close(record.message)
            elif not record.closed and area.closed:
                area.open()
            self._written_hours[clinic_id] = (clinic.waiting_area.closed,
                                              clinic.waiting_area.closed_message)
        except ApiError as exc:  # a record another node wrote that this one cannot take
            log.warning("cluster: clinic %s from Redis not applied: %s", clinic_id, exc.message)
        finally:
            self._applying = False

    def _apply_revocation(self, clinic_id: str, invite: str, until: float) -> None:
        clinic = self.registry.find(clinic_id)
        now = self.clock()
        if clinic is None or not invite or until <= now or clinic.invite_revoked(invite):
            return
        self._applying = True
        try:
            clinic.revoke_invite(invite, until, now)  # guests of it here are put out
        finally:
            self._applying = False

    # -- heartbeat ---------------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.heartbeat)
            try:
                await self._heartbeat_once()
            except (RedisError, OSError) as exc:
                self.redis_errors += 1
                log.warning("cluster: heartbeat failed: %s", exc)

    async def _heartbeat_once(self) -> None:
        self._measure()
        names = await self.redis.hgetall(self.keys.nodes)
        ids = sorted(names)
        reports = await self.redis.mget([self.keys.node(n) for n in ids]) if ids else []
        live: dict[str, NodeLoad] = {}
        for node_id, text in zip(ids, reports, strict=True):
            load = NodeLoad.loads(text) if text else None
            if load is not None:
                live[node_id] = load
            elif node_id != self.id:
                await self._take_over(node_id)
        self.live = live
        self._beats += 1
        if self._beats % HOUSEKEEPING_BEATS == 0:  # neither is urgent: every few heartbeats
            await self._give_back_unused()
            await self._expire_unplaced()

    def _measure(self) -> NodeLoad:
        """This node's load now: what the keep-alive thread reports from here on."""
        participants, calls = self._load()
        cpu_now, wall_now = time.process_time(), time.monotonic()
        cpu_then, wall_then = self._cpu
        if wall_now - wall_then >= 0.5 or not self._report_text:
            self._cpu = (cpu_now, wall_now)
            self._cpu_percent = round(100.0 * (cpu_now - cpu_then) / max(1e-6, wall_now - wall_then), 1)
        load = NodeLoad(url=self.url, participants=participants, calls=calls,
                        cpu=self._cpu_percent, draining=self.draining, started=self._started)
        self._report_text = load.dumps()
        self.live[self.id] = load
        return load

    async def _report(self) -> None:
        """Report now (at start, and when draining starts); the thread keeps it alive after."""
        self._measure()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.node(self.id), self._report_text, px=int(self.settings.ttl * 1000))
            pipe.hset(self.keys.nodes, self.id, self.url)
            await pipe.execute()

    async def _report_now(self) -> None:
        """``_report`` in a task of its own: a failure is counted and logged (the thread reports
        again within a heartbeat), never left in the task."""
        try:
            await self._report()
        except (RedisError, OSError) as exc:
            self.redis_errors += 1
            log.warning("cluster: load report failed: %s", exc)

    def _keep_alive(self) -> None:
        """The keep-alive thread: the load report, refreshed every heartbeat whatever the event
        loop is doing. A node whose loop was saturated by a join burst reported every 3-5 s from
        the loop, and another node took its four live calls for lost (bench/cluster.py found
        it); a thread still runs (Python switches threads every 5 ms), and a dead process
        stops it."""
        client = redis_sync.Redis.from_url(self.settings.redis_url)
        ttl_ms = int(self.settings.ttl * 1000)
        try:
            while not self._stop_keep_alive.wait(self.settings.heartbeat):
                try:
                    with client.pipeline(transaction=False) as pipe:
                        pipe.set(self.keys.node(self.id), self._report_text, px=ttl_ms)
                        pipe.hset(self.keys.nodes, self.id, self.url)
                        pipe.execute()
                except (RedisError, OSError) as exc:
                    self.redis_errors += 1
                    log.warning("cluster: load report failed: %s", exc)
        finally:
            client.close()

    async def _take_over(self, node_id: str) -> None:
        """``node_id`` stopped reporting: its calls are lost. One node (the lock's) puts its spaces
        back in the waiting list unplaced, with their places kept, and frees its placements."""
        if not await self.redis.set(self.keys.lost(node_id), self.id, nx=True, ex=60):
            return
        log.warning("cluster: node %s is lost; its calls go back to the waiting list", node_id)
        clinics = await self._unplace(node_id, await self.redis.smembers(self.keys.calls(node_id)))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.calls(node_id))
            pipe.zrem(self.keys.load, node_id)
            pipe.hdel(self.keys.nodes, node_id)
            await pipe.execute()
        self.live.pop(node_id, None)
        await self._publish({"t": "lost", "node": node_id})
        for clinic_id in sorted(clinics):
            await self._publish({"t": "wa", "c": clinic_id})
            self.on_waiting_area(clinic_id)

    async def _unplace(self, node_id: str, call_keys: set[str]) -> set[str]:
        """Free ``node_id``'s placements; its spaces' records say nobody hosts them (``waiting``,
        the original ``waiting_since``). The clinics whose lists changed."""
        clinics: set[str] = set()
        now = self.clock()
        for key in call_keys:
            await self.redis.eval(RELEASE, 2, key, self.keys.load, self.keys.prefix, node_id)
            parsed = self.keys.parse_call(key)
            if parsed is None or parsed[1] != "space":
                continue
            clinic_id, _, space_id = parsed
            text = await self.redis.hget(self.keys.spaces(clinic_id), space_id)
            record = SpaceRecord.loads(text) if text else None
            if record is None or record.host != node_id:
                continue
            record.host, record.status, record.participants, record.lost_at = "", WAITING, [], now
            await self.redis.hset(self.keys.spaces(clinic_id), space_id, record.dumps())
            await self.redis.zadd(self.keys.unplaced, {f"{clinic_id}/{space_id}": now})
            clinics.add(clinic_id)
        return clinics

    async def _hand_back(self, *, remove_node: bool = True) -> None:
        """On leaving: every placement here is freed and every space hosted here goes back to
        the list unplaced (this node's patients rejoin on another)."""
        for clinic in self.registry.clinics:
            self._written.pop(clinic.id, None)
        clinics = await self._unplace(self.id, await self.redis.smembers(self.keys.calls(self.id)))
        if remove_node:
            await self._forget_node(self.id)
        for clinic_id in sorted(clinics):
            await self._publish({"t": "wa", "c": clinic_id})

    async def _forget_node(self, node_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.calls(node_id), self.keys.node(node_id))
            pipe.zrem(self.keys.load, node_id)
            pipe.hdel(self.keys.nodes, node_id)
            await pipe.execute()
        await self._publish({"t": "lost", "node": node_id})

    async def _give_back_unused(self) -> None:
        """A call placed here that nobody joined (the redirected client never came, the room
        emptied) is freed after a while, so the placement counts only calls that are here."""
        now = time.monotonic()
        keys = await self.redis.smembers(self.keys.calls(self.id))
        for key in keys:
            parsed = self.keys.parse_call(key)
            if parsed is None:
                continue
            clinic_id, kind, call_id = parsed
            if kind == "space":
                clinic = self.registry.find(clinic_id)
                used = clinic is not None and clinic.waiting_area.find(call_id) is not None
            else:
                used = self._hosts_call(clinic_id, kind, call_id)
            if used:
                self._unused_since.pop(key, None)
                continue
            since = self._unused_since.setdefault(key, now)
            if now - since >= UNUSED_PLACEMENT:
                self._unused_since.pop(key, None)
                await self.redis.eval(RELEASE, 2, key, self.keys.load, self.keys.prefix, self.id)
        for key in [k for k in self._unused_since if k not in keys]:
            del self._unused_since[key]

    async def _expire_unplaced(self) -> None:
        """A space nobody rejoined within the reconnect grace after its node was lost ends."""
        grace = self.registry.waiting_area_settings.reconnect_grace
        due = await self.redis.zrangebyscore(self.keys.unplaced, "-inf", self.clock() - grace,
                                             start=0, num=20)
        for member in due:
            if not await self.redis.zrem(self.keys.unplaced, member):
                continue  # another node took it
            clinic_id, _, space_id = member.partition("/")
            text = await self.redis.hget(self.keys.spaces(clinic_id), space_id)
            record = SpaceRecord.loads(text) if text else None
            if record is not None and not record.host:
                await self.redis.hdel(self.keys.spaces(clinic_id), space_id)
                await self._publish({"t": "wa", "c": clinic_id})
                self.on_waiting_area(clinic_id)
                self.on_space_ended(clinic_id, space_id, PATIENT_LEFT)

    # -- placement -----------------------------------------------------------------------------------
    def candidates(self) -> list[str]:
        """Live nodes that take new calls, the least loaded first (participants, then id)."""
        nodes = {n: load for n, load in self.live.items() if not load.draining}
        if not self.draining:
            nodes.setdefault(self.id, NodeLoad(url=self.url))
        return sorted(nodes, key=lambda n: (nodes[n].participants, n))

    async def place(self, clinic: str, kind: str, call_id: str) -> str:
        """The node ``clinic``'s space or room lives on: where it is, or the least loaded live
        node (the fewest calls placed) from now on."""
        key = self.keys.call(clinic, kind, call_id)
        for _ in range(2):
            candidates = self.candidates()
            if not candidates:
                raise unavailable("no node of this service takes new calls right now")
            try:
                host = await self.redis.eval(PLACE, 2, key, self.keys.load, self.keys.prefix,
                                             *candidates)
            except (RedisError, OSError) as exc:
                self.redis_errors += 1
                raise unavailable(f"the cluster's shared state is unreachable: {exc}") from exc
            if host is None:
                raise unavailable("no node of this service takes new calls right now")
            async with self._shared_state():
                if host == self.id or await self.redis.exists(self.keys.node(host)):
                    return str(host)
                await self._take_over(str(host))  # placed on a node that stopped reporting
        raise unavailable("the node of this call was lost; try again in a moment")

    def ws_url(self, node: str) -> str:
        base = self.live[node].url if node in self.live else self.url
        if base.startswith("https://"):
            return "wss://" + base[len("https://"):] + "/v1/ws"
        return "ws://" + base.removeprefix("http://") + "/v1/ws"

    def node_origins(self) -> list[str]:
        """The http(s) origins of the live nodes (the web client's CSP lets it reach them)."""
        return sorted({load.url for load in self.live.values()})

    async def route(self, claims: Claims, target: object) -> str | None:
        """Where a ``join`` goes: None to join here, or the WebSocket URL of the node hosting
        the call (the client is redirected there). 400/403 as the join itself would answer,
        before anything is looked up; what does not exist is left to the local join's 404;
        503 ``unavailable`` when Redis cannot be reached."""
        try:
            return await self._route(claims, target)
        except (RedisError, OSError) as exc:
            self.redis_errors += 1
            raise unavailable(f"the cluster's shared state is unreachable: {exc}") from exc

    async def _route(self, claims: Claims, target: object) -> str | None:
        wanted, clinic_id = check_join_scope(claims, target)
        clinic = self.registry.find(clinic_id)
        if clinic is None:
            return None
        if wanted.space is not None:
            space = clinic.waiting_area.find(wanted.space)
            if space is not None:
                if claims.role == PATIENT and not space.patient_name and claims.name:
                    space.patient_name = claims.name  # adopted before its patient came back
                return None
            text = await self.redis.hget(self.keys.spaces(clinic_id), wanted.space)
            record = SpaceRecord.loads(text) if text else None
            if record is None:
                return None
            host = await self.place(clinic_id, "space", wanted.space)
            if host == self.id:
                await self.redis.zrem(self.keys.unplaced, f"{clinic_id}/{wanted.space}")
                adopted = clinic.waiting_area.find(wanted.space) is None
                space = clinic.waiting_area.adopt(  # (or the one a join meanwhile adopted)
                    wanted.space, patient_sub=record.patient, waiting_since=record.waiting_since,
                    patient_name="", now=self.clock())
                if claims.role == PATIENT and not space.patient_name and claims.name:
                    space.patient_name = claims.name
                if adopted:
                    log.info("cluster: space %s of clinic %s is hosted here now", wanted.space,
                             clinic_id)
                return None
        else:
            assert wanted.room is not None
            if clinic.find_room(wanted.room) is None:
                return None
            host = await self.place(clinic_id, "room", wanted.room)
            if host == self.id:
                return None
        self.redirects += 1
        return self.ws_url(host)

    async def space_host(self, clinic: str, space: str) -> tuple[SpaceRecord | None, str]:
        """A space's record and the node hosting it ("" when none)."""
        async with self._shared_state():
            text = await self.redis.hget(self.keys.spaces(clinic), space)
            record = SpaceRecord.loads(text) if text else None
            host = await self.redis.get(self.keys.call(clinic, "space", space))
        return record, str(host or "")

    async def forget_space(self, clinic: str, space: str) -> bool:
        """End a space no node hosts (staff ended it while its node was lost)."""
        async with self._shared_state():
            removed = await self.redis.hdel(self.keys.spaces(clinic), space)
            await self.redis.zrem(self.keys.unplaced, f"{clinic}/{space}")
            if removed:
                await self._publish({"t": "wa", "c": clinic})
        if removed:
            self.on_waiting_area(clinic)
            self.on_space_ended(clinic, space, ENDED_BY_STAFF)
        return bool(removed)

    async def count_spaces(self, clinic: str) -> int:
        async with self._shared_state():
            return int(await self.redis.hlen(self.keys.spaces(clinic)))

    @contextlib.asynccontextmanager
    async def _shared_state(self) -> AsyncIterator[None]:
        """Redis commands a request waits on: 503 ``unavailable`` when Redis cannot be reached."""
        try:
            yield
        except (RedisError, OSError) as exc:
            self.redis_errors += 1
            raise unavailable(f"the cluster's shared state is unreachable: {exc}") from exc

    # -- the shared waiting list ---------------------------------------------------------------------
    def local_spaces(self, clinic_id: str) -> list[dict[str, Any]]:
        clinic = self.registry.find(clinic_id)
        return [] if clinic is None else [s.to_json() for s in clinic.waiting_area.spaces]

    async def waiting_list(self, clinic_id: str) -> dict[str, Any]:
        """``GET waiting-area`` across the cluster: every node's spaces of the clinic, with the
        names their hosts hold in memory (a space whose node was lost shows no name and
        ``"reconnecting": true`` until someone rejoins it)."""
        area = self.registry.get(clinic_id).waiting_area
        async with self._shared_state():
            records = await self.redis.hgetall(self.keys.spaces(clinic_id))
        parsed = {k: r for k, v in records.items() if (r := SpaceRecord.loads(v)) is not None}
        hosts = sorted({r.host for r in parsed.values() if r.host and r.host != self.id})
        remote: dict[str, dict[str, dict[str, Any]]] = {}
        answers = await asyncio.gather(*(self._remote_spaces(h, clinic_id) for h in hosts))
        for host, answer in zip(hosts, answers, strict=True):
            remote[host] = answer
        local = {s.id: s for s in area.spaces}
        order = {s.id: s.waiting_since for s in area.spaces}
        order.update({k: r.waiting_since for k, r in parsed.items() if k not in order})
        spaces = [s.to_json() for s in local.values()]
        for space_id, record in parsed.items():
            if space_id in local or record.host == self.id:
                continue  # ours: the registry's view is the fresh one (or it just ended)
            shown = remote.get(record.host, {}).get(space_id)
            if shown is None:
                shown = {"space": space_id, "status": record.status,
                         "waiting_since": iso_time(record.waiting_since), "patient": {"name": ""},
                         "participants": [{"id": p["id"], "name": "", "role": p["role"]}
                                          for p in record.participants]}
                if not record.host:
                    shown["reconnecting"] = True
            spaces.append(shown)
        spaces.sort(key=lambda s: order.get(s["space"], 0.0))  # longest waiting first
        return {"spaces": spaces, "closed": area.closed, "message": area.closed_message}

    async def _remote_spaces(self, node: str, clinic_id: str) -> dict[str, dict[str, Any]]:
        load = self.live.get(node)
        if load is None or self._http is None:
            return {}
        try:
            async with self._http.get(f"{load.url}/v1/cluster/clinics/{clinic_id}/spaces",
                                      headers={CLUSTER_HEADER: self._cluster_token()}) as resp:
                if resp.status != 200:
                    return {}
                body = await resp.json()
            return {s["space"]: s for s in body.get("spaces", []) if isinstance(s, dict)
                    and isinstance(s.get("space"), str)}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("cluster: node %s did not give its spaces of clinic %s: %s", node,
                        clinic_id, exc)
            return {}

    # -- requests relayed to another node ----------------------------------------------------------
    async def relay(self, node: str, method: str, path: str, body: bytes,
                    headers: Mapping[str, str]) -> tuple[int, bytes, str]:
        """Send an HTTP request on to ``node`` (the host of what it is about); its answer."""
        load = self.live.get(node)
        if load is None or self._http is None:
            raise unavailable("the node hosting this is not reachable; try again in a moment")
        self.relayed += 1
        try:
            async with self._http.request(method, load.url + path, data=body or None,
                                          headers={**headers, CLUSTER_HEADER: self._cluster_token()}
                                          ) as resp:
                return resp.status, await resp.read(), resp.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unavailable(f"the node hosting this did not answer: {exc}") from exc

    def nodes_json(self) -> dict[str, Any]:
        return {"node": self.id, "nodes": [
            {"id": n, "url": load.url, "participants": load.participants, "calls": load.calls,
             "cpu": load.cpu, "draining": load.draining, "started": iso_time(load.started)}
            for n, load in sorted(self.live.items())]}

