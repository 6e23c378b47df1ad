"""Cluster benchmark: does a call cost the same on one of N workers as on one server?

    python -m bench.cluster                         # 8 rooms x 6 people, 60 s, N = 0, 1, 2, twice
    python -m bench.cluster --seconds 20 --repeat 1 --modes 1,2 --json cluster.json

For each N it starts its own ``redis-server`` (no persistence) and ``sfu serve --workers N
--redis-url ...`` (N = 0: plain ``sfu serve`` with no ``[cluster]``, no Redis: the reference) on
free loopback ports, and drives the same load through the public port every worker shares
(``bench.load --scenario meetings``: a join reaching a worker that does not host its room is
redirected to the one that does). Runs alternate between the N's, back to back. Over the steady
part of each run (every participant joined, until the first one leaves) it measures, from /proc
and the servers' own figures:

- the CPU seconds (utime + stime) of the worker processes (not the supervisor, not Redis, not the
  load tool), per consultation per minute;
- Redis's commands (``INFO stats`` total_commands_processed, less this tool's own ``INFO``), per
  consultation per minute, and the most frequent ones (``INFO commandstats``);
- the rooms each worker hosts (its ``/metrics`` ``sfu_rooms{kind="room"}``, mid-window);
- the delivered ratio (the load tool's report).

A table, the medians per N and the ratio of CPU per consultation (each N against N = 1) are
printed; the exit status is 1 when a verdict fails (rooms not spread evenly, delivery under 99 %,
the ratio over 1.10, no Redis command counted), 2 when a run could not be carried out.
Everything is documented in ``docs/load-testing.md`` ("Cluster").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bench.load_probe import find_listener, read_cpu_rss
from sfu.auth import ADMIN, ALL_CLINICS, mint_token

SECRET = "bench-cluster-secret-0123456789abcdef"
CLINIC = "demo"
TREE = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DELIVERY_MIN = 0.99
RATIO_MAX = 1.10
TOP_COMMANDS = 6
# what else is kept from the servers' /metrics (summed over the nodes), to explain a delivery
# under 99 %: packets dropped and why, videos paused, quality changes, NACKs, the loop's lag
WATCHED = ("sfu_rtp_packets_dropped", "sfu_video_layer_receivers", "sfu_quality_changes",
           "sfu_nack", "sfu_pli", "sfu_rtp_retransmitted", "sfu_event_loop_lag_seconds")
START_TIMEOUT = 90.0  # a loaded machine imports aiortc slowly, twice at once
STOP_TIMEOUT = 40.0  # the supervisor's own bound is drain + close + 2 s per worker


class ClusterBenchError(Exception):
    """A run that could not be carried out (a server that does not start, a load that fails)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--modes", default="0,1,2",
                   help="the N's to run, comma-separated: 0 is plain `sfu serve` (no [cluster], "
                        "no Redis), N >= 1 is `sfu serve --workers N`")
    p.add_argument("--repeat", type=int, default=2,
                   help="runs per N; every round runs each N once, the order reversed every "
                        "other round")
    p.add_argument("--rooms", type=int, default=8, help="meeting rooms (consultations)")
    p.add_argument("--people", type=int, default=6, help="people per room")
    p.add_argument("--seconds", type=float, default=70.0, help="length of each load run")
    p.add_argument("--settle", type=float, default=10.0,
                   help="the window starts this long after the last participant joined (a "
                        "six-person call's downlink estimates take about 10 s to ramp up from "
                        "300 kbit/s: until then videos are reduced or paused)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    p.add_argument("--load-workers", type=int,
                   help="bench.load's --workers (default: its own choice)")
    p.add_argument("--clip-seconds", type=float, default=10.0, help="bench.load's --clip-seconds")
    p.add_argument("--load-args", default="",
                   help="more bench.load options, one string (e.g. \"--renditions off "
                        "--video-kbps 300\")")
    p.add_argument("--clip-dir", help="bench.load's --clip-dir")
    p.add_argument("--log-dir", help="keep every run's server, Redis and load logs and the load "
                                     "reports here (default: a temporary directory, removed)")
    p.add_argument("--json", dest="json_path", help="write the report as JSON to this file")
    return p


