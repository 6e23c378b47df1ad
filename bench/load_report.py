"""The numbers of a ``bench.load`` run: from participant records to a report, a table and a plot.

Pure functions over plain data (records are the dicts of :class:`bench.load_worker.Record`), so
they are tested without a server. What each number means is in ``docs/load-testing.md``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

JOIN_DEFINITION = (
    "seconds from the `join` message sent on the open WebSocket to the first VP8 keyframe "
    "received from every participant already in the call (first audio packet for one whose "
    "video is not forwarded); to `joined` when alone"
)
DELIVERY_DEFINITION = (
    "packets received by subscribers / packets their publishers sent while both were in the "
    "call, per (publisher, subscriber) pair, between the first counter sample (each second and "
    "at every join and leave) at which the subscriber had received video (else anything) from "
    "that publisher and the last sample before one of them left"
)

Row = Sequence[Any]


def percentiles(values: Iterable[float], qs: Sequence[int]) -> dict[str, float | None]:
    data = np.asarray([v for v in values if v is not None], dtype=float)
    out: dict[str, float | None] = {}
    for q in qs:
        out[f"p{q}"] = None if data.size == 0 else float(np.percentile(data, q))
    return out


def summary(values: Iterable[float], qs: Sequence[int] = (50, 95, 99)) -> dict[str, Any]:
    data = [v for v in values if v is not None]
    out: dict[str, Any] = {"count": len(data)}
    out.update(percentiles(data, qs))
    out["mean"] = float(np.mean(data)) if data else None
    out["max"] = float(np.max(data)) if data else None
    return out


def delivery(records: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(packets received, packets expected) over every (publisher, subscriber) pair of a call.

    A worker samples all its participants at the same instants, so a pair's counters are compared
    on the samples both have: from the first one at which the subscriber had received something
    from the publisher (video, if any of its video came at all: waiting for the first keyframe is
    join latency, not loss) to the last one both were in the call. A pair with nothing received
    counts from its second common sample (the first may precede the publisher's first packet)."""
    by_call: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("participant") and r.get("samples"):
            by_call[r["call"]].append(r)
    received = expected = 0
    for members in by_call.values():
        for sub in members:
            sub_at = {t: got for t, _sent, got in sub["samples"]}
            for pub in members:
                if pub is sub:
                    continue
                common = [(t, sent, *sub_at[t].get(pub["participant"], (0, 0)))
                          for t, sent, _ in pub["samples"] if t in sub_at]
                if len(common) < 2:
                    continue
                started = ([c for c in common if c[3] > 0] or [c for c in common if c[2] > 0]
                           or common[1:])
                window = started
                if len(window) < 2:
                    continue
                expected += window[-1][1] - window[0][1]
                received += window[-1][2] - window[0][2]
    return received, expected


def window_delivery(start: Sequence[Row], end: Sequence[Row]) -> tuple[int, int]:
    """(received, expected) between two snapshots of (participant, call, sent, {publisher:
    received}); only participants present in both count."""
    before = {r[0]: r for r in start}
    calls: dict[str, list[tuple[Row, Row]]] = defaultdict(list)
    for row in end:
        if row[0] in before:
            calls[row[1]].append((before[row[0]], row))
    received = expected = 0
    for members in calls.values():
        for pub0, pub1 in members:
            sent = pub1[2] - pub0[2]
            for sub0, sub1 in members:
                if sub1[0] == pub1[0]:
                    continue
                expected += sent
                received += _total(sub1[3].get(pub1[0], 0)) - _total(sub0[3].get(pub1[0], 0))
    return received, expected


def _total(value: int | Sequence[int]) -> int:
    return value if isinstance(value, int) else value[0]


def stream_kbps(records: Sequence[dict[str, Any]], min_seconds: float = 1.0) -> dict[str, list[float]]:
    """Receive bitrate of every stream received for at least ``min_seconds``, by kind."""
    out: dict[str, list[float]] = {"video": [], "audio": []}
    for r in records:
        for _pub, kind, _packets, nbytes, first, last in r.get("streams", []):
            if first is None or last is None or last - first < min_seconds:
                continue
            out.setdefault(kind, []).append(nbytes * 8 / 1000 / (last - first))
    return out


