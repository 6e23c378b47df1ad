"""A few seconds of each scenario of ``bench.load`` against a real in-process server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import load
from tests.conftest import SECRET

pytestmark = pytest.mark.timeout(240)


async def run_load(server: Any, clip_dir: Path, tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "report.json"
    report = await load.main([
        "--url", server.url, "--secret", SECRET, "--clinic", "demo", "--quiet",
        "--workers", "1", "--clip-seconds", "5", "--clip-dir", str(clip_dir),
        "--json", str(out), *args,
    ])
    written = json.loads(out.read_text())
    assert written["participants"] == report["participants"]
    return written


def check(report: dict[str, Any], participants: int) -> None:
    for key in ("join_seconds", "failures", "packets_sent", "packets_received",
                "delivered_ratio", "participants", "stream_kbps", "cpu_per_participant"):
        assert key in report
    assert set(report["join_seconds"]) >= {"p50", "p95", "p99"}
    assert report["failures"] == {}
    assert report["participants"] == participants
    assert report["joined"] == participants
    assert report["join_seconds"]["count"] == participants
    assert 0 < report["join_seconds"]["p50"] <= report["join_seconds"]["p95"] < 10
    assert report["packets_sent"] > 0 and report["packets_received"] > 0
    assert 0.9 < report["delivered_ratio"] < 1.1
    assert report["stream_kbps"]["audio"]["count"] > 0
    assert report["server"] is not None  # the in-process server was found from its port
    assert report["cpu_per_participant"]["server_shares_tool_process"] is True


async def test_meetings(server: Any, clip_dir: Path, tmp_path: Path) -> None:
    report = await run_load(server, clip_dir, tmp_path, "--scenario", "meetings",
                            "--rooms", "2", "--people", "2", "--seconds", "5",
                            "--join-spread", "1", "--plot", str(tmp_path / "plot.png"))
    check(report, 4)
    assert report["peak_concurrent"] == 4
    assert report["stream_kbps"]["video"]["p50"] > 100
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    assert server.registry.get("demo").to_json()["rooms"] == [
        r for r in server.registry.get("demo").to_json()["rooms"] if not r["id"].startswith("load-")
    ], "the rooms the run created are deleted afterwards"


async def test_waiting_rush(server: Any, clip_dir: Path, tmp_path: Path) -> None:
    report = await run_load(server, clip_dir, tmp_path, "--scenario", "waiting-rush",
                            "--patients", "3", "--within", "1", "--staff", "2",
                            "--consult", "6")
    check(report, 6)  # three patients and three consultations
    assert report["wait_seconds"]["count"] == 3
    assert server.registry.get("demo").waiting_area.to_json()["spaces"] == []


async def test_churn(server: Any, clip_dir: Path, tmp_path: Path) -> None:
    report = await run_load(server, clip_dir, tmp_path, "--scenario", "churn",
                            "--rate", "2", "--seconds", "3", "--stay", "3", "--rooms", "1",
                            "--join-timeout", "8")
    check(report, 6)
    assert report["peak_concurrent"] < 6


async def test_meetings_with_simulcast(server: Any, clip_dir: Path, tmp_path: Path) -> None:
    report = await run_load(server, clip_dir, tmp_path, "--scenario", "meetings",
                            "--rooms", "1", "--people", "3", "--seconds", "5",
                            "--join-spread", "1", "--simulcast")
    check(report, 3)  # the delivered ratio: audio only
    assert report["options"]["simulcast"] is True
    assert report["simulcast_publishers"] == 3
    assert report["stream_kbps"]["video"]["p50"] > 100  # each receiver gets a layer
