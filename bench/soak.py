"""Soak: consultations that churn for minutes against a server process; does anything grow?

    python -m bench.soak                                  # 20 consultations, 10 minutes
    python -m bench.soak --duration 120 --consultations 4 --warmup 30 --json soak.json

The server runs as a process of its own (``sfu serve``, started as ``bench.forwarding`` starts
it) and the participants in worker processes (``bench.soak_worker``), so the figures sampled are
the server's alone: RSS (VmRSS), open fds, threads, UDP sockets (from /proc) and asyncio tasks,
participants, media endpoints and signaling sockets (from its /metrics). After the warm-up each
series' trend is fitted (median of the first third of the samples against the last third, and a
least-squares slope per minute); once everyone has left, the server must be back at its
baseline. A table and the verdicts are printed; the exit status is 1 when a verdict fails.
Everything is documented in ``docs/load-testing.md``.
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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.forwarding import SECRET, scrape, start_server
from bench.load_probe import read_cpu_rss
from bench.soak_worker import Slot, SoakSpec, worker_main
from sfu.auth import ADMIN, mint_token
from sfu.client.media import ClipParams, load_clip

CLINIC = "soak"
TREE = Path(__file__).resolve().parents[1]  # the server runs this source tree
SERIES = ("rss_mib", "fds", "tasks", "threads", "udp")
LABELS = {"rss_mib": "RSS MiB", "fds": "fds", "tasks": "tasks", "threads": "threads",
          "udp": "UDP sockets"}
# What "flat" allows, per minute of least-squares slope after the warm-up (counts rise and fall
# with the people present at each sample, so a count gets some room for that noise), and how far
# above the baseline a figure may end once everyone has left.
SLOPE_TOLERANCE = {"rss_mib": 1.0, "fds": 1.0, "tasks": 2.0, "threads": 0.5, "udp": 0.5}
BASELINE_TOLERANCE = {"fds": 2, "tasks": 2, "threads": 0, "udp": 0}
MAX_JOIN_FAILURES = 0.05  # more than this share of joins failing: not a soak of a working server
ROWS = ("baseline", "warmup_end", "churn_end", "after")
ROW_NAMES = {"baseline": "baseline (no client)", "warmup_end": "warm-up end",
             "churn_end": "end of churn", "after": "after everyone left"}


class SoakError(Exception):
    """A soak that cannot run (server does not start, a worker crashed on start, bad options)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of churn")
    p.add_argument("--consultations", type=int, default=20,
                   help="consultations going on at once (every 4th, from the 2nd, a meeting "
                        "room of three; the others waiting-area spaces)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=120.0,
                   help="seconds of churn before the trend is fitted")
    p.add_argument("--stay", default="20-60",
                   help="seconds a consultation (or a room member's visit) lasts: MIN-MAX")
    p.add_argument("--workers", type=int, default=2, help="client processes")
    p.add_argument("--seed", type=int, default=1, help="seed of the stays' random lengths")
    p.add_argument("--video-kbps", type=int, default=150, help="bitrate of the published clip")
    p.add_argument("--clip-seconds", type=float, default=5.0, help="length of the looped clip")
    p.add_argument("--clip-dir", help="clip cache (default $SFU_CLIP_DIR or ~/.cache/sfu-clip)")
    p.add_argument("--inactivity-timeout", type=float, default=30.0,
                   help="the server's media.inactivity_timeout")
    p.add_argument("--reconnect-grace", type=float, default=120.0,
                   help="the server's waiting_area.reconnect_grace")
    p.add_argument("--hold", type=float, default=120.0,
                   help="a vanished client the server has not dropped by then is a failure")
    p.add_argument("--settle", type=float, default=180.0,
                   help="after the churn, seconds to wait for the server to drop everyone")
    p.add_argument("--server-log", help="keep the server's log in this file")
    p.add_argument("--json", dest="json_path", help="write the report as JSON to this file")
    return p


