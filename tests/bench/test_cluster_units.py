"""``bench.cluster``'s arithmetic on made-up samples: the window, Redis's deltas, the summary."""

from __future__ import annotations

from typing import Any

import pytest

from bench import cluster


def sample(t: float, participants: int | None, cpu: dict[str, float],
           total: int = 0, info: int = 0, rooms: dict[str, float] | None = None) -> dict[str, Any]:
    return {"t": t, "cpu": cpu, "participants": participants,
            "per_node": None if participants is None else {n: 0.0 for n in cpu},
            "rooms": rooms if participants is not None else None,
            "redis": {"total": total, "calls": {"info": info, "set": total - info},
                      "cpu": t / 100}}


def test_schedule_alternates_and_reverses_every_other_round() -> None:
    assert cluster.schedule([0, 1, 2], 2) == [(1, 0), (1, 1), (1, 2), (2, 2), (2, 1), (2, 0)]


def test_steady_window_starts_after_the_settle_and_ends_before_the_first_leave() -> None:
    counts = [0, 3, 6, 6, None, 6, 6, 5, 6, 0]
    samples = [sample(float(t), c, {"w0": 0.0}) for t, c in enumerate(counts)]
    assert cluster.steady_window(samples, 6, settle=2.0) == (5, 6)  # t=4 unknown, skipped
    assert cluster.steady_window(samples, 6, settle=0.0) == (2, 6)
    assert cluster.steady_window(samples, 7, settle=0.0) is None  # never full


def test_run_figures_per_consultation_minute_and_redis_without_our_own_info() -> None:
    rooms = {"w0": 1.0, "w1": 1.0}
    samples = [sample(0.0, 0, {"w0": 0.0, "w1": 0.0}, total=10, info=2),
               sample(10.0, 6, {"w0": 1.0, "w1": 1.0}, total=20, info=3, rooms=rooms),
               sample(40.0, 6, {"w0": 4.0, "w1": 2.5}, total=50, info=9, rooms=rooms),
               sample(70.0, 6, {"w0": 7.0, "w1": 4.0}, total=80, info=15, rooms=rooms),
               sample(80.0, 2, {"w0": 8.0, "w1": 4.5}, total=90, info=17)]
    got = cluster.run_figures(samples, rooms=2, people=3, settle=0.0)
    assert got["window_seconds"] == 60.0
    assert got["cpu_seconds"] == pytest.approx(9.0)  # (7 - 1) + (4 - 1)
    assert got["cpu_per_consultation_minute"] == pytest.approx(4.5)  # 9 s / 2 rooms / 1 min
    assert got["worker_cpu_percent"] == {"w0": pytest.approx(10.0), "w1": pytest.approx(5.0)}
    assert got["rooms_per_worker"] == rooms
    assert got["redis_commands"] == 48  # 60 processed, 12 of them our INFO
    assert got["redis_per_consultation_minute"] == pytest.approx(24.0)
    assert got["redis_top"] == [["set", 48, pytest.approx(24.0)]]


def test_summary_ratio_and_verdicts() -> None:
    def run(n: int, cpu: float, rooms: dict[str, int], delivered: float = 0.999) -> dict[str, Any]:
        return {"round": 1, "n": n, "window": [0, 60], "cpu_per_consultation_minute": cpu,
                "redis_per_consultation_minute": 10.0 * n, "redis_commands": 100 * n,
                "delivered_ratio": delivered, "rooms_per_worker": rooms}

    runs = [run(1, 2.0, {"w0": 8}), run(1, 2.2, {"w0": 8}),
            run(2, 2.2, {"w0": 4, "w1": 4}), run(2, 2.4, {"w0": 4, "w1": 4}),
            run(0, 2.0, {"server": 8})]
    summary = cluster.summarize(runs, [0, 1, 2])
    assert summary["per_n"]["1"]["cpu_per_consultation_minute"] == pytest.approx(2.1)
    assert summary["cpu_ratio"]["2/1"] == pytest.approx(2.3 / 2.1)
    assert summary["cpu_ratio"]["1/0"] == pytest.approx(2.1 / 2.0)
    v = cluster.verdicts(runs, summary, rooms=8)
    assert all(x["ok"] for x in v.values()), v

    runs[2]["rooms_per_worker"] = {"w0": 5, "w1": 3}
    runs[3]["delivered_ratio"] = 0.98
    v = cluster.verdicts(runs, summary, rooms=8)
    assert not v["spread_evenly"]["ok"] and not v["delivery"]["ok"]
    odd = [run(2, 2.0, {"w0": 4, "w1": 3})]
    assert cluster.verdicts(odd, cluster.summarize(odd, [2]), rooms=7)["spread_evenly"]["ok"]
