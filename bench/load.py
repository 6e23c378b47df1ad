"""Load generator: many synthetic participants against a server, a report at the end.

    python -m bench.load --url http://127.0.0.1:8080 --secret S --clinic demo \\
        --scenario meetings --rooms 4 --people 6 --seconds 60 --json out.json --plot out.png

Scenarios: ``meetings`` (N rooms x P people), ``waiting-rush`` (M patients enter within S seconds,
K staff see them one by one) and ``churn`` (joins and leaves all the time); ``--ramp`` adds rooms
step by step until delivery or join latency fails and prints the capacity found.
Everything is documented in ``docs/load-testing.md``.

The orchestrator (this module) creates the rooms, plans who joins when (``load_plan``), starts the
worker processes (``load_worker``), shows progress, samples CPU and memory (``load_probe``), and
turns the workers' records into the report (``load_report``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import queue
import secrets
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import aiohttp

from bench import load_report as R
from bench.load_plan import Plan, RampStep, plan_churn, plan_meetings, plan_ramp, plan_waiting_rush
from bench.load_probe import ProcSampler, find_listener, is_loopback_url, url_port
from bench.load_worker import Worker, WorkerSpec, quiet_warnings, worker_main
from sfu.auth import ADMIN, ALL_CLINICS, mint_token
from sfu.client.media import ClipParams, load_clip, load_layers, load_renditions
from sfu.client.run import add_adaptation_arguments

NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
           9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}
RAMP_DELIVERY = 0.99
RAMP_JOIN_P95 = 2.0


class LoadError(Exception):
    """A run that cannot start (server unreachable, bad token, bad options)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("server")
    g.add_argument("--url", required=True, help="base URL of the server, http://host:port")
    g.add_argument("--secret", default=os.environ.get("SFU_AUTH_SECRET"),
                   help="the server's auth.secret (env SFU_AUTH_SECRET); tokens are minted locally")
    g.add_argument("--clinic", default="demo", help="clinic to load (created if missing)")
    g.add_argument("--server-pid", type=int,
                   help="sample this process's CPU and RSS (default: found for a loopback URL)")
    g.add_argument("--ice-address", action="append", dest="ice_addresses",
                   help="local address for the participants' ICE candidates (repeatable); default "
                        "127.0.0.1 for a loopback URL, else every non-loopback address")
    g = p.add_argument_group("scenario")
    g.add_argument("--scenario", choices=("meetings", "waiting-rush", "churn"), default="meetings")
    g.add_argument("--rooms", type=int, help="meetings: rooms (default 2); churn: rooms joins "
                   "rotate over (default: enough for --people)")
    g.add_argument("--people", type=int, default=6, help="people per room (meetings, ramp, churn)")
    g.add_argument("--seconds", type=float, help="meetings: length (default 30); churn: how long "
                   "joins keep coming (default 30)")
    g.add_argument("--join-spread", type=float, default=2.0,
                   help="meetings/ramp: joins are spread evenly over this many seconds")
    g.add_argument("--patients", type=int, default=20, help="waiting-rush: patients")
    g.add_argument("--within", type=float, default=10.0,
                   help="waiting-rush: patients enter evenly within this many seconds")
    g.add_argument("--staff", type=int, default=4, help="waiting-rush: staff members")
    g.add_argument("--consult", type=float, default=10.0,
                   help="waiting-rush: seconds per consultation")
    g.add_argument("--rate", type=float, default=1.0, help="churn: joins per second")
    g.add_argument("--stay", type=float, default=10.0, help="churn: seconds each one stays")
    g = p.add_argument_group("ramp")
    g.add_argument("--ramp", action="store_true",
                   help="add rooms of --people step by step until delivery < 99%% or join p95 > 2 s")
    g.add_argument("--step-seconds", type=float, default=20.0, help="ramp: length of a step")
    g.add_argument("--rooms-per-step", type=int, default=1, help="ramp: rooms added per step")
    g.add_argument("--max-steps", type=int, default=40, help="ramp: give up after this many")
    g = p.add_argument_group("media and workers")
    g.add_argument("--video-kbps", type=int, default=500, help="bitrate of the published VP8 clip")
    g.add_argument("--clip-seconds", type=float, default=10.0, help="length of the looped clip")
    add_adaptation_arguments(g, "--video-kbps")
    g.add_argument("--simulcast", action="store_true",
                   help="every participant publishes simulcast (320x180, 640x360, 1280x720 at "
                        "150/500/1500 kbit/s) when the server offers it; the delivered ratio "
                        "then counts audio only")
    g.add_argument("--clip-dir", help="clip cache directory (default $SFU_CLIP_DIR or "
                                      "~/.cache/sfu-clip)")
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes (0: run the participants in this process; default: one "
                        f"per {PEOPLE_PER_WORKER} participants, at most one per core)")
    g.add_argument("--join-timeout", type=float, default=10.0,
                   help="seconds to wait for `joined`, and for media from everybody")
    g.add_argument("--entry-sources", choices=("auto", "off"), default="auto",
                   help="auto: for a 127.0.0.1 URL, spread waiting-area entries over "
                        "127.0.0.2-254 (the server limits entries per address)")
    g.add_argument("--keep-rooms", action="store_true", help="do not delete the rooms afterwards")
    g = p.add_argument_group("output")
    g.add_argument("--json", dest="json_path", help="write the report as JSON to this file")
    g.add_argument("--plot", help="write a PNG plot to this file")
    g.add_argument("--quiet", action="store_true", help="no live progress (the table is printed)")
    return p


