"""The pure parts of ``bench.load``: plans, the delivered ratio, the /proc probe."""

from __future__ import annotations

import os
import socket

from bench import load_plan, load_report
from bench.load_probe import ProcSampler, find_listener
from bench.load_worker import MessageLog, received_by_publisher, sent_packets
from sfu.client.client import Client, TrackStats


def test_meetings_keep_each_room_in_one_worker() -> None:
    plan = load_plan.plan_meetings("x", rooms=3, people=2, seconds=10, join_spread=2, workers=2)
    assert plan.participants == 6
    for worker in plan.workers:
        rooms = {s.room for s in worker.sessions}
        assert all(len([s for s in worker.sessions if s.room == r]) == 2 for r in rooms)
    starts = sorted(s.start for w in plan.workers for s in w.sessions)
    assert starts[0] == 0 and starts[-1] < 2


def test_waiting_rush_gives_each_patient_one_staff_member() -> None:
    plan = load_plan.plan_waiting_rush(patients=5, within=4, staff=2, consult=3, workers=4)
    keys = [p for w in plan.workers for lane in w.lanes for p, _ in lane.patients]
    assert sorted(keys) == [f"pt{j:04d}" for j in range(5)]
    assert plan.participants == 5


def test_churn_rooms_leave_headroom() -> None:
    assert load_plan.churn_rooms(rate=2, stay=10, people=6) == 4


def test_delivery_compares_counters_on_common_samples() -> None:
    pub = {"participant": "a", "call": "room:r", "samples": [
        (1.0, 0, {}), (2.0, 100, {"b": (40, 20)}), (3.0, 200, {"b": (140, 70)}),
        (4.0, 300, {"b": (240, 120)})]}
    sub = {"participant": "b", "call": "room:r", "samples": [
        (1.0, 0, {}), (2.0, 40, {"a": (50, 0)}), (3.0, 140, {"a": (150, 50)}),
        (4.0, 240, {"a": (245, 100)})]}
    received, expected = load_report.delivery([pub, sub])
    # a -> b: from t=3 (first video seen) to t=4: 95 of 100; b -> a: from t=2: 200 of 200
    assert (received, expected) == (295, 300)


def test_calls_are_counted_on_the_node_they_ended_up_on() -> None:
    a, b = "http://127.0.0.1:8091", "http://127.0.0.1:8092"
    records = [
        {"call": "room:r1", "node": a, "redirects": 0, "joined_at": 1.0},
        {"call": "room:r1", "node": a, "redirects": 1, "joined_at": 1.0},
        {"call": "room:r2", "node": b, "redirects": 1, "joined_at": 1.0},
        {"call": "room:r3", "node": a, "redirects": 0, "joined_at": 1.0},
        {"call": "room:r4", "node": None, "joined_at": None},  # refused
    ]
    assert load_report.by_node(records) == {
        a: {"calls": 2, "participants": 3, "redirects": 1},
        b: {"calls": 1, "participants": 1, "redirects": 1}}


def test_window_delivery_counts_only_who_was_there_throughout() -> None:
    start = [("a", "room:r", 100, {"b": 90}), ("b", "room:r", 100, {"a": 95})]
    end = [("a", "room:r", 200, {"b": 190}), ("b", "room:r", 200, {"a": 190}),
           ("c", "room:r", 50, {"a": 10})]
    assert load_report.window_delivery(start, end) == (195, 200)


def test_message_log_keeps_a_recycled_mid_apart() -> None:
    log = MessageLog()
    stats = TrackStats("1", kind="video", participant="a", packets=10, bytes=1000,
                       first_packet_at=1.0, last_packet_at=2.0)
    log.tracks = {"1": stats}
    log.append({"type": "participant_left", "participant": {"id": "a"}})
    stats.packets = 3  # the next publisher's packets before the relabel
    log.append({"type": "tracks", "tracks": [{"mid": "1", "participant": "c", "kind": "video"}]})
    assert log.retired == [("a", "video", 10, 1000, 1.0, 2.0)]
    assert stats.packets == 3


def test_probe_finds_the_listening_process() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        assert find_listener(sock.getsockname()[1]) == os.getpid()
    finally:
        sock.close()
    sampler = ProcSampler([os.getpid()])
    sampler.sample(0.0)
    sum(i * i for i in range(200_000))
    sampler.sample(1.0)
    assert sampler.samples[-1][2] > 0 and sampler.cpu_total >= 0


def test_percentiles_of_nothing_are_none() -> None:
    assert load_report.summary([])["p95"] is None


def test_simulcast_is_off_unless_asked() -> None:
    from bench.load import build_parser

    base = ["--url", "http://127.0.0.1:1", "--secret", "s"]
    assert build_parser().parse_args(base).simulcast is False
    assert build_parser().parse_args([*base, "--simulcast"]).simulcast is True


def test_with_simulcast_delivery_counts_audio_only() -> None:
    client = Client("http://127.0.0.1:1", "token")
    client.tracks = {
        "0": TrackStats("0", kind="audio", participant="a", packets=50),
        "1": TrackStats("1", kind="video", participant="a", packets=200),
    }
    assert received_by_publisher(client) == {"a": (250, 200)}
    assert received_by_publisher(client, audio_only=True) == {"a": (50, 200)}

    class Sent:
        def __init__(self, kind: str, packets: int) -> None:
            self.kind, self.packets = kind, packets

    client.senders = [Sent("audio", 50), Sent("video", 100), Sent("video", 300)]  # type: ignore[list-item]
    assert sent_packets(client) == 450
    assert sent_packets(client, audio_only=True) == 50
