"""Scenario plans for ``bench.load``: who joins what, when, and in which worker process.

Pure: no I/O, no clock. A plan is a list of :class:`WorkerPlan`, one per worker process. Times are
seconds after the common start ``t0`` that the orchestrator hands every worker.

Everybody in one call (a meeting room, or a patient's space with the staff member who sees them)
lives in the same worker, so a worker can measure a call on its own clock and one event loop, and a
slow worker slows only its own calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Session:
    """One participant in a meeting room: joins at ``start``, leaves at ``leave`` (None: on stop)."""

    key: str  # unique in the run, e.g. "r003-p2"; also the token's `sub`
    room: str
    start: float
    leave: float | None


@dataclass(frozen=True)
class Lane:
    """One staff member of the waiting-rush and the patients they see, one after the other."""

    staff: str  # the staff member's `sub`
    patients: tuple[tuple[str, float], ...]  # (patient key, entry time), in order of entry
    consult: float


@dataclass
class WorkerPlan:
    index: int
    sessions: list[Session] = field(default_factory=list)
    lanes: list[Lane] = field(default_factory=list)
    snapshots: list[float] = field(default_factory=list)  # ramp: when to report counters

    @property
    def participants(self) -> int:
        return len(self.sessions) + sum(len(lane.patients) for lane in self.lanes)


@dataclass(frozen=True)
class Plan:
    workers: list[WorkerPlan]
    rooms: list[str]  # meeting rooms the orchestrator must create
    duration: float  # expected length of the scenario (an upper bound for waiting-rush)

    @property
    def participants(self) -> int:
        return sum(w.participants for w in self.workers)


def room_name(run: str, index: int) -> str:
    return f"load-{run}-{index:03d}"


def _spread(rooms: int, workers: int) -> list[list[int]]:
    """Room indices per worker, round-robin (room r -> worker r % workers)."""
    out: list[list[int]] = [[] for _ in range(max(1, workers))]
    for r in range(rooms):
        out[r % len(out)].append(r)
    return out


def plan_meetings(run: str, *, rooms: int, people: int, seconds: float, join_spread: float,
                  workers: int) -> Plan:
    """``rooms`` rooms of ``people``; all joins spread evenly over the first ``join_spread``
    seconds (room by room, person by person), everybody leaves at ``seconds``."""
    if rooms < 1 or people < 1:
        raise ValueError("--rooms and --people must be at least 1")
    if seconds <= join_spread:
        raise ValueError("--seconds must be longer than --join-spread")
    total = rooms * people
    plans = [WorkerPlan(i) for i in range(max(1, workers))]
    names = [room_name(run, r) for r in range(rooms)]
    for w, indices in enumerate(_spread(rooms, workers)):
        for r in indices:
            for p in range(people):
                order = p * rooms + r  # first everyone's first person, then the second ...
                start = join_spread * order / total
                plans[w].sessions.append(Session(f"r{r:03d}-p{p}", names[r], start, seconds))
    return Plan(plans, names, seconds)


def churn_rooms(rate: float, stay: float, people: int) -> int:
    """Enough rooms that round-robin arrivals keep each below ``people`` on average."""
    return max(1, math.ceil(rate * stay / max(1, people - 1)))


def plan_churn(run: str, *, rate: float, seconds: float, stay: float, rooms: int | None,
               people: int, workers: int) -> Plan:
    """``rate`` joins per second for ``seconds``; each stays ``stay`` seconds; join ``i`` goes
    to room ``i % rooms``."""
    if rate <= 0 or seconds <= 0 or stay <= 0:
        raise ValueError("--rate, --seconds and --stay must be positive")
    n_rooms = rooms or churn_rooms(rate, stay, people)
    joins = max(1, round(rate * seconds))
    names = [room_name(run, r) for r in range(n_rooms)]
    plans = [WorkerPlan(i) for i in range(max(1, workers))]
    for i in range(joins):
        r = i % n_rooms
        start = i / rate
        plans[r % len(plans)].sessions.append(Session(f"c{i:05d}", names[r], start, start + stay))
    return Plan(plans, names, (joins - 1) / rate + stay)


def plan_waiting_rush(*, patients: int, within: float, staff: int, consult: float,
                      workers: int) -> Plan:
    """``patients`` enter evenly within ``within`` seconds; patient ``j`` is seen by staff member
    ``j % staff``, who sees their patients one by one, ``consult`` seconds each."""
    if patients < 1 or staff < 1 or consult <= 0 or within < 0:
        raise ValueError("--patients, --staff and --consult must be positive")
    plans = [WorkerPlan(i) for i in range(max(1, workers))]
    for k in range(staff):
        mine = tuple(
            (f"pt{j:04d}", within * j / patients) for j in range(patients) if j % staff == k
        )
        if mine:
            plans[k % len(plans)].lanes.append(Lane(f"staff{k:03d}", mine, consult))
    per_staff = math.ceil(patients / staff)
    return Plan(plans, [], within + per_staff * (consult + 2.0))


@dataclass(frozen=True)
class RampStep:
    index: int
    rooms: int  # rooms in the call after this step's rooms joined
    start: float
    measure_from: float
    end: float


def ramp_steps(*, rooms_per_step: int, step_seconds: float, settle: float,
               max_steps: int) -> list[RampStep]:
    return [
        RampStep(k, (k + 1) * rooms_per_step, k * step_seconds, k * step_seconds + settle,
                 (k + 1) * step_seconds)
        for k in range(max_steps)
    ]


def plan_ramp(run: str, *, people: int, rooms_per_step: int, step_seconds: float,
              join_spread: float, max_steps: int, workers: int) -> tuple[Plan, list[RampStep]]:
    """Step ``k`` adds ``rooms_per_step`` rooms at ``k * step_seconds`` (joins spread over
    ``join_spread``); nobody leaves until the orchestrator says stop. Each worker reports its
    counters at every step's ``measure_from`` and ``end``."""
    if step_seconds <= join_spread + 1:
        raise ValueError("--step-seconds must exceed --join-spread by more than a second")
    settle = min(step_seconds / 2, join_spread + 3.0)
    steps = ramp_steps(rooms_per_step=rooms_per_step, step_seconds=step_seconds, settle=settle,
                       max_steps=max_steps)
    total_rooms = rooms_per_step * max_steps
    names = [room_name(run, r) for r in range(total_rooms)]
    plans = [WorkerPlan(i) for i in range(max(1, workers))]
    batch = rooms_per_step * people
    for r in range(total_rooms):
        step, r_in_step = divmod(r, rooms_per_step)
        for p in range(people):
            order = p * rooms_per_step + r_in_step
            start = step * step_seconds + join_spread * order / batch
            plans[r % len(plans)].sessions.append(Session(f"r{r:03d}-p{p}", names[r], start, None))
    times = sorted({t for s in steps for t in (s.measure_from, s.end)})
    for plan in plans:
        plan.snapshots = times
    return Plan(plans, names, max_steps * step_seconds), steps