PEOPLE_PER_WORKER = 40  # one event loop carries this many synthetic participants comfortably


def default_workers(args: argparse.Namespace) -> int:
    """Enough workers for the people the scenario brings, and no more: each extra process costs
    its own interpreter, timers and sampling, which a handful of participants do not repay."""
    cores = os.cpu_count() or 1
    if args.ramp:
        return min(4, cores)
    if args.scenario == "meetings":
        people = (args.rooms or 2) * args.people
    elif args.scenario == "churn":
        people = int(args.rate * args.stay) + args.people
    else:
        people = 2 * args.patients
    return min(cores, max(1, math.ceil(people / PEOPLE_PER_WORKER)))


def _plan(args: argparse.Namespace, run: str) -> tuple[Plan, list[RampStep]]:
    workers = max(1, args.workers)
    if args.ramp:
        return plan_ramp(run, people=args.people, rooms_per_step=args.rooms_per_step,
                         step_seconds=args.step_seconds, join_spread=args.join_spread,
                         max_steps=args.max_steps, workers=workers)
    if args.scenario == "meetings":
        return plan_meetings(run, rooms=args.rooms or 2, people=args.people,
                             seconds=args.seconds or 30.0, join_spread=args.join_spread,
                             workers=workers), []
    if args.scenario == "churn":
        return plan_churn(run, rate=args.rate, seconds=args.seconds or 30.0, stay=args.stay,
                          rooms=args.rooms, people=args.people, workers=workers), []
    return plan_waiting_rush(patients=args.patients, within=args.within, staff=args.staff,
                             consult=args.consult, workers=workers), []


