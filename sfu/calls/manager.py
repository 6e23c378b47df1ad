"""The calls manager: the root of the control plane's ownership tree.

``Calls`` owns every live ``Call`` (keyed by clinic + space/room) and every pre-call test, decides
joins (who may enter what, room full, draining, the admission probe), puts participants out when
their space or room ends, ticks the quality controllers once a second, and closes everything in
order on shutdown. It is given narrow dependencies: the clinic registry, an endpoint factory, an
events sink, its settings and clocks; it knows nothing of HTTP or WebSockets.

Where things are decided:

- a join: :meth:`Calls.join` (policy in ``sfu.rooms.policy``, the seat in ``Call.admit``, the
  probe of the join that fills a call in ``sfu.calls.probe``);
- a leave: ``Participant.close`` / ``kick`` / ``fail`` (``sfu.calls.call``);
- a pause or a cap: ``QualityController.tick`` (``sfu.calls.quality``, policy in
  ``sfu.bandwidth``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from sfu.auth import PATIENT, Claims
from sfu.bandwidth import BandwidthSettings
from sfu.calls.call import Call, Participant
from sfu.calls.events import CallEvents, CallKey, Client
from sfu.calls.media import EndpointFactory
from sfu.calls.precall import PrecallTest
from sfu.calls.probe import Probe, run_probe
from sfu.calls.quality import QualityController
from sfu.errors import ApiError, bad_request, not_found, room_full, server_full
from sfu.rooms import ClinicRegistry, Space, authorize_join
from sfu.rooms.settings import LimitsSettings

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # on shutdown, how long closes already under way may take


class Calls:
    def __init__(self, *, registry: ClinicRegistry, new_endpoint: EndpointFactory,
                 events: CallEvents, limits: LimitsSettings, bandwidth: BandwidthSettings,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.new_endpoint = new_endpoint
        self.events = events
        self.limits = limits
        self.bandwidth = bandwidth
        self.clock = clock
        self.monotonic = monotonic
        self.by_key: dict[CallKey, Call] = {}  # the live calls
        self.precalls: set[PrecallTest] = set()
        self.draining = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._emptied = asyncio.Event()
        self._urgent: dict[CallKey, asyncio.Handle] = {}  # reallocations asked between ticks

    # -- joining --------------------------------------------------------------------------------
    def join(self, claims: Claims, target: object, client: Client) -> Participant:
        """Admit a participant, or start probing it when its join would fill the call.

        A refusal raises ``ApiError`` with the contract's code and changes nothing; it is
        reported to the events sink. A probed newcomer hears ``joined`` or ``failed`` later.
        """
        try:
            return self._join(claims, target, client)
        except ApiError as exc:
            ids = {k: v for k, v in target.items() if k in ("space", "room") and isinstance(v, str)
                   } if isinstance(target, Mapping) else {}
            self.events.join_refused(claims.role, exc.code, {"clinic": claims.clinic, **ids})
            raise

    def _join(self, claims: Claims, target: object, client: Client) -> Participant:
        if self.draining:
            raise ApiError("draining", "the server is shutting down; try again in a moment")
        venue = authorize_join(claims, self.registry, target).venue
        if venue.closed:
            raise not_found("this consultation has ended")
        key = CallKey(venue.clinic, venue.kind, venue.id)
        call = self.by_key.get(key)
        old = call.find_identity(claims.sub, claims.role) if call is not None else None
        if old is None:  # a rejoin replaces its old connection: no more than before
            self._media_budget()
        if call is not None:
            # the same identity joining again replaces its old connection (a reload, a reconnect)
            if old is not None:
                old.kick("replaced")
        else:
            call = self._new_call(key)
        if call.full:
            self._drop_if_empty(call)
            raise room_full(f"this call already has {len(call)} participants, "
                            f"the most allowed is {call.max_participants}")
        if claims.role == PATIENT:
            name = claims.name or (venue.patient_name if isinstance(venue, Space) else "") or "Patient"
        else:
            name = claims.name or claims.role.capitalize()
        participant = Participant(
            id="p_" + secrets.token_hex(8), name=name, role=claims.role, identity=claims.sub,
            call=call, venue=venue, client=client, new_endpoint=self.new_endpoint,
            events=self.events, clock=self.clock, spawn=self._spawn)
        self.by_key[key] = call
        if self._needs_probe(call):
            call.start_probe(participant)
            probe = Probe(participant, seconds=self.bandwidth.probe_seconds, now=self.monotonic())
            participant.own(run_probe(probe, call, self.bandwidth, self.monotonic,
                                      self._refused_after_probe), "probe")
            return participant
        try:
            call.admit(participant)
        except ApiError:
            self._spawn(participant.close("refused"))
            self._drop_if_empty(call)
            raise
        return participant

    def _new_call(self, key: CallKey) -> Call:
        call = Call(key, self.limits.max_participants, self.events, self.clock,
                    on_empty=self._drop_if_empty)
        call.quality = QualityController(call, self.bandwidth, self.events,
                                         on_urgent=lambda: self._urgent_tick(key))
        return call

    def _urgent_tick(self, key: CallKey) -> None:
        """Run a call's quality controller soon, off the packet path that noticed congestion."""
        if key in self._urgent or self.draining:
            return
        self._urgent[key] = asyncio.get_running_loop().call_soon(self._run_urgent, key)

    def _run_urgent(self, key: CallKey) -> None:
        self._urgent.pop(key, None)
        call = self.by_key.get(key)
        if call is None or call.quality is None or call.empty:
            return
        try:
            call.quality.urgent(self.monotonic())
        except Exception:  # noqa: BLE001 - as the tick: one call's failure must not stop others
            log.exception("quality tick failed for %s %s", call.key.kind, call.key.id)

    def _needs_probe(self, call: Call) -> bool:
        return (self.bandwidth.probe_seconds > 0 and len(call.participants) >= 1
                and len(call) + 1 >= call.max_participants)

    def _refused_after_probe(self, participant: Participant, code: str) -> None:
        self.events.join_refused(participant.role, code, participant.call.key.ids())

    def precall(self, client: Client, seconds: object, claims: Claims | None = None
                ) -> PrecallTest:
        """Start a pre-call test for ``client`` (``seconds``: 2 to 15). A patient's token
        counts only while its space is there (``not_found`` after it ended)."""
        if self.draining:
            raise ApiError("draining", "the server is shutting down")
        if claims is not None and claims.role == PATIENT:
            venue = authorize_join(claims, self.registry, {"space": claims.space}).venue
            if venue.closed:
                raise not_found("this consultation has ended")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                or not 2 <= seconds <= 15:
            raise bad_request("'seconds' must be a number from 2 to 15")
        running = sum(1 for test in self.precalls if not test.closed)
        if running >= self.limits.precall_total:
            raise server_full(f"{running} pre-call tests are running on this server, the most "
                              "at once; try again in a few seconds")
        self._media_budget()
        test = PrecallTest("pc_" + secrets.token_hex(6), client=client,
                           new_endpoint=self.new_endpoint, settings=self.bandwidth,
                           seconds=float(seconds), monotonic=self.monotonic)
        self.precalls.add(test)
        test.start()
        self._spawn(self._forget_precall(test))
        return test

    def media_connections(self) -> int:
        """Media endpoints open (a UDP port each): participants in calls and pre-call tests."""
        in_calls = sum(len(call) for call in self.by_key.values())
        return in_calls + sum(1 for test in self.precalls if not test.closed)

    def _media_budget(self) -> None:
        """``server_full`` when ``limits.media_total`` endpoints are open already."""
        if self.media_connections() >= self.limits.media_total:
            raise server_full(f"this server holds its most media connections "
                              f"({self.limits.media_total}); try again later")

    async def _forget_precall(self, test: PrecallTest) -> None:
        try:
            await test.wait()
        finally:
            self.precalls.discard(test)

    # -- leaving and ending ------------------------------------------------------------------
    def end_call(self, key: CallKey, reason: str) -> None:
        """The space or room is gone: everyone in its call is put out with ``reason``."""
        call = self.by_key.get(key)
        if call is None:
            return
        for participant in call.members():
            participant.kick(reason)

    def put_out(self, clinic: str, identity: str, role: str, reason: str) -> None:
        """Everyone of ``clinic`` joined as ``identity`` with ``role`` (a revoked guest invite)
        is put out with ``reason``."""
        for key, call in list(self.by_key.items()):
            if key.clinic == clinic:
                participant = call.find_identity(identity, role)
                if participant is not None:
                    participant.kick(reason)

    def _drop_if_empty(self, call: Call) -> None:
        if call.empty and self.by_key.get(call.key) is call:
            del self.by_key[call.key]
        if not self.by_key:
            self._emptied.set()

    async def wait_empty(self) -> None:
        """Return once no call is left."""
        while self.by_key:
            self._emptied.clear()
            await self._emptied.wait()

    def end_all(self, reason: str) -> None:
        """Refuse new joins and pre-call tests from now on, and put everyone out."""
        self.draining = True
        for call in list(self.by_key.values()):
            self.end_call(call.key, reason)

    async def close(self) -> None:
        """Close every participant, pre-call test and task this owns (idempotent)."""
        self.draining = True
        for handle in self._urgent.values():
            handle.cancel()
        self._urgent.clear()
        for call in list(self.by_key.values()):
            for participant in call.members():
                await participant.close("server_shutdown")
        for test in list(self.precalls):
            await test.close()
        # what is left are participants' closes already under way: let them finish (bounded)
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.by_key.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the once-a-second tick ------------------------------------------------------------------
    def tick(self) -> None:
        now = self.monotonic()
        for call in list(self.by_key.values()):
            self._drop_if_empty(call)
            if call.quality is None or call.empty:
                continue
            try:
                call.quality.tick(now)
            except Exception:  # noqa: BLE001 - one call's failure must not stop the others
                log.exception("quality tick failed for %s %s", call.key.kind, call.key.id)

    # -- views --------------------------------------------------------------------------------------
    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        """Admitted participants by role, and calls with someone admitted by kind."""
        roles: dict[str, int] = {}
        rooms = {"space": 0, "room": 0}
        for call in self.by_key.values():
            if call.participants:
                rooms[call.key.kind] += 1
            for p in call.participants.values():
                roles[p.role] = roles.get(p.role, 0) + 1
        return roles, rooms
