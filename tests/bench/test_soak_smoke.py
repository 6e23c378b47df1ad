"""A short ``bench.soak``: a server process, one client process, two consultations for 25 s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import soak

pytestmark = pytest.mark.timeout(180)


async def test_a_short_soak_churns_and_the_server_returns_to_its_baseline(
        clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    report = await soak.main([
        "--duration", "25", "--consultations", "2", "--warmup", "8", "--interval", "1",
        "--stay", "3-6", "--workers", "1", "--inactivity-timeout", "5", "--hold", "40",
        "--settle", "60", "--video-kbps", "500", "--clip-seconds", "5", "--clip-dir", str(clip_dir),
        "--json", str(out)])
    assert json.loads(out.read_text())["verdicts"] == report["verdicts"]

    # the shape: the four rows, a trend per series, the churn, the verdicts
    assert set(report["rows"]) == {"baseline", "warmup_end", "churn_end", "after"}
    for row in report["rows"].values():
        assert set(row) >= {"rss_mib", "fds", "tasks", "threads", "udp", "participants",
                            "endpoints", "sockets"}
    assert set(report["trend"]) == set(soak.SERIES)
    for t in report["trend"].values():
        assert set(t) >= {"first_third_median", "last_third_median", "slope_per_min",
                          "slope_per_min_at_equal_load", "tolerance_per_min", "flat"}
    assert len([s for s in report["samples"] if s["phase"] == "churn"]) >= 20

    # it churned: joins, leaves, reloads, a vanished peer the server dropped on its own
    counts = report["churn"]["counts"]
    assert counts["joins"] >= 6 and counts["leaves"] >= 1 and counts["reloads"] >= 1
    assert counts["spaces_entered"] >= 1 and counts["spaces_ended"] >= 1
    assert counts["vanishes"] >= 1 and counts.get("not_dropped", 0) == 0
    assert counts["dropped_by_server"] == counts["vanishes"]
    assert report["churn"]["join_failures"] == 0
    assert report["rows"]["warmup_end"]["participants"] >= 2

    # and everything came back: no participant, endpoint, socket, task or thread left over
    base, after = report["rows"]["baseline"], report["rows"]["after"]
    assert after["participants"] == after["endpoints"] == after["sockets"] == 0
    assert after["udp"] == base["udp"] == 0
    assert after["fds"] <= base["fds"] + soak.BASELINE_TOLERANCE["fds"]
    assert after["tasks"] <= base["tasks"] + soak.BASELINE_TOLERANCE["tasks"]
    assert after["threads"] == base["threads"]
    for name in ("fds_released", "tasks_released", "threads_released", "udp_released",
                 "everyone_dropped", "vanished_dropped", "joins_work", "server_log_clean"):
        assert report["verdicts"][name]["ok"], (name, report["verdicts"][name])
