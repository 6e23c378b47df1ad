"""A short ``bench.cluster``: one and two workers (a real redis-server, real worker processes),
two rooms of three for a few seconds each, through the port the workers share."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import cluster

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("redis-server") is None,
                       reason="redis-server is not installed (`make redis`)"),
]


async def test_two_workers_each_host_one_of_two_rooms_and_deliver(
        clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    report = await cluster.main([
        "--modes", "1,2", "--repeat", "1", "--rooms", "2", "--people", "3", "--seconds", "8",
        "--settle", "2", "--load-workers", "1", "--clip-seconds", "5", "--clip-dir", str(clip_dir),
        "--load-args", "--renditions off",  # the session's clip as it is: nothing to encode
        "--json", str(out)])
    assert json.loads(out.read_text())["summary"] == report["summary"]

    # the shape: a run per N, in the order asked, each measured over a steady window
    assert [(r["round"], r["n"]) for r in report["runs"]] == [(1, 1), (1, 2)]
    for run in report["runs"]:
        assert set(run) >= {"window", "window_seconds", "cpu_seconds",
                            "cpu_per_consultation_minute", "worker_cpu_percent",
                            "rooms_per_worker", "redis_commands", "redis_per_consultation_minute",
                            "redis_top", "delivered_ratio", "failures", "samples"}
        assert run["window"] is not None and run["window_seconds"] >= 2
        assert run["failures"] == {}
        assert run["delivered_ratio"] >= 0.95
        assert run["cpu_per_consultation_minute"] > 0
        assert run["redis_commands"] > 0 and run["redis_top"]
    assert set(report["summary"]["per_n"]) == {"1", "2"}
    assert report["summary"]["cpu_ratio"]["2/1"] > 0
    assert set(report["verdicts"]) >= {"measured", "spread_evenly", "delivery", "cpu_ratio_2/1",
                                       "redis_counted"}

    # the figures that hold on a noisy machine: one worker hosts both rooms, two host one each
    one, two = report["runs"]
    assert one["rooms_per_worker"] == {"w0": 2}
    assert two["rooms_per_worker"] == {"w0": 1, "w1": 1}
    assert two["participants_per_worker"] == {"w0": 3, "w1": 3}
    assert set(two["worker_cpu_percent"]) == {"w0", "w1"}
    assert report["verdicts"]["spread_evenly"]["ok"]
    assert report["verdicts"]["redis_counted"]["ok"]
    assert report["verdicts"]["measured"]["ok"]
