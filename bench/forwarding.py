"""Forwarding benchmark: R rooms x P participants for T seconds against a real server process.

    python -m bench.forwarding                       # the default scenarios: 1x6 and 4x3
    python -m bench.forwarding --rooms 4 --people 6 --seconds 20
    python -m bench.forwarding --simulcast           # each scenario also with simulcast publishers

The server runs in its own process (``sfu serve`` with a generated config), so its CPU time is
read from /proc/<pid>/stat alone; the synthetic participants (sfu.client) run in worker
processes. Each scenario prints one row: server CPU %, CPU microseconds per forwarded RTP packet,
forwarded packets/s, delivered/sent ratio, join-to-first-keyframe p50/p95 (and p95 without the tracks
to or from the join that filled a six-person room, which waits for the admission probe: "p95 np"), server RSS,
and the load tool's own CPU.
Figures are medians/ratios from one run: the machine is shared, compare rows of the same run.

``--simulcast`` runs each scenario a second time ("RxP sim") with every participant publishing
simulcast as Chromium does with the web client's 640x480 camera: two layers, q = 320x240 at
150 kbit/s and h = 640x480 at 500 kbit/s (h is the clip of the plain rows, so every receiver on
loopback gets the same stream as there), and prints the ratio of the CPU per forwarded packet:
what receiving (SRTP, statistics, cache) the layer nobody watches and choosing a layer per
receiver cost. Its delivered ratio counts audio (a receiver gets one layer of what is sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECRET = "bench-secret-0123456789abcdef-xyz"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=timeout).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
    return out


def forwarded(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("sfu_rtp_packets_forwarded_total"))


def received_packets(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("sfu_rtp_packets_received_total"))


def start_server(rooms: int, workdir: Path, probe_seconds: float = 3.0,
                 tree: Path | None = None, *, extra: str = "", clinic: str = "bench",
                 log: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``sfu serve`` in its own process; ``tree``: a source tree (a git worktree) to run the
    server from instead of this one (the participants always run this tree's client);
    ``extra``: more TOML tables for the config (not [server], [auth], [logging], [bandwidth]);
    ``log``: a file for the server's log (stderr), else it is discarded."""
    port = free_port()
    room_lines = "".join(f'  [[clinics.rooms]]\n  id = "r{i}"\n  name = "Room {i}"\n' for i in range(rooms))
    config = workdir / "bench.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n[auth]\nsecret = "{SECRET}"\n'
        f'[logging]\nlevel = "WARNING"\n[bandwidth]\nprobe_seconds = {probe_seconds}\n{extra}'
        f'[[clinics]]\nid = "{clinic}"\nname = "Bench clinic"\n{room_lines}')
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree.resolve()), env.get("PYTHONPATH"))
                                            if p)
    err = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([sys.executable, "-m", "sfu.cli", "serve", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err, env=env,
                                cwd=str(tree.resolve()) if tree is not None else None)
    finally:
        if log is not None:
            err.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # a loaded machine imports slowly
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


# --------------------------------------------------------------------------- worker process side

@dataclass
class Assignment:
    room: str
    sub: str
    join_delay: float


def simulcast_layers(clip_dir: Path) -> Any:
    """The two layers Chromium sends from a 640x480 camera (the top one is the plain clip)."""
    from sfu.client.media import ClipParams, LayerSize, load_layers

    return load_layers(clip_dir, ClipParams(),
                       sizes=(LayerSize(320, 240, 150), LayerSize(640, 480, 500)))


def worker_main(url: str, assignments: list[Assignment], marks: tuple[float, float, float],
                clip_dir: str, out: Any, client_twcc: bool = True, simulcast: bool = False) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_worker(url, assignments, marks, clip_dir, client_twcc, simulcast))
    out.put(result)