def participant_seconds(records: Sequence[dict[str, Any]], start: float, end: float) -> float:
    total = 0.0
    for r in records:
        if r.get("joined_at") is None:
            continue
        a = max(start, r["joined_at"])
        b = min(end, r.get("left_at") or end)
        total += max(0.0, b - a)
    return total


def peak_concurrent(records: Sequence[dict[str, Any]]) -> int:
    edges: list[tuple[float, int]] = []
    for r in records:
        if r.get("joined_at") is not None:
            edges.append((r["joined_at"], 1))
            edges.append((r.get("left_at") or math.inf, -1))
    level = peak = 0
    for _t, d in sorted(edges, key=lambda e: (e[0], e[1])):
        level += d
        peak = max(peak, level)
    return peak


def by_node(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per node a call ended up on (after redirects, in a cluster): the calls it hosted, the
    participants that joined there and the redirects their joins followed."""
    calls: dict[str, set[str]] = defaultdict(set)
    out: dict[str, dict[str, int]] = {}
    for r in records:
        node = r.get("node")
        if node is None or r.get("joined_at") is None:
            continue
        calls[node].add(r.get("call", ""))
        entry = out.setdefault(node, {"calls": 0, "participants": 0, "redirects": 0})
        entry["participants"] += 1
        entry["redirects"] += int(r.get("redirects") or 0)
    for node, entry in out.items():
        entry["calls"] = len(calls[node])
    return dict(sorted(out.items()))


def ratio(received: float, expected: float) -> float | None:
    return None if expected <= 0 else received / expected


# -- presentation --------------------------------------------------------------------------------
def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def render_table(report: dict[str, Any]) -> str:
    j = report["join_seconds"]
    rows: list[tuple[str, str]] = [
        ("scenario", f"{report['scenario']} against {report['url']}"),
        ("duration", _fmt(report["duration_seconds"], " s", 1)),
        ("participants", f"{report['participants']} sessions, {report['joined']} joined, "
                         f"peak {report['peak_concurrent']} at once"),
        ("join latency", f"p50 {_fmt(j['p50'], ' s', 3)}  p95 {_fmt(j['p95'], ' s', 3)}  "
                         f"p99 {_fmt(j['p99'], ' s', 3)}  (n={j['count']})"),
        ("failures", ", ".join(f"{k}: {v}" for k, v in sorted(report["failures"].items()))
         or "none"),
        ("packets", f"sent {report['packets_sent']}, received {report['packets_received']}"),
        ("delivered ratio", f"{_fmt(report['delivered_ratio'], '', 4)} ("
                            f"{report['packets_received_in_pairs']} of "
                            f"{report['packets_expected']} in the measured windows)"),
    ]
    nodes = report.get("nodes") or {}
    if len(nodes) > 1 or any(n["redirects"] for n in nodes.values()):  # a cluster
        rows.append(("calls per node", ", ".join(
            f"{url}: {n['calls']} ({n['participants']} joined, {n['redirects']} redirected)"
            for url, n in nodes.items())))
    for kind in ("video", "audio"):
        k = report["stream_kbps"].get(kind) or {}
        rows.append((f"{kind} kbit/s per stream",
                     f"p5 {_fmt(k.get('p5'), '', 0)}  p50 {_fmt(k.get('p50'), '', 0)}  "
                     f"p95 {_fmt(k.get('p95'), '', 0)}  (n={k.get('count', 0)})"))
    if report.get("wait_seconds"):
        w = report["wait_seconds"]
        rows.append(("patient wait", f"p50 {_fmt(w['p50'], ' s', 1)}  p95 {_fmt(w['p95'], ' s', 1)}"
                                     f"  max {_fmt(w['max'], ' s', 1)}"))
    server = report.get("server")
    if server:
        rows.append(("server", f"pid {server['pid']}: CPU mean {_fmt(server['cpu_percent_mean'], ' %', 0)}"
                               f" max {_fmt(server['cpu_percent_max'], ' %', 0)}, RSS "
                               f"{_fmt(server['rss_mb_start'], '', 0)} -> "
                               f"{_fmt(server['rss_mb_max'], ' MB', 0)} (max)"))
    else:
        rows.append(("server", "not local (pass --server-pid to sample it)"))
    tool = report["tool"]
    rows.append(("tool", f"{tool['workers']} worker(s), CPU mean "
                         f"{_fmt(tool['cpu_percent_mean'], ' %', 0)}, clip frames skipped "
                         f"(late) {tool['late_skips']}"))
    cpp = report["cpu_per_participant"]
    verdict = {True: "tool is not the bottleneck", False: "TOOL USES MORE CPU THAN THE SERVER",
               None: "no comparison"}[cpp["tool_within_target"]]
    window = cpp.get("window_seconds")
    where = f", steady state {window[0]}-{window[1]} s" if window else ""
    rows.append(("CPU per participant", f"tool {_fmt(cpp['tool_percent'], ' %', 2)}  server "
                                        f"{_fmt(cpp['server_percent'], ' %', 2)}  ({verdict}{where})"))
    ramp = report.get("ramp")
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if ramp:
        lines.append("")
        lines.append("step  rooms  people  delivered  join p95  failures  server CPU")
        for s in ramp["steps"]:
            lines.append(f"{s['step']:>4}  {s['rooms']:>5}  {s['participants']:>6}  "
                         f"{_fmt(s['delivered_ratio'], '', 4):>9}  "
                         f"{_fmt(s['join_p95'], ' s', 2):>8}  {s['failures']:>8}  "
                         f"{_fmt(s['server_cpu_percent'], ' %', 0):>10}")
        lines.append(ramp["verdict"])
    return "\n".join(lines)


def plot(report: dict[str, Any], latencies: Sequence[float], kbps: dict[str, list[float]],
         path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = np.asarray(report["timeline"], dtype=float) if report["timeline"] else None
    fig, axes = plt.subplots(3, 2, figsize=(12, 11))
    fig.suptitle(f"bench.load {report['scenario']}: {report['participants']} sessions, "
                 f"delivered {_fmt(report['delivered_ratio'], '', 4)}")
    ax = axes[0][0]
    if timeline is not None:
        ax.plot(timeline[:, 0], timeline[:, 1], label="connected")
        ax.bar(timeline[:, 0], timeline[:, 2], width=0.8, alpha=0.4, color="C1", label="joins/s")
    ax.set(title="participants", xlabel="s")
    ax.legend(loc="upper left")
    ax = axes[0][1]
    if timeline is not None:
        if report.get("server"):
            ax.plot(timeline[:, 0], timeline[:, 3], label="server")
        ax.plot(timeline[:, 0], timeline[:, 5], label="tool (all workers)")
    ax.set(title="CPU (% of one core)", xlabel="s")
    ax.legend(loc="upper left")
    ax = axes[1][0]
    if timeline is not None and report.get("server"):
        ax.plot(timeline[:, 0], timeline[:, 4], color="C2")
    ax.set(title="server RSS (MB)", xlabel="s")
    ax = axes[1][1]
    if latencies:
        ax.hist(latencies, bins=30, color="C0")
        for q, style in (("p50", "--"), ("p95", ":")):
            value = report["join_seconds"][q]
            if value is not None:
                ax.axvline(value, color="k", linestyle=style, label=f"{q} {value:.2f} s")
        ax.legend()
    ax.set(title="join latency", xlabel="s")
    ax = axes[2][0]
    for kind, color in (("video", "C0"), ("audio", "C3")):
        if kbps.get(kind):
            ax.hist(kbps[kind], bins=30, alpha=0.6, color=color, label=kind)
    ax.set(title="receive bitrate per stream", xlabel="kbit/s")
    ax.legend()
    ax = axes[2][1]
    ramp = report.get("ramp")
    if ramp and ramp["steps"]:
        rooms = [s["rooms"] for s in ramp["steps"]]
        ax.plot(rooms, [100 * (s["delivered_ratio"] or 0) for s in ramp["steps"]], "o-",
                label="delivered %")
        ax.set(title="ramp", xlabel="rooms")
        twin = ax.twinx()
        twin.plot(rooms, [min(s["join_p95"] or 0, 10) for s in ramp["steps"]], "s--",
                  color="C1", label="join p95 (s)")
        ax.legend(loc="lower left")
        twin.legend(loc="upper right")
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
