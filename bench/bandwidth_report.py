"""The pure parts of bench/bandwidth.py: per-second rates, the per-step summary, table and plot.

A run's result (one per subscriber kind) is a JSON-able dict:

* ``subscriber`` ("synthetic" or "chromium"), ``steps`` (kbit/s), ``schedule`` (when each step
  began, seconds from the start of sampling), ``end``;
* ``rows``: once a second, read in the server's process: ``t``, ``capacity_kbps`` (tbf rate),
  ``estimate_kbps`` (``Link.down_kbps``: the GCC estimate from transport-cc when there is
  one), ``sent_kbps`` (media RTP the server sent the subscriber, before the shaper),
  ``padding_kbps`` (probe padding), ``paused_videos``, ``videos``, ``overusing``, ``rr_loss``,
  and what the shaper did that second: ``link_kbps`` (bytes it let through, IP packets of all
  kinds), ``link_packets``, ``link_dropped``;
* ``received``: per interval between two of the subscriber's own samples: ``t`` (end),
  ``dt``, ``kbps`` (RTP received, headers included), ``expected``, ``lost``, ``drop``,
  ``videos`` (video tracks that received packets, synthetic, or decoded frames, Chromium) and
  ``fps`` (frames decoded per second; Chromium only, else None);
* ``levels``: the ``quality`` levels the subscriber was told (``t``, ``level``);
* ``demand``: the renditions the four publishers were sending, summed (``t``, ``kbps``: the
  renditions' nominal rates from the publishers' stats lines; the encoded clips run above
  the low ones): how the publishers followed the server's REMB.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SETTLE_DROP = 0.10  # a second in which the shaper dropped this share of packets is "not settled"
FIT_SECONDS = 3  # "capped": the server sends at most the capacity for this many seconds in a row
EXPECTED_PARTICIPANTS = 5


# --------------------------------------------------------------------------- per-second rates

def synthetic_received(stats: list[dict[str, Any]], start_wall: float) -> list[dict[str, Any]]:
    """Rates between consecutive ``stats`` lines of one ``sfu.client.run`` participant."""
    out = []
    for a, b in zip(stats, stats[1:], strict=False):
        # bytes and packets count per mid for the whole run; expected and lost per SSRC (they
        # start again when a mid carries another stream)
        octets_before = {t["mid"]: t for t in a["tracks"]}
        loss_before = {(t["mid"], t["ssrc"]): t for t in a["tracks"]}
        expected = lost = octets = flowing = 0
        for t in b["tracks"]:
            old = octets_before.get(t["mid"], {"bytes": 0, "packets": 0})
            octets += max(0, t["bytes"] - old["bytes"])
            if t["kind"] == "video" and t["packets"] > old["packets"]:
                flowing += 1
            old = loss_before.get((t["mid"], t["ssrc"]), {"expected": 0, "lost": 0})
            expected += max(0, t["expected"] - old["expected"])
            lost += max(0, t["lost"] - old["lost"])
        dt = b["wall"] - a["wall"]
        out.append({"t": b["wall"] - start_wall, "dt": dt,
                    "kbps": octets * 8 / 1000 / dt if dt > 0 else 0.0,
                    "expected": expected, "lost": lost,
                    "drop": lost / expected if expected > 0 else 0.0,
                    "videos": flowing, "fps": None})
    return out


def publisher_demand(publishers: list[list[dict[str, Any]]], start_wall: float,
                     times: list[float]) -> list[dict[str, Any]]:
    """At each of ``times``: the sum over publishers of the rendition (kbit/s) each said it
    was sending in its latest stats line by then (a publisher without one yet counts 0)."""
    out = []
    for t in times:
        total = 0.0
        for stats in publishers:
            latest = None
            for s in stats:
                if s["wall"] - start_wall > t:
                    break
                latest = s.get("rendition_kbps")
            total += latest or 0.0
        out.append({"t": t, "kbps": total})
    return out


def presence_gaps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """When the subscriber was not in the call after it first was (``participant`` None in the
    rows), or came back under another participant id (a page that reconnected):
    ``{"from", "to", "rejoined_as"}``; ``to`` and ``rejoined_as`` are None if it never did."""
    gaps: list[dict[str, Any]] = []
    last: str | None = None
    gap_from: float | None = None
    for r in rows:
        pid = r.get("participant")
        if pid is None:
            if last is not None and gap_from is None:
                gap_from = r["t"]
            continue
        if last is not None and (gap_from is not None or pid != last):
            gaps.append({"from": r["t"] if gap_from is None else gap_from, "to": r["t"],
                         "rejoined_as": pid if pid != last else None})
        gap_from = None
        last = pid
    if gap_from is not None:
        gaps.append({"from": gap_from, "to": None, "rejoined_as": None})
    return gaps


def level_changes(samples: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """``(t, level)`` samples -> the samples where the level differs from the one before."""
    out: list[dict[str, Any]] = []
    for t, level in samples:
        if not out or out[-1]["level"] != level:
            out.append({"t": t, "level": level})
    return out


# --------------------------------------------------------------------------- the summary

def _mean(values: list[float | None]) -> float:
    vs = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vs) / len(vs) if vs else float("nan")


def _weighted_kbps(intervals: list[dict[str, Any]]) -> float:
    seconds = sum(s["dt"] for s in intervals)
    return sum(s["kbps"] * s["dt"] for s in intervals) / seconds if seconds > 0 else float("nan")


def _drop(intervals: list[dict[str, Any]]) -> float:
    expected = sum(s["expected"] for s in intervals)
    return sum(s["lost"] for s in intervals) / expected if expected > 0 else float("nan")


def _link_drop(rows: list[dict[str, Any]]) -> float:
    dropped = sum(r.get("link_dropped") or 0 for r in rows)
    total = dropped + sum(r.get("link_packets") or 0 for r in rows)
    return dropped / total if total > 0 else float("nan")


def _second_drop(row: dict[str, Any]) -> float:
    total = (row.get("link_packets") or 0) + (row.get("link_dropped") or 0)
    return (row.get("link_dropped") or 0) / total if total > 0 else 0.0


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per step (see :func:`print_table` for what each figure means)."""
    rows = result["rows"]
    received = result["received"]
    schedule = result["schedule"]
    steps = result["steps"]
    ends = [*schedule[1:], result["end"]]
    table = []
    for i, (capacity, t0, t1) in enumerate(zip(steps, schedule, ends, strict=True)):
        # the first step includes the warm-up: the join happened at t=0 behind that capacity
        lo = 0.0 if i == 0 else t0
        mid = (lo + t1) / 2
        in_step = [r for r in rows if lo <= r["t"] < t1]
        got = [s for s in received if lo < s["t"] <= t1]
        second_half = [s for s in got if s["t"] > mid]
        over = [r["t"] for r in in_step if _second_drop(r) >= SETTLE_DROP]
        settle: float | None
        if not over:
            settle = 0.0
        elif over[-1] >= in_step[-1]["t"]:
            settle = None  # still dropping in the step's last second
        else:
            settle = over[-1] + 1.0 - lo
        down = i == 0 or capacity < steps[i - 1]
        before = [r for r in rows if r["t"] < lo]
        paused_start = (before[-1] if before else in_step[0] if in_step else {}).get("paused_videos")
        cap_s = resume_s = None
        if down:
            sent = [r.get("sent_kbps") for r in in_step]
            for j in range(len(sent)):
                window = sent[j:j + FIT_SECONDS]
                if len(window) == FIT_SECONDS and all(v is not None and v <= capacity
                                                      for v in window):
                    cap_s = in_step[j]["t"] - lo
                    break
        elif paused_start:
            resume_s = next((r["t"] - lo for r in in_step
                             if r.get("paused_videos") is not None
                             and r["paused_videos"] < paused_start), None)
        fps = [s["fps"] for s in second_half if s.get("fps") is not None]
        table.append({
            "capacity_kbps": capacity, "from_s": lo, "to_s": t1, "kind": "down" if down else "up",
            "estimate_kbps": _mean([r["estimate_kbps"] for r in in_step]),
            "estimate_2nd_half_kbps": _mean([r["estimate_kbps"] for r in in_step if r["t"] >= mid]),
            "sent_kbps": _mean([r["sent_kbps"] for r in in_step]),
            "padding_kbps": _mean([r.get("padding_kbps") for r in in_step]),
            "retransmitted_pps": _mean([r.get("retransmitted_pps") for r in in_step]),
            "link_kbps": _mean([r.get("link_kbps") for r in in_step]),
            "received_kbps": _weighted_kbps(got),
            "drop": _drop(got), "drop_2nd_half": _drop(second_half),
            "link_drop": _link_drop(in_step),
            "settle_s": settle, "cap_s": cap_s, "resume_s": resume_s,
            "paused_start": paused_start,
            "paused_end": in_step[-1]["paused_videos"] if in_step else None,
            "videos_end": got[-1]["videos"] if got else None,
            "fps_2nd_half": _mean(list(fps)) if fps else None,
        })
    return table


