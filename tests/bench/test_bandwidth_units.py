"""The pure parts of ``bench.bandwidth``: arguments, per-second rates, the per-step summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from bench import bandwidth, bandwidth_report
from bench.chromium_ns import inbound_rates


def test_defaults_are_the_issue_steps_for_both_subscribers() -> None:
    args = bandwidth.parse_args([])
    assert args.steps == [2000, 700, 400, 1500, 3000]
    assert bandwidth.subscribers(args.subscriber) == ["synthetic", "chromium"]
    args = bandwidth.parse_args(["--subscriber", "chromium", "--steps", "3000,500"])
    assert (bandwidth.subscribers(args.subscriber), args.steps) == (["chromium"], [3000, 500])
    with pytest.raises(argparse.ArgumentTypeError):
        bandwidth.parse_steps("700,-1")


def _row(t: float, capacity: float, estimate: float, sent: float, paused: int,
         dropped: int = 0) -> dict[str, Any]:
    return {"t": t, "capacity_kbps": capacity, "estimate_kbps": estimate, "sent_kbps": sent,
            "padding_kbps": 0.0, "paused_videos": paused, "videos": 4, "link_kbps": sent,
            "link_packets": 100 - dropped, "link_dropped": dropped}


def _result() -> dict[str, Any]:
    # 2000 for 0-10 s, 700 for 10-20 s (capped from 14 s, drops until 15 s), 3000 for 20-30 s
    # (one of two paused videos back at 23 s)
    rows = []
    for t in range(30):
        if t < 10:
            rows.append(_row(t, 2000, 1800, 1500, 0))
        elif t < 20:
            sent = 1400 if t < 14 else 600
            rows.append(_row(t, 700, 650, sent, 0 if t < 12 else 2, dropped=30 if t < 15 else 0))
        else:
            rows.append(_row(t, 3000, 1500, 800, 2 if t < 23 else 1))
    received = [{"t": t + 1.0, "dt": 1.0, "kbps": 500.0, "expected": 100,
                 "lost": 20 if 10 <= t < 15 else 0, "drop": 0.0, "videos": 2, "fps": None}
                for t in range(30)]
    return {"subscriber": "synthetic", "steps": [2000.0, 700.0, 3000.0], "schedule": [0, 10, 20],
            "end": 30, "rows": rows, "received": received, "levels": [{"t": 12, "level": "degraded"}],
            "demand": [{"t": t, "kbps": 4800.0} for t in range(30)]}


def test_summary_times_the_cap_the_settling_and_the_resume() -> None:
    first, down, up = bandwidth_report.summarize(_result())
    assert first["kind"] == "down" and first["cap_s"] == 0 and first["settle_s"] == 0
    assert first["estimate_kbps"] == 1800 and first["link_drop"] == 0
    assert down["kind"] == "down" and down["cap_s"] == 4  # sent <= 700 from t=14
    assert down["settle_s"] == 5  # the shaper dropped 30 % until the end of second 14
    assert down["drop"] == pytest.approx(100 / 1000)
    assert down["drop_2nd_half"] == 0
    assert down["link_drop"] == pytest.approx(150 / 1000)
    assert (down["paused_start"], down["paused_end"]) == (0, 2)
    assert up["kind"] == "up" and up["resume_s"] == 3 and up["cap_s"] is None
    assert up["received_kbps"] == 500
    text = bandwidth_report.format_table([first, down, up], _result())
    assert "never" not in text and "t=12 s degraded" in text


def test_a_step_that_never_fits_or_settles_says_never() -> None:
    result = _result()
    for r in result["rows"][10:20]:
        r.update(sent_kbps=1400, link_dropped=40)
    down = bandwidth_report.summarize(result)[1]
    assert down["cap_s"] is None and down["settle_s"] is None
    assert ">10" in bandwidth_report.format_table([down], result)
    assert "never" in bandwidth_report.format_table([down], result)


def test_synthetic_stats_lines_become_rates() -> None:
    def line(wall: float, octets: int, expected: int, lost: int, packets: int) -> dict[str, Any]:
        return {"wall": wall, "tracks": [
            {"mid": "1", "ssrc": 1, "kind": "video", "bytes": octets, "expected": expected,
             "lost": lost, "packets": packets},
            {"mid": "2", "ssrc": 2, "kind": "video", "bytes": 0, "expected": 0, "lost": 0,
             "packets": 5}]}

    (rate,) = bandwidth_report.synthetic_received(
        [line(100.0, 0, 0, 0, 0), line(102.0, 250_000, 200, 10, 190)], start_wall=90.0)
    assert rate["t"] == 12 and rate["kbps"] == 1000 and rate["drop"] == 0.05
    assert rate["videos"] == 1  # the second track did not move
    # a mid that carries another SSRC: its bytes go on, its loss counters start again
    moved = line(103.0, 375_000, 10, 0, 290)
    moved["tracks"][0]["ssrc"] = 9
    rate = bandwidth_report.synthetic_received([line(102.0, 250_000, 200, 10, 190), moved],
                                               start_wall=90.0)[0]
    assert rate["kbps"] == 1000 and rate["expected"] == 10 and rate["lost"] == 0


def test_chromium_samples_become_rates() -> None:
    a = {"t": 1.0, "inbound": {"video:1": [0, 0, 0, 0], "video:2": [9000, 10, 0, 9],
                               "audio:7": [100_000, 500, 10, 0]}}
    b = {"t": 3.0, "inbound": {"video:1": [400_000, 900, 40, 60], "video:2": [9000, 10, 0, 9],
                               "video:3": [100_000, 60, 0, 0]}}  # audio:7 went away
    rate = inbound_rates(a, b)
    assert rate["kbps"] == 2000 and rate["drop"] == 0.04 and rate["fps"] == 30
    assert rate["videos"] == 1  # video:2 did not move, video:3 decoded nothing yet


def test_demand_sums_the_latest_rendition_of_each_publisher() -> None:
    pubs = [[{"wall": 10.5, "rendition_kbps": 600}, {"wall": 12.5, "rendition_kbps": 1200}],
            [{"wall": 11.5, "rendition_kbps": 300}]]
    demand = bandwidth_report.publisher_demand(pubs, 10.0, [0.0, 1.0, 2.0, 3.0])
    assert [d["kbps"] for d in demand] == [0, 600, 900, 1500]


def test_presence_gaps_find_a_reconnection() -> None:
    ids = [None, "a", "a", None, None, "b", "b", None]
    rows = [{"t": float(t), "participant": pid} for t, pid in enumerate(ids)]
    assert bandwidth_report.presence_gaps(rows) == [
        {"from": 3.0, "to": 5.0, "rejoined_as": "b"}, {"from": 7.0, "to": None, "rejoined_as": None}]
    assert bandwidth_report.presence_gaps(rows[:3]) == []


def test_level_changes_keep_only_changes() -> None:
    changes = bandwidth_report.level_changes([(1, "good"), (2, "good"), (3, "audio_only"),
                                              (4, "audio_only"), (5, "degraded")])
    assert [c["t"] for c in changes] == [1, 3, 5]


def test_a_saved_run_is_drawn_and_tabulated_again(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    chromium = {**_result(), "subscriber": "chromium"}
    saved = tmp_path / "bw.json"
    saved.write_text(json.dumps([_result(), chromium]))
    png = tmp_path / "bw.png"
    assert bandwidth.main(["--from-json", str(saved), "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "subscriber: synthetic" in out and "subscriber: chromium" in out