# -- the server's HTTP API -----------------------------------------------------------------------
async def _api(session: aiohttp.ClientSession, method: str, url: str, token: str,
               body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.request(method, url, json=body, headers=headers) as resp:
        data = await resp.json(content_type=None) if resp.status != 204 else None
        return resp.status, data


async def prepare(args: argparse.Namespace, rooms: list[str]) -> None:
    """Check the server answers and the secret is right; create the clinic (if missing) and the
    rooms the plan needs."""
    base = args.url.rstrip("/")
    admin = mint_token(args.secret, sub="bench-load", role=ADMIN, clinic=args.clinic, ttl=3600)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        try:
            async with session.get(f"{base}/healthz") as resp:
                if resp.status != 200:
                    raise LoadError(f"{base}/healthz answered {resp.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise LoadError(f"cannot reach the server at {base}: {exc}") from exc
        status, body = await _api(session, "GET", f"{base}/v1/clinics/{args.clinic}", admin)
        if status == 401:
            raise LoadError(f"the server refuses our token: {body} (is --secret right?)")
        if status == 404:
            everywhere = mint_token(args.secret, sub="bench-load", role=ADMIN, clinic=ALL_CLINICS)
            status, body = await _api(session, "PUT", f"{base}/v1/clinics/{args.clinic}",
                                      everywhere, {"name": f"Load test {args.clinic}"})
            if status not in (200, 201):
                raise LoadError(f"cannot create clinic {args.clinic}: {status} {body}")
        gate = asyncio.Semaphore(16)

        async def put(room: str) -> None:
            async with gate:
                url = f"{base}/v1/clinics/{args.clinic}/rooms/{room}"
                status, body = await _api(session, "PUT", url, admin, {"name": f"Load {room}"})
                if status not in (200, 201):
                    raise LoadError(f"cannot create room {room}: {status} {body}")

        await asyncio.gather(*(put(r) for r in rooms))


async def cleanup(args: argparse.Namespace, rooms: list[str]) -> None:
    base = args.url.rstrip("/")
    admin = mint_token(args.secret, sub="bench-load", role=ADMIN, clinic=args.clinic, ttl=3600)
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            for room in rooms:
                await _api(session, "DELETE", f"{base}/v1/clinics/{args.clinic}/rooms/{room}",
                           admin)


# -- the run ------------------------------------------------------------------------------------
class Run:
    """Workers, their events, progress, samplers and the ramp's decisions."""

    def __init__(self, args: argparse.Namespace, plan: Plan, steps: list[RampStep],
                 spec: WorkerSpec) -> None:
        self.args = args
        self.plan = plan
        self.steps = steps
        self.spec = spec
        self.events: Any = queue.Queue()
        self.commands: list[Any] = []
        self.processes: list[Any] = []
        self.inline: list[Worker] = []
        self.inline_tasks: list[asyncio.Task[list[Any]]] = []
        self.records: list[dict[str, Any]] = []
        self.done: set[int] = set()
        self.worker_pids: list[int] = []
        self.t0 = 0.0
        self.connected = 0
        self.joined = 0
        self.join_times: deque[float] = deque()
        self.failures: Counter[str] = Counter()
        self.failure_events: list[tuple[float, str, str]] = []
        self.latencies: list[tuple[float, float]] = []  # (join sent, seconds)
        self.snapshots: dict[float, dict[int, list[Any]]] = {}
        self.ramp_results: list[dict[str, Any]] = []
        self.capacity: int | None = None
        self.timeline: list[list[float]] = []
        self.stopped = False

    # -- workers ---------------------------------------------------------------------------------
    async def start(self) -> None:
        n = len(self.plan.workers)
        if self.args.workers == 0:
            clip = load_clip(Path(self.spec.clip_dir) if self.spec.clip_dir else None,
                             self.spec.clip_params)
            self.inline = [Worker(i, self.spec, w, self.events.put, clip)
                           for i, w in enumerate(self.plan.workers)]
            return
        ctx = multiprocessing.get_context("spawn")
        self.events = ctx.Queue()
        for i, worker_plan in enumerate(self.plan.workers):
            commands = ctx.Queue()
            proc = ctx.Process(target=worker_main, name=f"bench-load-{i}", daemon=True,
                               args=(i, self.spec, worker_plan, self.events, commands))
            proc.start()
            self.commands.append(commands)
            self.processes.append(proc)
        up: set[int] = set()
        deadline = time.monotonic() + 120
        while len(up) < n:
            if time.monotonic() > deadline:
                raise LoadError("worker processes did not start in 120 s")
            for event in self._drain():
                if event[0] == "up":
                    up.add(event[1])
                    self.worker_pids.append(event[2])
                elif event[0] == "crash":
                    raise LoadError(f"worker {event[1]} crashed:\n{event[2]}")
            await asyncio.sleep(0.05)

    def go(self) -> None:
        self.t0 = time.monotonic() + 0.5
        for commands in self.commands:
            commands.put(("go", self.t0))
        for worker in self.inline:
            self.inline_tasks.append(asyncio.ensure_future(worker.run(self.t0)))

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for commands in self.commands:
            commands.put(("stop",))
        for worker in self.inline:
            worker.stop.set()

    def _drain(self) -> list[tuple[Any, ...]]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    @property
    def finished(self) -> bool:
        if self.inline:
            return all(t.done() for t in self.inline_tasks)
        return len(self.done) == len(self.processes)

    async def close(self) -> None:
        self.stop()
        for task in self.inline_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                result = await task
                self.records += [_asdict(r) for r in result]
        for proc in self.processes:
            await asyncio.to_thread(proc.join, 10)
            if proc.is_alive():
                proc.terminate()

    # -- events ---------------------------------------------------------------------------------
    def handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "joined":
            self.connected += 1
            self.joined += 1
            self.join_times.append(event[2])
        elif kind == "left":
            self.connected -= 1
        elif kind == "failed":
            _, _, t, code, stage = event
            self.failures[code] += 1
            self.failure_events.append((t, code, stage))
        elif kind == "latency":
            self.latencies.append((event[2], event[3]))
        elif kind == "snapshot":
            self.snapshots.setdefault(event[2], {})[event[1]] = event[3]
        elif kind == "done":
            self.done.add(event[1])
            self.records += event[2]
        elif kind == "crash":
            self.done.add(event[1])
            self.failures["worker_crash"] += 1
            print(f"bench.load: worker {event[1]} crashed:\n{event[2]}", file=sys.stderr)

    def joins_per_second(self, now: float, window: float = 5.0) -> float:
        while self.join_times and self.join_times[0] < now - window:
            self.join_times.popleft()
        return len(self.join_times) / window

    # -- ramp -------------------------------------------------------------------------------------
    def evaluate_ramp(self, server: ProcSampler | None, out: Any) -> None:
        n = len(self.plan.workers)
        while len(self.ramp_results) < len(self.steps) and not self.stopped:
            step = self.steps[len(self.ramp_results)]
            begin = self.snapshots.get(step.measure_from, {})
            end = self.snapshots.get(step.end, {})
            if len(begin) < n or len(end) < n:
                return
            received, expected = R.window_delivery(
                [row for rows in begin.values() for row in rows],
                [row for rows in end.values() for row in rows])
            lo, hi = self.t0 + step.start, self.t0 + step.end
            lat = [s for t, s in self.latencies if lo <= t < hi]
            failed = [c for t, c, stage in self.failure_events if lo <= t < hi]
            planned = self.args.rooms_per_step * self.args.people
            missing = max(0, planned - len(lat) - len(failed))
            p95 = R.percentiles(lat + [float("inf")] * missing, (95,))["p95"]
            cpu = None
            if server is not None:
                values = [c for t, c, _ in server.samples if lo <= t <= hi]
                cpu = sum(values) / len(values) if values else None
            result = {
                "step": step.index + 1, "rooms": step.rooms,
                "participants": step.rooms * self.args.people,
                "delivered_ratio": R.ratio(received, expected), "join_p95": p95,
                "failures": len(failed), "server_cpu_percent": cpu,
            }
            self.ramp_results.append(result)
            ok = (result["delivered_ratio"] is not None
                  and result["delivered_ratio"] >= RAMP_DELIVERY
                  and p95 is not None and p95 <= RAMP_JOIN_P95 and not failed)
            out.write(f"step {result['step']}: {step.rooms} rooms, delivered "
                      f"{R._fmt(result['delivered_ratio'], '', 4)}, join p95 "
                      f"{R._fmt(p95, ' s')}, failures {len(failed)}, server CPU "
                      f"{R._fmt(cpu, ' %', 0)} -> {'ok' if ok else 'limit reached'}")
            if ok:
                self.capacity = step.rooms
                if step.index == len(self.steps) - 1:
                    self.stop()
            else:
                self.stop()


def _asdict(record: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(record)


class _Progress:
    """tqdm when wanted, else nothing; ``write`` prints either way (ramp steps)."""

    def __init__(self, total: int | None, quiet: bool) -> None:
        self.bar: Any = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="join", desc="joins", dynamic_ncols=True,
                            file=sys.stderr)

    def update(self, done: int, postfix: str) -> None:
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.refresh()

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run a load test; returns the report (also printed, and written where asked)."""
    args = build_parser().parse_args(argv)
    if args.workers is None:
        args.workers = default_workers(args)
    quiet_warnings()
    if not args.secret:
        raise LoadError("no secret: pass --secret or set SFU_AUTH_SECRET")
    if args.workers < 0:
        raise LoadError("--workers must be 0 or more")
    args.url = args.url.rstrip("/")
    run_id = secrets.token_hex(3)
    try:
        plan, steps = _plan(args, run_id)
    except ValueError as exc:
        raise LoadError(str(exc)) from exc
    loopback = is_loopback_url(args.url)
    clip_params = ClipParams(video_kbps=args.video_kbps, seconds=args.clip_seconds)
    clip_dir = args.clip_dir or os.environ.get("SFU_CLIP_DIR")
    await asyncio.to_thread(load_clip, Path(clip_dir) if clip_dir else None, clip_params)
    if args.renditions:
        await asyncio.to_thread(load_renditions, Path(clip_dir) if clip_dir else None,
                                clip_params, args.renditions)
    if args.simulcast:  # encoded once here, not by every worker at once
        await asyncio.to_thread(load_layers, Path(clip_dir) if clip_dir else None, clip_params)
    ice = tuple(args.ice_addresses or (["127.0.0.1"] if loopback else []))
    sources: tuple[str, ...] = ()
    if args.entry_sources == "auto" and args.url.split("//", 1)[-1].startswith("127."):
        sources = tuple(f"127.0.0.{i}" for i in range(2, 255))
    spec = WorkerSpec(url=args.url, secret=args.secret, clinic=args.clinic,
                      clip_params=clip_params, clip_dir=clip_dir, join_timeout=args.join_timeout,
                      media_timeout=args.join_timeout, ice_addresses=ice, entry_sources=sources,
                      renditions_kbps=args.renditions, start_kbps=args.start_kbps,
                      remb=args.remb, simulcast=args.simulcast)
    server_pid = args.server_pid or (find_listener(url_port(args.url)) if loopback else None)
    await prepare(args, plan.rooms)

    run = Run(args, plan, steps, spec)
    progress = _Progress(None if args.ramp else plan.participants, args.quiet)
    server = ProcSampler([server_pid]) if server_pid else None
    shared = server_pid == os.getpid()
    try:
        await run.start()
        tool = ProcSampler(run.worker_pids + ([] if shared else [os.getpid()]))
        run.go()
        await asyncio.sleep(max(0.0, run.t0 - time.monotonic()))
        next_sample = time.monotonic()
        last_joined = 0
        while not run.finished:
            for event in run._drain():
                run.handle(event)
            now = time.monotonic()
            if now >= next_sample:
                next_sample += 1.0
                tool.sample(now)
                row = [now - run.t0, run.connected, run.joined - last_joined, 0.0, 0.0,
                       tool.samples[-1][1]]
                last_joined = run.joined
                if server is not None:
                    server.sample(now)
                    row[3], row[4] = server.samples[-1][1], server.samples[-1][2] / 2**20
                run.timeline.append(row)
                errors = " ".join(f"{k}:{v}" for k, v in sorted(run.failures.items()))
                progress.update(run.joined + sum(
                    1 for _, _, stage in run.failure_events if stage == "join"),
                    f"connected={run.connected} joins/s={run.joins_per_second(now):.1f}"
                    + (f" errors {errors}" if errors else ""))
            if steps:
                run.evaluate_ramp(server, progress)
            await asyncio.sleep(0.2)
        end = time.monotonic()
    except (KeyboardInterrupt, asyncio.CancelledError):
        run.stop()
        raise
    finally:
        progress.close()
        await run.close()
        for event in run._drain():
            run.handle(event)
        if not args.keep_rooms:
            await cleanup(args, plan.rooms)

    report = build_report(args, run, server, tool, end, shared, server_pid)
    print(R.render_table(report))
    await asyncio.to_thread(write_outputs, args, report, run)
    return report


def write_outputs(args: argparse.Namespace, report: dict[str, Any], run: Run) -> None:
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))
    if args.plot:
        R.plot(report, [s for _, s in run.latencies], R.stream_kbps(run.records), args.plot)


def build_report(args: argparse.Namespace, run: Run, server: ProcSampler | None,
                 tool: ProcSampler, end: float, shared: bool,
                 server_pid: int | None) -> dict[str, Any]:
    records = run.records
    received, expected = R.delivery(records)
    kbps = R.stream_kbps(records)
    start = run.t0
    people_seconds = R.participant_seconds(records, start, end)
    tool_cpu = tool.cpu_total
    server_cpu = server.cpu_total if server is not None else None
    # The comparison is made in the steady state, from two seconds after the last join to the
    # first leave: the whole run also holds the workers' start-up (importing aiortc, loading the
    # clip) and every handshake, which a server that was already running does not pay.
    joins = [r["joined_at"] for r in records if r.get("joined_at") is not None]
    leaves = [r["left_at"] for r in records if r.get("left_at") is not None]
    steady = (max(joins) + 2.0, min([end, *leaves])) if joins else (start, end)
    if steady[1] - steady[0] >= 3.0 and server is not None:
        cmp_people = R.participant_seconds(records, *steady)
        cmp_tool, cmp_server = tool.cpu_between(*steady), server.cpu_between(*steady)
    else:
        cmp_people, cmp_tool, cmp_server = people_seconds, tool_cpu, server_cpu

    def per_person(cpu: float | None) -> float | None:
        return None if cpu is None or cmp_people <= 0 else 100 * cpu / cmp_people

    tool_pp, server_pp = per_person(cmp_tool), per_person(cmp_server)
    within = None if tool_pp is None or server_pp is None or shared else tool_pp <= server_pp
    waits = [r["waited"] for r in records if r.get("waited") is not None]
    report: dict[str, Any] = {
        "scenario": "ramp" if args.ramp else args.scenario,
        "url": args.url,
        "clinic": args.clinic,
        "options": {k: v for k, v in vars(args).items() if k != "secret"},
        "duration_seconds": end - start,
        "participants": len(records),
        "joined": sum(1 for r in records if r.get("joined_at") is not None),
        "peak_concurrent": R.peak_concurrent(records),
        "nodes": R.by_node(records),  # where the calls were (a cluster spreads them)
        "join_seconds": R.summary(s for _, s in run.latencies),
        "join_definition": R.JOIN_DEFINITION,
        "failures": dict(run.failures),
        "packets_sent": sum(r["samples"][-1][1] for r in records if r.get("samples")),
        # participants that published simulcast layers (--simulcast, and the server offered it)
        "simulcast_publishers": sum(1 for r in records if r.get("simulcast_layers")),
        "packets_received": sum(s[2] for r in records for s in r.get("streams", [])),
        "packets_expected": expected,
        "packets_received_in_pairs": received,
        "delivered_ratio": R.ratio(received, expected),
        "delivery_definition": R.DELIVERY_DEFINITION,
        "stream_kbps": {k: R.summary(v, (5, 50, 95)) for k, v in kbps.items()},
        "wait_seconds": R.summary(waits) if waits else None,
        "server": None,
        "tool": {
            "workers": args.workers, "pids": run.worker_pids, "cpu_seconds": tool_cpu,
            "cpu_percent_mean": 100 * tool_cpu / (end - start) if end > start else None,
            "late_skips": sum(r.get("late_skips", 0) for r in records),
        },
        "cpu_per_participant": {
            "participant_seconds": people_seconds, "tool_percent": tool_pp,
            "window_seconds": [round(steady[0] - start, 1), round(steady[1] - start, 1)],
            "server_percent": server_pp, "tool_within_target": within,
            "server_shares_tool_process": shared,
        },
        "timeline": run.timeline,
    }
    if server is not None and server.samples:
        cpus = [c for _, c, _ in server.samples[1:]] or [0.0]
        rss = [m / 2**20 for _, _, m in server.samples]
        report["server"] = {
            "pid": server_pid, "cpu_seconds": server_cpu,
            "cpu_percent_mean": sum(cpus) / len(cpus), "cpu_percent_max": max(cpus),
            "rss_mb_start": rss[0], "rss_mb_end": rss[-1], "rss_mb_max": max(rss),
            "samples": [[t - start, c, m / 2**20] for t, c, m in server.samples],
        }
    if args.ramp:
        n = run.capacity or 0
        people = NUMBERS.get(args.people, str(args.people))
        hit = run.ramp_results and run.capacity == run.ramp_results[-1]["rooms"]
        verdict = (f"this machine carries {'at least ' if hit else ''}{n} {people}-person "
                   f"consultation{'s' if n != 1 else ''}")
        report["ramp"] = {"steps": run.ramp_results, "capacity": n, "people": args.people,
                          "verdict": verdict}
    return report


def cli(argv: list[str] | None = None) -> int:
    try:
        report = asyncio.run(main(argv))
    except LoadError as exc:
        print(f"bench.load: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(cli())