async def _worker(url: str, assignments: list[Assignment], marks: tuple[float, float, float],
                  clip_dir: str, client_twcc: bool = True,
                  simulcast: bool = False) -> dict[str, Any]:
    from sfu.auth import mint_token
    from sfu.client.client import Client
    from sfu.client.media import ClipParams, load_clip

    clip = load_clip(Path(clip_dir), ClipParams())
    layers = simulcast_layers(Path(clip_dir)) if simulcast else None
    start_at, window_start, window_end = marks
    clients: list[tuple[Assignment, Client]] = []
    errors: list[str] = []

    async def join(a: Assignment) -> None:
        await asyncio.sleep(max(0.0, start_at + a.join_delay - time.time()))
        c = Client(url, mint_token(SECRET, sub=a.sub, role="staff", clinic="bench"), clip=clip,
                   send_twcc=client_twcc, simulcast=layers)
        clients.append((a, c))
        try:
            await c.join({"room": a.room})
        except Exception as exc:  # noqa: BLE001 - reported in the result
            errors.append(f"{a.sub}: {exc}")

    def snapshot() -> dict[str, Any]:
        if simulcast:  # audio only: a receiver gets one of the layers sent
            return {c.participant: {
                "sent": sum(s.packets for s in c.senders if s.kind == "audio"),
                "received": sum(t.packets for t in c.tracks.values() if t.kind == "audio")}
                for _, c in clients if c.participant}
        return {c.participant: {"sent": c.packets_sent(),
                                "received": sum(t.packets for t in c.tracks.values())}
                for _, c in clients if c.participant}

    await asyncio.gather(*(join(a) for a in assignments))
    await asyncio.sleep(max(0.0, window_start - time.time()))
    cpu0 = time.process_time()
    first = snapshot()
    await asyncio.sleep(max(0.0, window_end - time.time()))
    last = snapshot()
    cpu1 = time.process_time()
    info = []
    for a, c in clients:
        tracks = [{"participant": t.participant, "kind": t.kind,
                   "first_keyframe_at": t.first_keyframe_at, "packets": t.packets}
                  for t in c.tracks.values()]
        info.append({"room": a.room, "participant": c.participant, "joined_at": c.joined_at,
                     "tracks": tracks})
    for _, c in clients:
        try:
            await c.leave()
        except Exception:  # noqa: BLE001
            pass
    return {"first": first, "last": last, "clients": info, "errors": errors,
            "cpu": cpu1 - cpu0}