def parse_stay(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    try:
        stay = (float(lo), float(hi or lo))
    except ValueError as exc:
        raise SoakError(f"--stay must be MIN-MAX seconds, not {text!r}") from exc
    if not 0 < stay[0] <= stay[1]:
        raise SoakError(f"--stay must be MIN-MAX seconds with 0 < MIN <= MAX, not {text!r}")
    return stay


def plan_slots(consultations: int) -> list[Slot]:
    """Slot 1, 5, 9, ... is a meeting room of three; the others waiting-area consultations."""
    return [Slot(i, f"r{i}" if i % 4 == 1 else None) for i in range(consultations)]


# -- the server's figures ---------------------------------------------------------------------------
def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def udp_inodes(pid: int) -> set[str]:
    """Inodes of the UDP sockets in the process's network namespace (IPv4 and IPv6)."""
    inodes = set()
    for name in ("udp", "udp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9:
                    inodes.add(fields[9])
    return inodes


def read_proc(pid: int) -> dict[str, float]:
    """RSS (MiB), open fds, threads and UDP sockets of ``pid``, from /proc."""
    status = _status(pid)
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed between listing and reading
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    udp = udp_inodes(pid)
    sockets = [link[8:-1] for link in links if link.startswith("socket:[")]
    return {"rss_mib": int(status["VmRSS"].split()[0]) / 1024, "fds": len(links),
            "threads": int(status["Threads"]), "udp": sum(1 for s in sockets if s in udp)}


def read_metrics(url: str) -> dict[str, float]:
    """Tasks, participants, endpoints and signaling sockets from /metrics (NaN if unanswered)."""
    try:
        m = scrape(url, timeout=15)  # a busy shared machine can be slow to answer
    except (OSError, TimeoutError) as exc:  # URLError is an OSError
        print(f"bench.soak: /metrics unanswered: {exc}", file=sys.stderr)
        m = {}
    nan = math.nan
    roles = [v for k, v in m.items() if k.startswith("sfu_participants{")]
    return {"tasks": m.get("sfu_asyncio_tasks", nan),
            "participants": sum(roles) if roles else nan,
            "endpoints": m.get("sfu_media_endpoints", nan),
            "sockets": m.get("sfu_signaling_sockets", nan)}


@dataclass
class Sampler:
    pid: int
    url: str
    t0: float = 0.0
    _cpu: tuple[float, float] | None = None  # (when, CPU seconds) at the last sample

    def sample(self, phase: str) -> dict[str, Any]:
        """/proc first, then /metrics (whose own connection is not counted in the fds)."""
        now = time.monotonic()
        row: dict[str, Any] = {"t": round(now - self.t0, 2), "phase": phase}
        row.update(read_proc(self.pid))
        got = read_cpu_rss(self.pid)
        cpu = got[0] if got is not None else math.nan
        last, self._cpu = self._cpu, (now, cpu)
        row["cpu_percent"] = (100 * (cpu - last[1]) / (now - last[0])
                              if last is not None and now > last[0] else math.nan)
        row.update(read_metrics(self.url))
        return row


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(rows[-1])
    for key in (*SERIES, "participants", "endpoints", "sockets"):
        values = [r[key] for r in rows if not math.isnan(r[key])]
        out[key] = statistics.median(values) if values else math.nan
    return out


# -- the trend ----------------------------------------------------------------------------------------
def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return 60.0 * sum((t - mt) * (v - mv) for t, v in points) / var


def adjusted_slope_per_minute(points: list[tuple[float, float, float]]) -> float:
    """Least-squares ``c`` of value = a + b * load + c * seconds over (seconds, load, value)
    points, per minute: the growth that the load present at each sample does not explain."""
    n = len(points)
    if n < 3:
        return 0.0
    mt, mx, mv = (sum(p[i] for p in points) / n for i in range(3))
    stt = sum((t - mt) ** 2 for t, _, _ in points)
    sxx = sum((x - mx) ** 2 for _, x, _ in points)
    stx = sum((t - mt) * (x - mx) for t, x, _ in points)
    sty = sum((t - mt) * (v - mv) for t, _, v in points)
    sxy = sum((x - mx) * (v - mv) for _, x, v in points)
    det = sxx * stt - stx * stx
    if sxx == 0 or abs(det) < 1e-9 * sxx * stt:  # a constant (or time-bound) load explains nothing
        return slope_per_minute([(t, v) for t, _, v in points])
    return 60.0 * (sxx * sty - stx * sxy) / det


def load_of(sample: dict[str, Any]) -> float:
    """What the server holds at a sample: media endpoints and signaling sockets."""
    return float(sample["endpoints"] + sample["sockets"])


def trend(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    # a sample whose /metrics went unanswered (NaN) says nothing of this series
    samples = [s for s in samples if not math.isnan(s[key]) and not math.isnan(load_of(s))]
    points = [(s["t"], s[key]) for s in samples]
    third = max(1, len(points) // 3)
    first = statistics.median(v for _, v in points[:third])
    last = statistics.median(v for _, v in points[-third:])
    slope = slope_per_minute(points)
    adjusted = adjusted_slope_per_minute([(s["t"], load_of(s), s[key]) for s in samples])
    tolerance = SLOPE_TOLERANCE[key]
    return {"first_third_median": first, "last_third_median": last,
            "slope_per_min": slope, "slope_per_min_at_equal_load": adjusted,
            "tolerance_per_min": tolerance, "flat": adjusted <= tolerance}


def verdicts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, t in report["trend"].items():
        out[f"{key}_flat"] = {"ok": t["flat"], "why": f"slope at equal load "
                              f"{t['slope_per_min_at_equal_load']:+.2f}/min (raw "
                              f"{t['slope_per_min']:+.2f}), at most {t['tolerance_per_min']}/min"}
    base, after = report["rows"]["baseline"], report["rows"]["after"]
    for key, slack in BASELINE_TOLERANCE.items():
        ok = after is not None and after[key] <= base[key] + slack
        got = "no sample" if after is None else f"{after[key]:g}"
        out[f"{key}_released"] = {"ok": ok, "why": f"{got} after everyone left, baseline "
                                  f"{base[key]:g} (+{slack} allowed)"}
    empty = report["emptied_after_seconds"]
    out["everyone_dropped"] = {"ok": empty is not None,
                               "why": "participants, endpoints and signaling sockets at 0 "
                               + (f"{empty:.0f} s after the churn" if empty is not None
                                  else f"not within {report['options']['settle']:g} s")}
    churn = report["churn"]
    not_dropped = churn["counts"].get("not_dropped", 0)
    out["vanished_dropped"] = {"ok": not_dropped == 0 and churn["counts"].get("vanishes", 0) > 0,
                               "why": f"{churn['counts'].get('vanishes', 0)} vanished, "
                               f"{not_dropped} not dropped by the server"}
    joins, failed = churn["joins"], churn["join_failures"]
    out["joins_work"] = {"ok": joins > 0 and failed <= MAX_JOIN_FAILURES * (joins + failed),
                         "why": f"{joins} joins, {failed} failed"}
    log = report["server_log"]
    out["server_log_clean"] = {"ok": log["tracebacks"] == 0,
                               "why": f"{log['tracebacks']} tracebacks, {log['errors']} ERROR lines"}
    return out


# -- the run -----------------------------------------------------------------------------------------
class Workers:
    def __init__(self, n: int, spec: SoakSpec, slots: list[Slot]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.events: Any = ctx.Queue()
        self.commands: list[Any] = []
        self.processes: list[Any] = []
        self.tallies: dict[int, dict[str, Any]] = {}
        self.stopped: set[int] = set()
        self.done: set[int] = set()
        self.crashes: list[str] = []
        for i in range(n):
            commands = ctx.Queue()
            proc = ctx.Process(target=worker_main, name=f"bench-soak-{i}", daemon=True,
                               args=(i, spec, slots[i::n], self.events, commands))
            proc.start()
            self.commands.append(commands)
            self.processes.append(proc)

    def tell(self, *command: Any) -> None:
        for commands in self.commands:
            commands.put(command)

    def poll(self) -> list[tuple[Any, ...]]:
        out = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return out
            kind = event[0]
            if kind in ("tally", "done"):
                self.tallies[event[1]] = event[2]
            if kind == "stopped":
                self.stopped.add(event[1])
            elif kind == "done":
                self.done.add(event[1])
            elif kind == "crash":
                self.done.add(event[1])
                self.stopped.add(event[1])
                self.crashes.append(event[2])
                print(f"bench.soak: worker {event[1]} crashed:\n{event[2]}", file=sys.stderr)
            out.append(event)

    async def wait_for(self, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        n = len(self.processes)
        while True:
            self.poll()
            if (what == "stopped" and len(self.stopped) == n) or \
                    (what == "done" and len(self.done) == n):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not {what} within {timeout:g} s")
            await asyncio.sleep(0.2)

    async def up(self, timeout: float) -> None:
        ups: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ups) < len(self.processes):
            for event in self.poll():
                if event[0] == "up":
                    ups.add(event[1])
            if self.crashes:
                raise SoakError(f"a worker crashed on start:\n{self.crashes[0]}")
            if time.monotonic() > deadline:
                raise SoakError(f"workers did not start within {timeout:g} s")
            await asyncio.sleep(0.1)

    def churn(self) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        detect: list[float] = []
        for tally in self.tallies.values():
            counts.update(tally["counts"])
            detect += tally["detect"]
        failures = {k.split(":", 1)[1]: v for k, v in counts.items()
                    if k.startswith("join_failed:")}
        return {"counts": dict(sorted(counts.items())), "joins": counts["joins"],
                "join_failures": sum(failures.values()), "join_failure_codes": failures,
                "vanish_detect_seconds": _summary(detect),
                "worker_crashes": len(self.crashes)}

    async def close(self) -> None:
        for proc in self.processes:
            await asyncio.to_thread(proc.join, 15)
            if proc.is_alive():
                proc.terminate()
                await asyncio.to_thread(proc.join, 5)


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"count": len(ordered), "p50": statistics.median(ordered), "max": ordered[-1]}


async def end_leftover_spaces(url: str) -> int:
    """End what is left in the waiting area (spaces whose patient left, waiting out the grace)."""
    import aiohttp

    admin = mint_token(SECRET, sub="bench-soak", role=ADMIN, clinic=CLINIC, ttl=600)
    headers = {"Authorization": f"Bearer {admin}"}
    base = f"{url}/v1/clinics/{CLINIC}/waiting-area"
    ended = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        async with http.get(base, headers=headers) as resp:
            body = await resp.json()
        for space in body.get("spaces", []):
            async with http.post(f"{base}/{space['space']}/end", headers=headers) as resp:
                ended += resp.status == 204
    return ended


def scan_log(path: Path) -> dict[str, Any]:
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = text.splitlines()
    tracebacks = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    excerpts = ["\n".join(lines[max(0, i - 1):i + 25]) for i in tracebacks[:3]]
    return {"tracebacks": len(tracebacks), "errors": sum(1 for line in lines if " ERROR " in line
                                                           or '"level": "ERROR"' in line),
            "warnings": sum(1 for line in lines if " WARNING " in line), "excerpts": excerpts}


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    stay = parse_stay(args.stay)
    slots = plan_slots(args.consultations)
    clip_params = ClipParams(video_kbps=args.video_kbps, seconds=args.clip_seconds)
    clip_dir = args.clip_dir or os.environ.get("SFU_CLIP_DIR")
    await asyncio.to_thread(load_clip, Path(clip_dir) if clip_dir else None, clip_params)
    log_path = Path(args.server_log) if args.server_log else workdir / "server.log"
    extra = (f"[limits]\nmedia_per_address = 10000\nmax_spaces_per_clinic = 10000\n"
             f"[media]\ninactivity_timeout = {args.inactivity_timeout}\n"
             f"[waiting_area]\nentry_rate_limit = 100000\n"
             f"reconnect_grace = {args.reconnect_grace}\n")
    rooms = max((int(s.room[1:]) for s in slots if s.room), default=-1) + 1
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 1)
        mark = now

    proc, url = await asyncio.to_thread(start_server, rooms, workdir, 3.0, TREE, extra=extra,
                                        clinic=CLINIC, log=log_path)
    sampler = Sampler(proc.pid, url)
    samples: list[dict[str, Any]] = []
    spec = SoakSpec(url=url, secret=SECRET, clinic=CLINIC, clip_params=clip_params,
                    clip_dir=clip_dir, stay=stay, seed=args.seed, hold=args.hold)
    workers: Workers | None = None
    try:
        # the baseline: a started server that has answered a scrape, before any client
        await asyncio.to_thread(read_metrics, url)
        sampler.t0 = time.monotonic()
        base_rows = []
        for _ in range(3):
            await asyncio.sleep(1.0)
            base_rows.append(await asyncio.to_thread(sampler.sample, "baseline"))
        baseline = median_row(base_rows)
        samples += base_rows
        workers = Workers(max(1, min(args.workers, len(slots))), spec, slots)
        phase("server_start_and_baseline")
        await workers.up(180.0)
        phase("clients_start")
        sampler.t0 = time.monotonic()
        for row in samples:
            row["t"] = -1.0
        workers.tell("go")
        next_at = 0.0
        while True:
            now = time.monotonic() - sampler.t0
            if now >= args.duration:
                break
            if now >= next_at:
                row = await asyncio.to_thread(sampler.sample, "churn")
                samples.append(row)
                next_at += args.interval
                workers.poll()
                counts = workers.churn()["counts"]
                print(f"t={row['t']:6.0f}s cpu={row['cpu_percent']:3.0f}% rss={row['rss_mib']:.1f} MiB fds={row['fds']:.0f} "
                      f"tasks={row['tasks']:.0f} threads={row['threads']:.0f} "
                      f"udp={row['udp']:.0f} participants={row['participants']:.0f} "
                      f"joins={counts.get('joins', 0)} vanishes={counts.get('vanishes', 0)}",
                      file=sys.stderr, flush=True)
                if workers.crashes:
                    raise SoakError(f"a worker crashed:\n{workers.crashes[0]}")
            await asyncio.sleep(min(0.5, max(0.0, next_at - now)))
        churn_end = samples[-1]
        stopped_at = time.monotonic()
        phase("churn")
        workers.tell("stop")
        await workers.wait_for("stopped", 60.0)
        phase("clients_leave")
        leftover = await end_leftover_spaces(url)
        emptied: float | None = None
        while time.monotonic() - stopped_at < args.settle:
            row = await asyncio.to_thread(sampler.sample, "settle")
            samples.append(row)
            if row["participants"] == 0 and row["endpoints"] == 0 and row["sockets"] == 0:
                emptied = time.monotonic() - stopped_at
                break
            await asyncio.sleep(1.0)
        phase("server_drops_everyone")
        workers.tell("release")
        await workers.wait_for("done", 60.0)
        await workers.close()
        phase("clients_exit")
        after_rows = []
        for _ in range(3):
            await asyncio.sleep(1.0)
            after_rows.append(await asyncio.to_thread(sampler.sample, "after"))
        samples += after_rows
        after = median_row(after_rows)
        phase("after_samples")
    finally:
        if workers is not None:
            workers.tell("stop")
            workers.tell("release")
            await workers.close()
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
    post = [s for s in samples if s["phase"] == "churn" and s["t"] >= args.warmup]
    if len(post) < 3:
        raise SoakError(f"only {len(post)} samples after the warm-up: lengthen --duration or "
                        "shorten --warmup or --interval")
    warmup_end = min((s for s in samples if s["phase"] == "churn"),
                     key=lambda s: abs(s["t"] - args.warmup))
    report: dict[str, Any] = {
        "options": {k: v for k, v in vars(args).items()},
        "server_pid": proc.pid,
        "rows": {"baseline": baseline, "warmup_end": warmup_end, "churn_end": churn_end,
                 "after": after},
        "trend": {key: trend(post, key) for key in SERIES},
        "emptied_after_seconds": emptied,
        "phase_seconds": phases,
        "leftover_spaces_ended": leftover,
        "churn": workers.churn(),
        "server_log": {"path": str(log_path) if args.server_log else None, **scan_log(log_path)},
        "samples": samples,
    }
    report["verdicts"] = verdicts(report)
    report["ok"] = all(v["ok"] for v in report["verdicts"].values())
    return report


def render(report: dict[str, Any]) -> str:
    o = report["options"]
    cols = (*SERIES, "participants", "endpoints")
    out = [f"soak: {o['consultations']} consultations, {o['duration']:g} s of churn "
           f"(warm-up {o['warmup']:g} s), a sample every {o['interval']:g} s, server pid "
           f"{report['server_pid']}", ""]
    head = f"{'':24}" + "".join(f"{LABELS.get(c, c):>13}" for c in cols)
    out.append(head)
    for name in ROWS:
        row = report["rows"][name]
        out.append(f"{ROW_NAMES[name]:24}" + "".join(
            f"{row[c]:>13.1f}" if c == "rss_mib" else f"{row[c]:>13.0f}" for c in cols))
    out += ["", f"{'trend after warm-up':24}{'first third':>13}{'last third':>13}"
            f"{'slope/min':>13}{'equal load':>13}{'tolerance':>13}  verdict"]
    for key, t in report["trend"].items():
        out.append(f"{LABELS[key]:24}{t['first_third_median']:>13.1f}"
                   f"{t['last_third_median']:>13.1f}{t['slope_per_min']:>+13.2f}"
                   f"{t['slope_per_min_at_equal_load']:>+13.2f}"
                   f"{t['tolerance_per_min']:>13.1f}  {'flat' if t['flat'] else 'GROWS'}")
    c = report["churn"]
    counts = c["counts"]
    detect = c["vanish_detect_seconds"]
    out += ["", "churn: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in (
        "joins", "leaves", "reloads", "reconnects", "vanishes", "dropped_by_server",
        "not_dropped", "spaces_entered", "spaces_ended", "precalls")),
        f"join failures: {c['join_failures']} {c['join_failure_codes'] or ''}".rstrip(),
        "vanished -> signaling socket closed by the server: "
        + (f"p50 {detect['p50']:.1f} s, max {detect['max']:.1f} s" if detect else "none"),
        "other: " + ", ".join(f"{k} {v}" for k, v in counts.items()
                              if ":" in k and not k.startswith("join_failed:")),
        f"leftover spaces ended at the end: {report['leftover_spaces_ended']}",
        "phases (s): " + ", ".join(f"{k} {v:g}" for k, v in report["phase_seconds"].items()),
        f"server log: {report['server_log']['tracebacks']} tracebacks, "
        f"{report['server_log']['errors']} ERROR lines, "
        f"{report['server_log']['warnings']} WARNING lines", ""]
    for name, v in report["verdicts"].items():
        out.append(f"{'ok  ' if v['ok'] else 'FAIL'} {name}: {v['why']}")
    out.append("")
    out.append("verdict: " + ("PASS" if report["ok"] else "FAIL"))
    for excerpt in report["server_log"]["excerpts"]:
        out += ["", excerpt]
    return "\n".join(out)


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.consultations < 1 or args.duration <= 0 or args.interval <= 0:
        raise SoakError("--consultations, --duration and --interval must be positive")
    with tempfile.TemporaryDirectory(prefix="sfu-soak-") as tmp:
        report = await run(args, Path(tmp))
    print(render(report))
    if args.json_path:
        await asyncio.to_thread(Path(args.json_path).write_text, json.dumps(report, indent=2))
    return report


def cli(argv: list[str] | None = None) -> int:
    try:
        report = asyncio.run(main(argv))
    except SoakError as exc:
        print(f"bench.soak: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(cli())
