"""Bandwidth bench: a five-person call, one participant's downlink stepping, over real shaped links.

    sudo python -m bench.bandwidth                                  # 2000,700,400,1500 kbit/s, 15 s each
    sudo python -m bench.bandwidth --steps 3000,500,1200 --step-seconds 20 --out /tmp/bw.png
    sudo python -m bench.bandwidth --json /tmp/bw.json              # also the per-second samples

Needs root (network namespaces, veth pairs, ``tc qdisc ... tbf``; see bench/netns.py). The
server runs in this process, bound to the lab's server address, so its downlink estimate for
the constrained participant is read directly from the call's ``QualityController`` once a
second. The five participants each run as ``python -m sfu.client.run``: four in the root
namespace (unshaped: the server address is local), one, ``slow``, in a namespace whose veth is
shaped by tbf; every ``--step-seconds`` the bench changes that tbf rate (the true capacity).

Output: a PNG (``--out``, default ``bandwidth.png``) with, over time,

* top: the true capacity (tbf rate), the server's downlink estimate for ``slow``
  (``QualityController`` ``Link.down_kbps``), what the server sent to ``slow`` (its outgoing
  RTP, before the shaper) and what ``slow`` received, plus the received rate of every other
  participant (thin lines) and the ``quality`` levels ``slow`` was told;
* bottom: ``slow``'s drop rate (lost / expected, from the sequence numbers of its received
  tracks, per second) and how many of the four videos the server paused for it;

and a summary table per step: capacity, mean estimate, mean sent and received kbit/s, drop
rate over the step and over its second half, the time from the step to the end of the last
second whose drop was 15 % or more (``settle s``: "never" if the step's last second still was),
and the videos paused for ``slow`` at the end of the step; then the ``quality`` messages.

Rates are RTP bytes (headers included, not UDP/IP/SRTP overhead: about 40 bytes a packet), so
a link saturated at the tbf rate shows ~85-90 % of it received. Figures come from one run on a
shared machine: compare steps of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from bench import netns

SECRET = "bench-secret-0123456789abcdef-xyz"
CLIP_SECONDS = 10.0


def _token(sub: str) -> str:
    from sfu.auth import mint_token

    return mint_token(SECRET, sub=sub, role="staff", clinic="demo")


def _config(address: str) -> Any:
    import dataclasses

    from sfu.auth import AuthSettings
    from sfu.service.config import default_config
    from sfu.service.settings import LoggingSettings
    from sfu.transport.settings import MediaSettings

    cfg = default_config()
    return dataclasses.replace(
        cfg, auth=AuthSettings(secret=SECRET), logging=LoggingSettings(level="WARNING"),
        media=MediaSettings(ice_addresses=[address], inactivity_timeout=15.0))


def _sent_octets(participant: Any) -> int:
    return sum(participant.endpoint.sent_octets().values())


async def run(steps: list[float], step_seconds: float, warmup: float,
              clip_dir: Path) -> dict[str, Any]:
    from sfu.client.media import ClipParams, load_clip
    from sfu.service.server import Server

    load_clip(clip_dir, ClipParams(seconds=CLIP_SECONDS))  # encode once, before the clients
    total = warmup + step_seconds * len(steps)
    with netns.Lab() as lab:
        address = lab.server_address
        server = Server(_config(address))
        await server.start(address, 0)
        url = f"http://{address}:{server.port}"
        procs: list[netns.ClientProcess] = []
        try:
            for i in range(4):
                p = netns.ClientProcess(netns.client_argv(
                    url, _token(f"u{i}"), room="team", seconds=total + 30, ice_address=address,
                    clip_dir=str(clip_dir), clip_seconds=CLIP_SECONDS), f"u{i}")
                procs.append(p)
                await p.start()
                await p.wait_joined_or_refused(60)
            link = lab.add(down_kbit=steps[0])
            slow = netns.ClientProcess(link.exec_argv(netns.client_argv(
                url, _token("slow"), room="team", seconds=total + 30, ice_address=link.ns_addr,
                clip_dir=str(clip_dir), clip_seconds=CLIP_SECONDS)), "slow")
            procs.append(slow)
            await slow.start()
            await slow.wait_joined_or_refused(60)
            for p in procs:
                if p.participant is None:
                    raise RuntimeError(f"{p.name} was not admitted: {p.refused or p.events[-3:]}")
            samples = await _sample(server, link, slow, steps, step_seconds, warmup)
        finally:
            for p in procs:
                with contextlib.suppress(Exception):
                    await p.stop()
            await server.close()
    return {"steps": steps, "step_seconds": step_seconds, "warmup": warmup,
            "samples": samples, "start_wall": samples["start_wall"],
            "clients": {p.name: {"participant": p.participant, "stats": p.stats,
                                 "messages": [{**e["message"], "wall": e["wall"]} for e in p.events
                                              if e["event"] == "message"
                                              and e["message"].get("type") == "quality"]}
                        for p in procs}}


async def _sample(server: Any, link: netns.Link, slow: netns.ClientProcess, steps: list[float],
                  step_seconds: float, warmup: float) -> dict[str, Any]:
    """Once a second: capacity, estimate, sent kbit/s and paused videos for ``slow``."""
    (call,) = server.calls.by_key.values()
    start_wall = time.time()
    rows: list[dict[str, Any]] = []
    prev: tuple[float, int] | None = None
    step = 0
    schedule = [warmup + i * step_seconds for i in range(len(steps))]
    end = warmup + step_seconds * len(steps)
    while True:
        elapsed = time.time() - start_wall
        if elapsed >= end:
            break
        while step + 1 < len(steps) and elapsed >= schedule[step + 1]:
            step += 1
            link.set_downlink(steps[step])
            print(f"  t={elapsed:5.1f} s: downlink -> {steps[step]:.0f} kbit/s", flush=True)
        participant = call.participants.get(slow.participant)
        now = time.monotonic()
        octets = _sent_octets(participant) if participant is not None else 0
        sent_kbps = None
        if prev is not None and now > prev[0]:
            sent_kbps = (octets - prev[1]) * 8 / 1000 / (now - prev[0])
        prev = (now, octets)
        estimate = participant.link.down_kbps(now) if participant is not None else None
        paused = (sum(1 for c in participant.endpoint.consumers()
                      if c.paused and c.producer.kind == "video")
                  if participant is not None else None)
        rows.append({"t": round(elapsed, 2), "wall": time.time(), "capacity_kbps": link.down_kbit,
                     "estimate_kbps": estimate, "sent_kbps": sent_kbps, "paused_videos": paused,
                     "rr_loss": None if participant is None else participant.link.loss,
                     "qdisc": link.qdisc_stats()})
        await asyncio.sleep(max(0.0, 1.0 - (time.time() - start_wall - elapsed)))
    return {"start_wall": start_wall, "rows": rows, "schedule": schedule}


# --------------------------------------------------------------------------- analysis and output

def _per_second(stats: list[dict[str, Any]], start_wall: float) -> list[dict[str, float]]:
    """Received kbit/s and drop rate between consecutive stats lines of one client."""
    out = []
    for a, b in zip(stats, stats[1:], strict=False):
        before = {(t["mid"], t["ssrc"]): t for t in a["tracks"]}
        expected = lost = octets = 0
        for t in b["tracks"]:
            old = before.get((t["mid"], t["ssrc"]), {"expected": 0, "lost": 0, "bytes": 0})
            expected += t["expected"] - old["expected"]
            lost += t["lost"] - old["lost"]
            octets += t["bytes"] - old["bytes"]
        dt = b["wall"] - a["wall"]
        out.append({"t": b["wall"] - start_wall, "kbps": octets * 8 / 1000 / dt if dt > 0 else 0.0,
                    "drop": lost / expected if expected > 0 else 0.0,
                    "expected": expected, "lost": lost})
    return out


def _mean(values: list[float | None]) -> float:
    vs = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vs) / len(vs) if vs else float("nan")


def summarize(result: dict[str, Any], threshold: float = 0.15) -> list[dict[str, Any]]:
    start = result["start_wall"]
    rows = result["samples"]["rows"]
    slow = _per_second(result["clients"]["slow"]["stats"], start)
    schedule = result["samples"]["schedule"]
    ends = schedule[1:] + [result["warmup"] + result["step_seconds"] * len(result["steps"])]
    table = []
    for i, (capacity, t0, t1) in enumerate(zip(result["steps"], schedule, ends, strict=True)):
        # the first step includes the warm-up: the join happened at t=0 behind that capacity
        lo = 0.0 if i == 0 else t0
        in_step = [r for r in rows if lo <= r["t"] < t1]
        got = [s for s in slow if lo < s["t"] <= t1]
        second_half = [s for s in got if s["t"] > (lo + t1) / 2]
        # settled: from the step to the end of its last second with drop >= threshold (0 if none);
        # None when the step's last second is still over it
        over = [s["t"] for s in got if s["expected"] and s["drop"] >= threshold]
        if not over:
            adapt: float | None = 0.0
        elif got and over[-1] >= got[-1]["t"]:
            adapt = None
        else:
            adapt = over[-1] - lo
        table.append({
            "capacity_kbps": capacity, "from_s": lo, "to_s": t1,
            "estimate_kbps": _mean([r["estimate_kbps"] for r in in_step]),
            "sent_kbps": _mean([r["sent_kbps"] for r in in_step]),
            "received_kbps": _mean([s["kbps"] for s in got]),
            "drop": (sum(s["lost"] for s in got) / max(1, sum(s["expected"] for s in got))),
            "drop_last_half": (sum(s["lost"] for s in second_half)
                               / max(1, sum(s["expected"] for s in second_half))),
            "adapt_s": adapt,
            "paused_at_end": in_step[-1]["paused_videos"] if in_step else None,
        })
    return table


def print_table(table: list[dict[str, Any]], result: dict[str, Any]) -> None:
    head = (f"{'capacity':>8} {'from-to s':>9} {'estimate':>8} {'sent':>6} {'recv':>6} "
            f"{'drop':>6} {'drop 2nd half':>13} {'settle s':>8} {'paused':>6}")
    print(head)
    print("-" * len(head))
    for r in table:
        adapt = "never" if r["adapt_s"] is None else f"{r['adapt_s']:.1f}"
        print(f"{r['capacity_kbps']:8.0f} {r['from_s']:4.0f}-{r['to_s']:<4.0f} "
              f"{r['estimate_kbps']:8.0f} {r['sent_kbps']:6.0f} {r['received_kbps']:6.0f} "
              f"{100 * r['drop']:5.1f}% {100 * r['drop_last_half']:12.1f}% {adapt:>8} "
              f"{'-' if r['paused_at_end'] is None else r['paused_at_end']:>6}")
    print("(kbit/s; drop = lost/expected on slow's received tracks; settle s = from the step to "
          "the end of its last second with drop >= 15 %; paused = videos paused for slow at the end)")
    start = result["start_wall"]
    levels = [f"t={m['wall'] - start:.0f} s {m['level']} ({m.get('downlink_kbps')} kbit/s)"
              for m in result["clients"]["slow"]["messages"]]
    print(f"quality messages to slow: {', '.join(levels) or 'none'}")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = result["start_wall"]
    rows = result["samples"]["rows"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.3]})
    ts = [r["t"] for r in rows]
    top.step(ts, [r["capacity_kbps"] for r in rows], where="post", color="black", lw=2.2,
             label="true capacity (tbf rate)")
    top.plot(ts, [r["estimate_kbps"] if r["estimate_kbps"] is not None else math.nan
                  for r in rows], color="tab:red", lw=2, label="server's downlink estimate")
    top.plot(ts, [r["sent_kbps"] if r["sent_kbps"] is not None else math.nan for r in rows],
             color="tab:orange", lw=1.4, ls="--", label="forwarded to slow (server sent)")
    clients = result["clients"]
    slow = _per_second(clients["slow"]["stats"], start)
    top.plot([s["t"] for s in slow], [s["kbps"] for s in slow], color="tab:blue", lw=1.8,
             label="received by slow")
    for name, info in clients.items():
        if name == "slow":
            continue
        per = _per_second(info["stats"], start)
        top.plot([s["t"] for s in per], [s["kbps"] for s in per], lw=0.8, alpha=0.6,
                 label=f"received by {name} (unconstrained)")
    for m in clients["slow"]["messages"]:
        t = m["wall"] - start
        top.axvline(t, color="tab:purple", lw=0.8, alpha=0.6)
        top.annotate(f"quality: {m['level']}", (t, 30), rotation=90, fontsize=7,
                     color="tab:purple", va="bottom", ha="right")
    for t0 in result["samples"]["schedule"][1:]:
        for ax in (top, bottom):
            ax.axvline(t0, color="grey", lw=0.6, ls=":")
    top.set_ylabel("kbit/s")
    top.set_title("5-person call: one participant's downlink stepped with tc tbf")
    top.legend(fontsize=7, loc="upper right", ncol=2)
    top.grid(alpha=0.3)
    bottom.plot([s["t"] for s in slow], [100 * s["drop"] for s in slow], color="tab:blue",
                label="slow's drop rate %")
    bottom.axhline(15, color="tab:blue", lw=0.6, ls="--")
    bottom.set_ylabel("drop %")
    twin = bottom.twinx()
    twin.step(ts, [r["paused_videos"] if r["paused_videos"] is not None else math.nan
                   for r in rows], where="post", color="tab:green", label="videos paused")
    twin.set_ylabel("videos paused", color="tab:green")
    twin.set_ylim(-0.2, 4.5)
    bottom.set_xlabel("seconds")
    bottom.legend(fontsize=7, loc="upper left")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="2000,700,400,1500",
                        help="downlink capacities in kbit/s, comma separated")
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="extra seconds at the first capacity before stepping")
    parser.add_argument("--out", default="bandwidth.png", help="where to write the PNG")
    parser.add_argument("--json", help="also write the samples and the table as JSON here")
    args = parser.parse_args(argv)
    ok, why = netns.available()
    if not ok:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    from sfu.client.media import default_clip_dir

    steps = [float(s) for s in args.steps.split(",") if s.strip()]
    print(f"running: downlink {' -> '.join(f'{s:.0f}' for s in steps)} kbit/s, "
          f"{args.step_seconds:.0f} s each (+{args.warmup:.0f} s warm-up) ...", flush=True)
    result = asyncio.run(run(steps, args.step_seconds, args.warmup, default_clip_dir()))
    table = summarize(result)
    plot(result, Path(args.out))
    print()
    print_table(table, result)
    print(f"plot: {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps({"table": table, **result}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