def parse_modes(text: str) -> list[int]:
    try:
        modes = [int(m) for m in text.split(",") if m.strip()]
    except ValueError as exc:
        raise ClusterBenchError(f"--modes must be numbers, comma-separated: {text!r}") from exc
    if not modes or any(m < 0 for m in modes) or len(set(modes)) != len(modes):
        raise ClusterBenchError(f"--modes must be distinct numbers >= 0: {text!r}")
    return modes


def schedule(modes: list[int], repeat: int) -> list[tuple[int, int]]:
    """(round, N) in the order run: each round runs every N, every other round backwards, so a
    machine that gets busier (or quieter) over the runs does not favour one N."""
    order = []
    for r in range(repeat):
        order += [(r + 1, n) for n in (modes if r % 2 == 0 else modes[::-1])]
    return order


# -- what a run's samples say (pure) ---------------------------------------------------------------
def steady_window(samples: list[dict[str, Any]], full: int,
                  settle: float) -> tuple[int, int] | None:
    """Indexes of the first and last sample of the steady part: from ``settle`` s after every
    participant (``full``) was first counted by the servers, to the last sample before the count
    fell. Samples whose participants are unknown (a scrape unanswered) are skipped."""
    known = [i for i, s in enumerate(samples) if s["participants"] is not None]
    first_full = next((i for i in known if samples[i]["participants"] >= full), None)
    if first_full is None:
        return None
    since = samples[first_full]["t"] + settle
    start = next((i for i in known if i >= first_full and samples[i]["t"] >= since), None)
    if start is None or samples[start]["participants"] < full:
        return None
    end = start
    for i in known:
        if i <= start:
            continue
        if samples[i]["participants"] < full:
            break
        end = i
    return (start, end) if end > start else None


def redis_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Commands the nodes sent between two ``INFO`` samples (this tool's ``INFO`` left out), the
    most frequent ones, and Redis's CPU seconds."""
    if before is None or after is None:
        return {"commands": None, "top": [], "cpu_seconds": None}
    calls = {k: after["calls"].get(k, 0) - before["calls"].get(k, 0) for k in after["calls"]}
    own = calls.pop("info", 0)
    calls = {k: v for k, v in calls.items() if v > 0}
    top = sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_COMMANDS]
    return {"commands": after["total"] - before["total"] - own, "top": top,
            "cpu_seconds": after["cpu"] - before["cpu"]}


def run_figures(samples: list[dict[str, Any]], *, rooms: int, people: int,
                settle: float) -> dict[str, Any]:
    """CPU, Redis and placement over the steady window of one run."""
    window = steady_window(samples, rooms * people, settle)
    if window is None:
        return {"window": None}
    a, b = samples[window[0]], samples[window[1]]
    seconds = b["t"] - a["t"]
    minutes = seconds / 60
    per_worker = {node: b["cpu"][node] - a["cpu"][node] for node in b["cpu"] if node in a["cpu"]}
    cpu = sum(per_worker.values())
    mid_t = (a["t"] + b["t"]) / 2
    mid = min((s for s in samples[window[0]:window[1] + 1] if s["rooms"] is not None),
              key=lambda s: abs(s["t"] - mid_t), default=None)
    red = redis_delta(a["redis"], b["redis"])
    packets = (b["forwarded"] - a["forwarded"]
               if a.get("forwarded") is not None and b.get("forwarded") is not None else None)

    def per_cm(value: float | None) -> float | None:
        return None if value is None else value / rooms / minutes

    return {
        "window": [round(a["t"], 2), round(b["t"], 2)], "window_seconds": seconds,
        "cpu_seconds": cpu, "cpu_per_consultation_minute": per_cm(cpu),
        # the figure that does not depend on the bitrates the publishers settled at
        "forwarded_per_second": None if packets is None else packets / seconds,
        "cpu_us_per_packet": None if not packets else 1e6 * cpu / packets,
        "worker_cpu_percent": {n: 100 * v / seconds for n, v in sorted(per_worker.items())},
        "rooms_per_worker": dict(sorted(mid["rooms"].items())) if mid is not None else None,
        "participants_per_worker": (dict(sorted(mid["per_node"].items()))
                                    if mid is not None else None),
        "redis_commands": red["commands"],
        "redis_per_consultation_minute": per_cm(red["commands"]),
        "redis_per_second": None if red["commands"] is None else red["commands"] / seconds,
        "redis_top": [[k, v, v / rooms / minutes] for k, v in red["top"]],
        "redis_cpu_seconds": red["cpu_seconds"],
        # counters: their growth over the window; gauges: mid-window
        "server_metrics": _watched(a, b, mid),
    }