# --------------------------------------------------------------------------- the run

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_scenario(rooms: int, people: int, seconds: float, workers: int, clip_dir: str,
                 warmup: float = 4.0, probe_seconds: float = 3.0, tree: Path | None = None,
                 client_twcc: bool = True, py_spy: str | None = None,
                 simulcast: bool = False) -> dict[str, Any]:
    """One scenario against a fresh server (from ``tree`` if given); ``client_twcc``: the
    participants accept transport-cc and send its feedback (as Chromium does); ``py_spy``: a
    file for py-spy's samples of the server over the measured window (collapsed stacks)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(rooms, Path(tmp), probe_seconds, tree)
        try:
            return _measure(proc, url, rooms, people, seconds, workers, clip_dir, warmup,
                            probe_seconds, client_twcc, py_spy, simulcast)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _measure(proc: subprocess.Popen[bytes], url: str, rooms: int, people: int, seconds: float,
             workers: int, clip_dir: str, warmup: float, probe_seconds: float = 3.0,
             client_twcc: bool = True, py_spy: str | None = None,
             simulcast: bool = False) -> dict[str, Any]:
    assignments = [Assignment(f"r{r}", f"u{r}-{p}", 0.15 * p + 0.05 * r)
                   for r in range(rooms) for p in range(people)]
    joining = max(a.join_delay for a in assignments) + 2.0
    start_at = time.time() + 3.0  # workers import aiortc and load the clip first
    window_start = start_at + joining + warmup
    window_end = window_start + seconds
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = []
    for w in range(workers):
        part = assignments[w::workers]
        p = ctx.Process(target=worker_main, args=(url, part, (start_at, window_start, window_end),
                                                  clip_dir, queue, client_twcc, simulcast))
        p.start()
        procs.append(p)
    time.sleep(max(0.0, window_start - time.time()))
    spy = None
    if py_spy:  # sampled from outside the process: the server's own CPU time is not inflated
        exe = Path(sys.executable).parent / "py-spy"
        spy = subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record", "--nonblocking", "--format", "raw", "--rate", "200",
                                "--duration", str(int(seconds)), "--pid", str(proc.pid),
                                "--output", py_spy], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    start_metrics = scrape(url)
    cpu0, fwd0, t0 = proc_cpu_seconds(proc.pid), forwarded(start_metrics), time.monotonic()
    rss_samples = []
    while time.time() < window_end:
        rss_samples.append(proc_rss_mb(proc.pid))
        time.sleep(min(1.0, max(0.0, window_end - time.time())))
    end_metrics = scrape(url)
    cpu1, fwd1, t1 = proc_cpu_seconds(proc.pid), forwarded(end_metrics), time.monotonic()
    degraded = sum(v for k, v in end_metrics.items() if k.startswith("sfu_quality_changes_total")
                   and "good" not in k)
    if spy is not None:
        spy.wait(timeout=30)
    results = [queue.get(timeout=60 + seconds) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    cpu = cpu1 - cpu0
    fwd = fwd1 - fwd0
    rx = received_packets(end_metrics) - received_packets(start_metrics)
    elapsed = t1 - t0
    # delivered / sent over the window, per room: each publisher's packets go to people-1 others
    sent: dict[str, int] = {}
    received: dict[str, int] = {}
    room_of: dict[str, str] = {}
    joined_at: dict[str, float] = {}
    latencies: list[float] = []
    unprobed: list[float] = []  # tracks neither sent nor received by the join that filled its room
    last_joiner: dict[str, str] = {}
    errors: list[str] = []
    tool_cpu = 0.0
    for res in results:
        errors += res["errors"]
        tool_cpu += res["cpu"]
        for pid, snap in res["last"].items():
            before = res["first"].get(pid, {"sent": 0, "received": 0})
            sent[pid] = snap["sent"] - before["sent"]
            received[pid] = snap["received"] - before["received"]
        for c in res["clients"]:
            room_of[c["participant"]] = c["room"]
            joined_at[c["participant"]] = c["joined_at"]
            other = last_joiner.get(c["room"])
            if other is None or joined_at[other] < c["joined_at"]:
                last_joiner[c["room"]] = c["participant"]
    for res in results:
        for c in res["clients"]:
            for t in c["tracks"]:
                if t["kind"] == "video" and t["first_keyframe_at"] and t["participant"] in joined_at:
                    since = max(c["joined_at"], joined_at[t["participant"]])
                    latencies.append(t["first_keyframe_at"] - since)
                    probed = last_joiner.get(c["room"]) if people >= 6 else None
                    if probed not in (t["participant"], c["participant"]):
                        unprobed.append(t["first_keyframe_at"] - since)
    expected = sum(n * (sum(1 for q in room_of if room_of[q] == room_of[p]) - 1)
                   for p, n in sent.items())
    delivered = sum(received.values()) / expected if expected else float("nan")
    return {
        "scenario": f"{rooms}x{people}" + (" sim" if simulcast else ""),
        "seconds": round(elapsed, 1),
        "server_cpu_percent": 100 * cpu / elapsed,
        "us_per_forwarded_packet": 1e6 * cpu / fwd if fwd else float("nan"),
        # the same CPU over what the publishers sent (which pausing a receiver's video does not
        # change): a second view when the bandwidth controller paused some video
        "us_per_received_packet": 1e6 * cpu / rx if rx else float("nan"),
        "forwarded_pps": fwd / elapsed,
        "delivered_ratio": delivered,
        "keyframe_p50_s": percentile(latencies, 0.5), "keyframe_p95_s": percentile(latencies, 0.95),
        "keyframe_p95_unprobed_s": percentile(unprobed, 0.95), "probe_seconds": probe_seconds,
        "server_rss_mb": max(rss_samples) if rss_samples else proc_rss_mb(proc.pid),
        "tool_cpu_percent": 100 * tool_cpu / elapsed,
        "errors": errors, "quality_downgrades": degraded,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'scenario':>9} {'probe':>5} {'cpu %':>7} {'us/pkt':>7} {'fwd pkt/s':>10} {'delivered':>9} "
            f"{'kf p50 s':>8} {'kf p95 s':>8} {'p95 np':>7} {'rss MB':>7} {'tool cpu %':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['scenario']:>9} {r['probe_seconds']:5.1f} {r['server_cpu_percent']:7.1f} "
              f"{r['us_per_forwarded_packet']:7.1f} "
              f"{r['forwarded_pps']:10.0f} {100 * r['delivered_ratio']:8.2f}% "
              f"{r['keyframe_p50_s']:8.2f} {r['keyframe_p95_s']:8.2f} "
              f"{r['keyframe_p95_unprobed_s']:7.2f} {r['server_rss_mb']:7.1f} "
              f"{r['tool_cpu_percent']:10.1f}")
        if r["quality_downgrades"]:
            print(f"  the bandwidth controller degraded a receiver {r['quality_downgrades']:.0f} time(s)"
                  " (loss seen on loopback: the machine was short of CPU)")
        for e in r["errors"][:5]:
            print(f"  error: {e}")
    print_simulcast_ratios(rows)


def print_simulcast_ratios(rows: list[dict[str, Any]]) -> None:
    """Each simulcast row against the plain row run just before it (same scenario), and the
    median of those ratios per scenario: pairs run back to back see the same machine."""
    ratios: dict[str, list[float]] = {}
    previous: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = r["scenario"].removesuffix(" sim")
        if not r["scenario"].endswith(" sim"):
            previous[name] = r
            continue
        single = previous.get(name)
        if single is not None and single["us_per_forwarded_packet"] > 0:
            ratios.setdefault(name, []).append(
                r["us_per_forwarded_packet"] / single["us_per_forwarded_packet"])
    for name, values in ratios.items():
        print(f"{name}: CPU per forwarded packet, simulcast / one encoding: median x "
              f"{percentile(values, 0.5):.3f} over {len(values)} pair(s) "
              f"({', '.join(f'{v:.3f}' for v in values)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int)
    parser.add_argument("--people", type=int)
    parser.add_argument("--scenarios", default="1x6,4x3", help="comma list of RxP (default 1x6,4x3)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    parser.add_argument("--probe-seconds", type=float, default=3.0,
                        help="bandwidth.probe_seconds of the server (0: no admission probe)")
    parser.add_argument("--tree", type=Path,
                        help="run the server from this source tree (e.g. a git worktree of an older "
                             "commit); the participants run this one (see also bench/compare.py)")
    parser.add_argument("--no-twcc", action="store_true",
                        help="the participants decline transport-cc (no feedback to the server)")
    parser.add_argument("--simulcast", action="store_true",
                        help="run each scenario again with simulcast publishers (two layers) and "
                             "print the ratio of the CPU per forwarded packet")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each scenario (or pair, with --simulcast) this many times")
    parser.add_argument("--py-spy", metavar="PREFIX",
                        help="sample the server with py-spy over each measured window, into "
                             "PREFIX-RxP.txt (collapsed stacks; pip install py-spy)")
    args = parser.parse_args(argv)
    from sfu.client.media import ClipParams, default_clip_dir, load_clip

    clip_dir = default_clip_dir()
    load_clip(clip_dir, ClipParams())  # generate once, before the workers start
    if args.simulcast:
        simulcast_layers(clip_dir)
    if args.rooms or args.people:
        scenarios = [(args.rooms or 1, args.people or 6)]
    else:
        scenarios = [tuple(int(x) for x in re.split("x", s)) for s in args.scenarios.split(",")]
    rows = []
    for rooms, people in [s for s in scenarios for _ in range(max(1, args.repeat))]:
        for simulcast in (False, True) if args.simulcast else (False,):
            label = f"{rooms}x{people}" + ("-sim" if simulcast else "")
            print(f"running {rooms} room(s) x {people} people for {args.seconds:.0f} s"
                  f"{' (simulcast)' if simulcast else ''} ...", flush=True)
            rows.append(run_scenario(rooms, people, args.seconds, args.workers, str(clip_dir),
                                     probe_seconds=args.probe_seconds, tree=args.tree,
                                     client_twcc=not args.no_twcc, simulcast=simulcast,
                                     py_spy=f"{args.py_spy}-{label}.txt" if args.py_spy else None))
    print()
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