def _fmt(value: float | None, spec: str = ".0f", none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return format(value, spec)


def format_table(table: list[dict[str, Any]], result: dict[str, Any]) -> str:
    head = (f"{'capacity':>8} {'from-to s':>9} {'estimate':>8} {'est 2h':>6} {'sent':>5} "
            f"{'pad':>4} {'rtx/s':>5} {'link':>5} {'recv':>5} {'drop':>6} {'drop 2h':>7} {'tbf drop':>8} "
            f"{'settle s':>8} {'cap s':>6} {'resume s':>8} {'paused':>6} {'videos':>6} {'fps':>5}")
    lines = [f"subscriber: {result['subscriber']}", head, "-" * len(head)]
    for r in table:
        resume = ("-" if r["kind"] == "down" or not r["paused_start"]
                  else _fmt(r["resume_s"], ".1f", "never"))
        cap = "-" if r["kind"] == "up" else _fmt(r["cap_s"], ".1f", "never")
        paused = f"{_fmt(r['paused_start'], 'd')}>{_fmt(r['paused_end'], 'd')}"
        settle = _fmt(r["settle_s"], ".1f", f">{r['to_s'] - r['from_s']:.0f}")
        lines.append(
            f"{r['capacity_kbps']:8.0f} {r['from_s']:4.0f}-{r['to_s']:<4.0f} "
            f"{_fmt(r['estimate_kbps']):>8} {_fmt(r['estimate_2nd_half_kbps']):>6} "
            f"{_fmt(r['sent_kbps']):>5} {_fmt(r['padding_kbps']):>4} "
            f"{_fmt(r['retransmitted_pps']):>5} {_fmt(r['link_kbps']):>5} "
            f"{_fmt(r['received_kbps']):>5} {_fmt(100 * r['drop'], '5.1f'):>5}% "
            f"{_fmt(100 * r['drop_2nd_half'], '.1f'):>6}% {_fmt(100 * r['link_drop'], '.1f'):>7}% "
            f"{settle:>8} {cap:>6} {resume:>8} {paused:>6} "
            f"{_fmt(r['videos_end'], 'd'):>6} {_fmt(r['fps_2nd_half'], '.1f'):>5}")
    lines.append(
        "(kbit/s. estimate: the server's downlink estimate (Link.down_kbps), mean over the step "
        "and over its 2nd half (2h); sent: media RTP the server sent, pad: probe padding; rtx/s: "
        "packets retransmitted on NACKs per second (server-wide); link: what the "
        "tbf let through (IP); recv: what the subscriber counted (RTP); drop: lost/expected at "
        "the subscriber; tbf drop: packets the shaper dropped; settle s: from the step to the end "
        f"of its last second with >= {100 * SETTLE_DROP:.0f} % dropped by the shaper ('>N': its "
        "last second still was); cap s "
        f"(step down): until the server sent at most the capacity for {FIT_SECONDS} s in a row; "
        "resume s (step up): until it paused fewer videos than at the step; paused: videos paused "
        "for the subscriber at the step > at its end; videos: video tracks "
        + ("decoding" if result["subscriber"] == "chromium" else "receiving")
        + " in the step's last second; fps: frames decoded/s over the 2nd half, all videos)")
    counts = [r["participants"] for r in result["rows"] if r.get("participants") is not None]
    if counts:
        lines.append(("" if min(counts) >= EXPECTED_PARTICIPANTS else
                      "NOT A VALID RUN (someone left or failed, see below): ")
                     + f"participants in the call while sampling: {min(counts)}-{max(counts)} "
                     f"({EXPECTED_PARTICIPANTS} expected: four publishers and the subscriber)")
    levels = [f"t={m['t']:.0f} s {m['level']}" for m in result["levels"]]
    lines.append(f"quality levels told: {', '.join(levels) or 'none'}")
    for g in presence_gaps(result["rows"]):
        back = ("never came back" if g["to"] is None else
                f"back at t={g['to']:.0f} s" + (f" as a new participant ({g['rejoined_as']})"
                                                if g["rejoined_as"] else ""))
        lines.append(f"the subscriber was out of the call from t={g['from']:.0f} s: {back}")
    for e in result.get("call_log") or []:
        lines.append(f"server, t={e['t']:.0f} s: {e['message']}")
    for name, code in (result.get("exited_early") or {}).items():
        lines.append(f"client {name} had exited before the end of sampling (status {code})")
    for e in result.get("client_events") or []:
        detail = " ".join(str(e[k]) for k in ("reason", "error", "code") if k in e)
        lines.append(f"client {e['client']}, t={e['t']:.0f} s: {e['event']} {detail}".rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- the plot

def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """One column per result: rates over time (top), drops and paused videos (middle),
    retransmissions (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(3, n, figsize=(10 * n, 9), sharex="col", sharey="row",
                             gridspec_kw={"height_ratios": [3, 1.3, 0.8]}, squeeze=False)
    for col, result in enumerate(results):
        top, bottom, low = axes[0][col], axes[1][col], axes[2][col]
        rows = result["rows"]
        ts = [r["t"] for r in rows]
        top.step(ts, [r["capacity_kbps"] for r in rows], where="post", color="black", lw=2.2,
                 label="true capacity (tbf rate)")
        top.plot(ts, [_nan(r["estimate_kbps"]) for r in rows], color="tab:red", lw=2,
                 label="server's downlink estimate")
        top.plot(ts, [_nan(r["sent_kbps"]) for r in rows], color="tab:orange", lw=1.4, ls="--",
                 label="media the server sent it")
        top.plot(ts, [_nan(r.get("padding_kbps")) for r in rows], color="tab:brown", lw=0.9,
                 ls=":", label="probe padding sent")
        top.plot(ts, [_nan(r.get("link_kbps")) for r in rows], color="grey", lw=1.2,
                 label="through the shaper (tbf, IP)")
        got = result["received"]
        top.plot([s["t"] for s in got], [s["kbps"] for s in got], color="tab:blue", lw=1.8,
                 label=f"received by the {result['subscriber']} subscriber")
        demand = result.get("demand") or []
        top.plot([d["t"] for d in demand], [d["kbps"] for d in demand], color="tab:cyan",
                 lw=1.2, label="publishers' renditions (nominal kbit/s, summed)")
        for m in result["levels"]:
            top.axvline(m["t"], color="tab:purple", lw=0.8, alpha=0.6)
            top.annotate(f"quality: {m['level']}", (m["t"], 30), rotation=90, fontsize=7,
                         color="tab:purple", va="bottom", ha="right")
        for k, g in enumerate(presence_gaps(rows)):
            for ax in (top, bottom):
                ax.axvspan(g["from"], result["end"] if g["to"] is None else g["to"],
                           color="tab:red", alpha=0.12,
                           label="subscriber out of the call" if k == 0 and ax is top else None)
        for t0 in result["schedule"][1:]:
            for ax in (top, bottom, low):
                ax.axvline(t0, color="grey", lw=0.6, ls=":")
        top.set_xlim(0, result["end"])
        top.set_ylabel("kbit/s")
        top.set_ylim(0, max([1.6 * max(result["steps"])]
                            + [1.05 * d["kbps"] for d in result.get("demand") or []]))
        counts = [r["participants"] for r in rows if r.get("participants") is not None]
        top.set_title(f"{result['subscriber']} subscriber in a 5-person call: its downlink "
                      "stepped with tc tbf"
                      + (f" (NOT VALID: only {min(counts)} participants at times)"
                         if counts and min(counts) < EXPECTED_PARTICIPANTS else ""))
        top.legend(fontsize=7, loc="upper left", ncol=2)
        top.grid(alpha=0.3)
        bottom.plot([s["t"] for s in got], [100 * s["drop"] for s in got], color="tab:blue",
                    label="lost at the subscriber %")
        bottom.plot(ts, [100 * _second_drop(r) for r in rows], color="black", lw=1,
                    label="dropped by the shaper %")
        bottom.set_ylabel("drop %")
        twin = bottom.twinx()
        twin.step(ts, [_nan(r["paused_videos"]) for r in rows], where="post",
                  color="tab:green", label="videos paused by the server")
        twin.step([s["t"] for s in got], [s["videos"] for s in got], where="post",
                  color="tab:olive", ls=":",
                  label="videos " + ("decoding" if result["subscriber"] == "chromium"
                                     else "receiving"))
        twin.set_ylabel("videos", color="tab:green")
        twin.set_ylim(-0.2, 4.5)
        twin.legend(fontsize=7, loc="upper right")
        bottom.legend(fontsize=7, loc="upper left")
        bottom.grid(alpha=0.3)
        low.plot(ts, [_nan(r.get("retransmitted_pps")) for r in rows], color="tab:pink",
                 label="packets retransmitted on NACKs /s (server-wide)")
        low.set_ylabel("packets/s")
        low.set_xlabel("seconds")
        low.legend(fontsize=7, loc="upper left")
        low.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