def _watched(a: dict[str, Any], b: dict[str, Any], mid: dict[str, Any] | None) -> dict[str, float]:
    if not a.get("watched") or not b.get("watched"):
        return {}
    out = {}
    for k, v in sorted(b["watched"].items()):
        if "_total" in k or "_bucket" in k or k.endswith(("_count", "_sum")):
            out[k] = v - a["watched"].get(k, 0.0)
        elif mid is not None and mid.get("watched"):
            out[k] = mid["watched"].get(k, math.nan)
    return {k: v for k, v in out.items() if v and "_bucket" not in k}


def summarize(runs: list[dict[str, Any]], modes: list[int]) -> dict[str, Any]:
    """Medians per N and each N's CPU per consultation against N = 1's (and N = 1's against
    N = 0's)."""
    per: dict[str, Any] = {}
    for n in modes:
        mine = [r for r in runs if r["n"] == n and r.get("cpu_per_consultation_minute") is not None]
        if not mine:
            continue
        red = [r["redis_per_consultation_minute"] for r in mine
               if r["redis_per_consultation_minute"] is not None]
        delivered = [r["delivered_ratio"] for r in mine if r["delivered_ratio"] is not None]
        us = [r["cpu_us_per_packet"] for r in mine if r.get("cpu_us_per_packet") is not None]
        per[str(n)] = {
            "cpu_us_per_packet": statistics.median(us) if us else None,
            "runs": len(mine),
            "cpu_per_consultation_minute": statistics.median(
                r["cpu_per_consultation_minute"] for r in mine),
            "redis_per_consultation_minute": statistics.median(red) if red else None,
            "delivered_ratio_min": min(delivered) if delivered else None,
        }
    ratios = {}
    base1 = per.get("1", {}).get("cpu_per_consultation_minute")
    for n, figures in per.items():
        if int(n) >= 2 and base1:
            ratios[f"{n}/1"] = figures["cpu_per_consultation_minute"] / base1
    if base1 and "0" in per:
        ratios["1/0"] = base1 / per["0"]["cpu_per_consultation_minute"]
    return {"per_n": per, "cpu_ratio": ratios}


def verdicts(runs: list[dict[str, Any]], summary: dict[str, Any],
             rooms: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    measured = [r for r in runs if r.get("window") is not None]
    out["measured"] = {"ok": len(measured) == len(runs) and bool(runs),
                       "why": f"{len(measured)} of {len(runs)} runs had a steady window"}
    uneven = []
    for r in measured:
        if r["n"] >= 2:
            got = list((r["rooms_per_worker"] or {}).values())
            want = {rooms // r["n"], -(-rooms // r["n"])}
            if len(got) != r["n"] or sum(got) != rooms or not set(got) <= want:
                uneven.append(f"run {r['round']} N={r['n']}: {r['rooms_per_worker']}")
    out["spread_evenly"] = {"ok": not uneven,
                            "why": "; ".join(uneven) or "every worker hosts its share of rooms"}
    low = [f"run {r['round']} N={r['n']}: {r['delivered_ratio']}" for r in runs
           if r["delivered_ratio"] is None or r["delivered_ratio"] < DELIVERY_MIN]
    out["delivery"] = {"ok": not low, "why": "; ".join(low) or f"every run >= {DELIVERY_MIN}"}
    for name, ratio in summary["cpu_ratio"].items():
        if name != "1/0":
            out[f"cpu_ratio_{name}"] = {"ok": ratio <= RATIO_MAX,
                                        "why": f"{ratio:.3f}, at most {RATIO_MAX}"}
    clustered = [r for r in measured if r["n"] >= 1]
    out["redis_counted"] = {"ok": all((r["redis_commands"] or 0) > 0 for r in clustered),
                            "why": ", ".join(f"{r['redis_commands']}" for r in clustered)
                            or "no cluster run"}
    return out


# -- presentation --------------------------------------------------------------------------------
def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def render_table(report: dict[str, Any]) -> str:
    lines = [f"{'run':>3} {'N':>2}  {'rooms per worker':<22} {'delivered':>9} {'window s':>8} "
             f"{'CPU s/cons-min':>14} {'us/packet':>9} {'worker CPU %':<14} "
             f"{'Redis cmds/cons-min':>19}"]
    for r in report["runs"]:
        rooms = ", ".join(f"{k} {v:g}" for k, v in (r.get("rooms_per_worker") or {}).items())
        cpu = " ".join(f"{v:.0f}" for v in (r.get("worker_cpu_percent") or {}).values())
        lines.append(
            f"{r['round']:>3} {r['n']:>2}  {rooms or '-':<22} {_f(r['delivered_ratio'], 4):>9} "
            f"{_f(r.get('window_seconds'), 1):>8} {_f(r.get('cpu_per_consultation_minute'), 3):>14} "
            f"{_f(r.get('cpu_us_per_packet'), 1):>9} {cpu or '-':<14} {_f(r.get('redis_per_consultation_minute'), 1):>19}")
    lines.append("")
    for n, m in report["summary"]["per_n"].items():
        lines.append(f"median N={n}: {_f(m['cpu_per_consultation_minute'], 3)} CPU s per "
                     f"consultation-minute ({_f(m['cpu_us_per_packet'], 1)} us per packet "
                     f"forwarded), {_f(m['redis_per_consultation_minute'], 1)} Redis "
                     f"commands per consultation-minute, delivery >= "
                     f"{_f(m['delivered_ratio_min'], 4)} ({m['runs']} runs)")
    for name, ratio in report["summary"]["cpu_ratio"].items():
        lines.append(f"CPU per consultation, N={name.replace('/', ' / N=')}: {ratio:.3f}")
    tops = [r for r in report["runs"] if r.get("redis_top")]
    if tops:
        last = tops[-1]
        lines.append(f"Redis, run {last['round']} N={last['n']}, per consultation-minute: "
                     + ", ".join(f"{k} {pcm:.1f}" for k, _, pcm in last["redis_top"]))
    lines.append("")
    for name, v in report["verdicts"].items():
        lines.append(f"{name:<18} {'ok' if v['ok'] else 'FAIL':<5} {v['why']}")
    return "\n".join(lines)


# -- one run ---------------------------------------------------------------------------------------
def free_ports(count: int) -> int:
    """A port P with P .. P+count-1 all free on loopback (TCP)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOST, 0))
            base = int(s.getsockname()[1])
        if base + count > 65535:
            continue
        ok = True
        for port in range(base + 1, base + count):
            with socket.socket() as s:
                try:
                    s.bind((HOST, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise ClusterBenchError(f"no {count} consecutive free ports on {HOST}")


def write_config(path: Path, port: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[server]\nhost = "{HOST}"\nport = {port}\ndrain_timeout = 3\n'
        f'[auth]\nsecret = "{SECRET}"\n[logging]\nlevel = "WARNING"\n'
        # every participant comes from 127.0.0.1
        f"[limits]\nmedia_per_address = 1000\nsockets_per_address = 1000\n"
        f'[[clinics]]\nid = "{CLINIC}"\nname = "Demo clinic"\n')


async def _get(session: aiohttp.ClientSession, url: str, token: str | None = None,
               ) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.get(url, headers=headers) as resp:
            return resp.status, await resp.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return 0, ""


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


async def read_redis(client: Any) -> dict[str, Any] | None:
    try:
        info = await client.info("stats", "commandstats", "cpu")
    except (RedisError, OSError):
        return None
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()
             if k.startswith("cmdstat_") and isinstance(v, dict)}
    return {"total": int(info["total_commands_processed"]), "calls": calls,
            "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"])}


@dataclass
class Nodes:
    """The processes measured: node id -> (pid, its own port)."""

    procs: dict[str, tuple[int, int]] = field(default_factory=dict)


async def sample_once(session: aiohttp.ClientSession, nodes: Nodes, redis_client: Any,
                      t0: float) -> dict[str, Any]:
    """/proc first (the scrape's own work is then in the next sample), then each node's /metrics
    and Redis's INFO."""
    t = time.monotonic() - t0
    cpu = {}
    for node, (pid, _) in nodes.procs.items():
        got = read_cpu_rss(pid)
        cpu[node] = got[0] if got is not None else math.nan
    answers = await asyncio.gather(*(_get(session, f"http://{HOST}:{port}/metrics")
                                     for _, port in nodes.procs.values()))
    per_node: dict[str, float] = {}
    rooms: dict[str, float] = {}
    forwarded = 0.0
    watched: dict[str, float] = {}
    for node, (status, text) in zip(nodes.procs, answers, strict=True):
        if status != 200:
            continue
        m = parse_metrics(text)
        per_node[node] = sum(v for k, v in m.items() if k.startswith("sfu_participants{"))
        rooms[node] = m.get('sfu_rooms{kind="room"}', 0.0)
        forwarded += sum(v for k, v in m.items() if k.startswith("sfu_rtp_packets_forwarded_total"))
        for k, v in m.items():
            if k.startswith(WATCHED) and "_created" not in k:
                watched[k] = watched.get(k, 0.0) + v
    complete = len(per_node) == len(nodes.procs)
    return {"t": t, "cpu": cpu, "forwarded": forwarded if complete else None,
            "watched": watched if complete else None,
            "participants": sum(per_node.values()) if complete else None,
            "per_node": per_node if complete else None, "rooms": rooms if complete else None,
            "redis": await read_redis(redis_client) if redis_client is not None else None}


async def _wait_for(what: str, check: Any, timeout: float, proc: Any, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if proc.returncode is not None:
            raise ClusterBenchError(f"{what}: the server exited with {proc.returncode}: "
                                    f"{_tail(log)}")
        if time.monotonic() > deadline:
            raise ClusterBenchError(f"{what} within {timeout:.0f}s: {_tail(log)}")
        await asyncio.sleep(0.2)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


async def _stop(proc: Any, timeout: float) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def start_redis(workdir: Path) -> tuple[Any, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ClusterBenchError("redis-server not found: `make redis` installs Debian's package")
    sock = workdir / "redis.sock"
    proc = await asyncio.create_subprocess_exec(
        binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
        "--logfile", str(workdir / "redis.log"), "--daemonize", "no",
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"unix://{sock}"
    client: Any = aioredis.from_url(url)
    try:
        async def up() -> bool:
            try:
                return bool(await client.ping())
            except (RedisError, OSError):
                return False

        await _wait_for("redis-server did not answer", up, 20, proc, workdir / "redis.log")
    except BaseException:
        await _stop(proc, 5)
        raise
    finally:
        await client.aclose()
    return proc, url


async def run_one(args: argparse.Namespace, n: int, round_: int, workdir: Path) -> dict[str, Any]:
    """One load run against N workers (N = 0: one plain server); its figures."""
    port = free_ports(n + 1)
    config = workdir / "sfu.toml"
    await asyncio.to_thread(write_config, config, port)
    server_log = workdir / "server.log"
    redis_proc, redis_url = (await start_redis(workdir)) if n else (None, "")
    redis_client: Any = aioredis.from_url(redis_url, decode_responses=True) if n else None
    cmd = [sys.executable, "-m", "sfu.cli", "serve", "--config", str(config)]
    if n:
        cmd += ["--workers", str(n), "--redis-url", redis_url]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(TREE), os.environ.get("PYTHONPATH")) if p)}
    env.pop("SFU_AUTH_SECRET", None)
    server: Any = None
    sampler: asyncio.Task[None] | None = None
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    try:
        with server_log.open("wb") as err:
            server = await asyncio.create_subprocess_exec(
                *cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env, cwd=str(TREE))
        own = {f"w{i}": port + 1 + i for i in range(n)} if n else {"server": port}
        admin = mint_token(SECRET, sub="bench-cluster", role=ADMIN, clinic=ALL_CLINICS, ttl=3600)

        async def answering() -> bool:
            got = await asyncio.gather(*(_get(session, f"http://{HOST}:{p}/healthz")
                                         for p in [port, *own.values()]))
            return all(status == 200 for status, _ in got)

        await _wait_for("the server did not answer", answering, START_TIMEOUT, server, server_log)
        if n:
            async def every_node_sees_all() -> bool:  # else a worker places every call on itself
                for p in own.values():
                    status, text = await _get(session, f"http://{HOST}:{p}/v1/cluster", admin)
                    if status != 200 or len(json.loads(text)["nodes"]) != n:
                        return False
                return True

            await _wait_for(f"the {n} workers did not all see each other", every_node_sees_all,
                            30, server, server_log)
        nodes = Nodes()
        for node, p in own.items():
            pid = find_listener(p)
            if pid is None:
                raise ClusterBenchError(f"no process found listening on port {p} ({node})")
            nodes.procs[node] = (pid, p)

        samples: list[dict[str, Any]] = []
        t0 = time.monotonic()

        async def sample() -> None:
            while True:
                samples.append(await sample_once(session, nodes, redis_client, t0))
                await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - t0
                                                               - samples[-1]["t"])))

        sampler = asyncio.ensure_future(sample())
        report_path = workdir / "load.json"
        load_cmd = [sys.executable, "-m", "bench.load", "--url", f"http://{HOST}:{port}",
                    "--secret", SECRET, "--clinic", CLINIC, "--scenario", "meetings",
                    "--rooms", str(args.rooms), "--people", str(args.people),
                    "--seconds", str(args.seconds), "--clip-seconds", str(args.clip_seconds), "--quiet",
                    "--json", str(report_path)]
        if args.load_workers is not None:
            load_cmd += ["--workers", str(args.load_workers)]
        if args.clip_dir:
            load_cmd += ["--clip-dir", args.clip_dir]
        load_cmd += shlex.split(args.load_args)
        with (workdir / "load.log").open("wb") as out:
            load = await asyncio.create_subprocess_exec(
                *load_cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                cwd=str(TREE))
        try:
            code = await asyncio.wait_for(load.wait(), args.seconds + 300)
        except TimeoutError:
            await _stop(load, 10)
            raise ClusterBenchError("the load tool did not finish") from None
        finally:
            if load.returncode is None:
                await _stop(load, 10)
        if not report_path.exists():
            raise ClusterBenchError(f"the load tool exited {code} without a report: "
                                    f"{_tail(workdir / 'load.log')}")
        restarted = [node for node, (pid, _) in nodes.procs.items()
                     if read_cpu_rss(pid) is None]
        if restarted:
            raise ClusterBenchError(f"worker {', '.join(restarted)} died during the run: "
                                    f"{_tail(server_log)}")
    finally:
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        await session.close()
        if server is not None:
            await _stop(server, STOP_TIMEOUT)
        if redis_client is not None:
            await redis_client.aclose()
        if redis_proc is not None:
            await _stop(redis_proc, 5)
    load_report = json.loads(report_path.read_text())
    figures = run_figures(samples, rooms=args.rooms, people=args.people, settle=args.settle)
    return {
        "round": round_, "n": n, **figures,
        "delivered_ratio": load_report.get("delivered_ratio"),
        "failures": load_report.get("failures"),
        "join_p95": (load_report.get("join_seconds") or {}).get("p95"),
        "video_kbps_p50": ((load_report.get("stream_kbps") or {}).get("video") or {}).get("p50"),
        "load_nodes": load_report.get("nodes"),
        "load_exit": code,
        "samples": samples,
    }


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every N ``--repeat`` times; returns the report (also printed, written where asked)."""
    args = build_parser().parse_args(argv)
    modes = parse_modes(args.modes)
    if args.repeat < 1 or args.rooms < 1 or args.people < 1:
        raise ClusterBenchError("--repeat, --rooms and --people must be at least 1")
    keep = args.log_dir is not None
    base = Path(args.log_dir) if keep else Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    base.mkdir(parents=True, exist_ok=True)
    runs = []
    try:
        for round_, n in schedule(modes, args.repeat):
            print(f"bench.cluster: round {round_}, N={n} ...", file=sys.stderr, flush=True)
            run = await run_one(args, n, round_, base / f"run{round_}-n{n}")
            runs.append(run)
            print(f"bench.cluster: round {round_}, N={n}: delivered "
                  f"{_f(run['delivered_ratio'], 4)}, CPU "
                  f"{_f(run.get('cpu_per_consultation_minute'), 3)} s per consultation-minute, "
                  f"rooms {run.get('rooms_per_worker')}", file=sys.stderr, flush=True)
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    summary = summarize(runs, modes)
    report = {
        "options": vars(args), "modes": modes,
        "runs": runs, "summary": summary,
        "verdicts": verdicts(runs, summary, args.rooms),
    }
    print(render_table(report))
    if args.json_path:
        await asyncio.to_thread(Path(args.json_path).write_text, json.dumps(report, indent=2))
    return report


def cli(argv: list[str] | None = None) -> int:
    try:
        report = asyncio.run(main(argv))
    except ClusterBenchError as exc:
        print(f"bench.cluster: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0 if all(v["ok"] for v in report["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(cli())
