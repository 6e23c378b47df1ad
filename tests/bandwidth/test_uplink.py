"""UplinkEstimator and SequenceLoss on synthetic packet traces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sfu.bandwidth.uplink import SequenceLoss, UplinkEstimator

SIZE = 1200  # bytes per packet


def ast(send: float) -> int:
    """abs-send-time: 6.18 fixed point seconds, 24 bits."""
    return int(round(send * (1 << 18))) & 0xFFFFFF


def trace(rate_kbps: float, start: float, end: float, seq0: int = 0) -> Iterator[tuple[float, int]]:
    """(send time, seq) of SIZE-byte packets sent at ``rate_kbps``."""
    interval = SIZE * 8 / (rate_kbps * 1000)
    t, seq = start, seq0
    while t < end:
        yield t, seq & 0xFFFF
        t += interval
        seq += 1


def feed(est: UplinkEstimator, packets: list[tuple[float, int]], with_ast: bool = True) -> None:
    for arrival, seq, send in ((p[0] + 0.04, p[1], p[0]) for p in packets):
        est.on_packet(arrival, seq, SIZE, ast(send) if with_ast else None)


def test_unknown_until_one_second_of_evidence() -> None:
    est = UplinkEstimator()
    assert est.estimate_kbps(0.0) is None
    feed(est, list(trace(500, 0.0, 0.9)))
    assert est.estimate_kbps(0.9) is None
    feed(est, list(trace(500, 0.9, 1.5)))
    assert est.estimate_kbps(1.6) is not None


def test_steady_rate_is_estimated_near_the_rate_and_below_the_growth_cap() -> None:
    est = UplinkEstimator()
    feed(est, list(trace(500, 0.0, 20.0)))
    assert est.incoming_kbps(20.04) == pytest.approx(500, rel=0.05)
    value = est.estimate_kbps(20.04)
    assert value is not None
    assert 450 <= value <= (1.5 * 500 + 10) * 1.06
    assert est.loss_fraction(20.04) == 0.0
    assert est.signal == "normal"


def bottleneck(
    packets: list[tuple[float, int]], capacity: list[tuple[float, float]]
) -> list[tuple[float, int, float]]:
    """(arrival, seq, send) through a FIFO whose capacity (kbit/s) changes at given times."""
    out: list[tuple[float, int, float]] = []
    free_at = 0.0
    for send, seq in packets:
        cap = [c for t, c in capacity if t <= send][-1]
        start = max(send + 0.02, free_at)
        free_at = start + SIZE * 8 / (cap * 1000)
        out.append((free_at, seq, send))
    return out


def congested_trace() -> list[tuple[float, int, float]]:
    return bottleneck(list(trace(800, 0.0, 9.0)), [(0.0, 1000.0), (5.0, 400.0)])


def test_capacity_drop_is_detected_by_delay_and_the_estimate_falls() -> None:
    est = UplinkEstimator()
    before = None
    for arrival, seq, send in congested_trace():
        if before is None and arrival >= 5.0:
            before = est.estimate_kbps(arrival)
        est.on_packet(arrival, seq, SIZE, ast(send))
    assert before is not None and before > 800
    after = est.estimate_kbps(9.0)
    assert after is not None and after < 450  # 0.85 x the 400 kbit/s that got through


def test_without_abs_send_time_a_lossless_queue_is_not_seen() -> None:
    est = UplinkEstimator()
    for arrival, seq, _send in congested_trace():
        est.on_packet(arrival, seq, SIZE, None)
    value = est.estimate_kbps(9.0)
    assert value is not None and value > 800


def test_voluntary_rate_drop_keeps_the_capacity_estimate() -> None:
    est = UplinkEstimator()
    feed(est, list(trace(800, 0.0, 6.0)) + list(trace(300, 6.0, 12.0, seq0=5000)))
    value = est.estimate_kbps(12.0)
    assert value is not None and value > 800


def test_loss_burst_cuts_the_estimate_and_loss_clears_afterwards() -> None:
    est = UplinkEstimator()
    packets = list(trace(600, 0.0, 12.0))
    kept = [p for p in packets if not (6.0 <= p[0] < 9.0 and p[1] % 10 < 3)]  # 30 % lost
    high = None
    for send, seq in kept:
        if high is None and send >= 6.0:
            high = est.estimate_kbps(send)
        est.on_packet(send + 0.04, seq, SIZE, ast(send))
        if send < 9.0 <= send + 0.04:
            assert est.loss_fraction(send + 0.04) == pytest.approx(0.3, abs=0.03)
    assert high is not None
    cut = est.estimate_kbps(12.0)
    assert cut is not None and cut < high * 0.7
    assert est.loss_fraction(12.04) == 0.0


def test_sequence_wrap_is_not_loss() -> None:
    loss = SequenceLoss(window_s=10.0)
    for i in range(200):
        loss.on_packet(i * 0.01, (65436 + i) & 0xFFFF)
    assert loss.fraction(2.0) == 0.0


def test_gap_across_the_wrap_is_counted() -> None:
    loss = SequenceLoss(window_s=10.0)
    for i in range(200):
        seq = (65436 + i) & 0xFFFF
        if seq not in (0, 1):
            loss.on_packet(i * 0.01, seq)
    assert loss.fraction(2.0) == pytest.approx(2 / 200)


def test_reordering_fills_gaps_and_duplicates_count_once() -> None:
    loss = SequenceLoss(window_s=10.0)
    order = []
    for i in range(0, 100, 2):
        order += [i + 1, i]  # every pair swapped
    for n, seq in enumerate(order):
        loss.on_packet(n * 0.01, seq)
        loss.on_packet(n * 0.01, seq)  # and duplicated
    assert loss.fraction(1.0) == 0.0
    assert loss.duplicates == 100


def test_reordering_across_the_wrap() -> None:
    loss = SequenceLoss(window_s=10.0)
    for n, seq in enumerate([65534, 0, 65535, 1, 2]):
        loss.on_packet(n * 0.01, seq)
    assert loss.fraction(0.1) == 0.0


def test_old_packets_leave_the_loss_window() -> None:
    loss = SequenceLoss(window_s=2.0)
    for i in range(100):
        if i % 2 == 0:
            loss.on_packet(i * 0.01, i)
    assert loss.fraction(1.0) > 0.4
    for i in range(100, 400):
        loss.on_packet(i * 0.01, i)
    assert loss.fraction(4.0) == 0.0


def test_sender_restart_resets_the_sequence() -> None:
    loss = SequenceLoss(window_s=10.0)
    for i in range(50):
        loss.on_packet(i * 0.01, i)
    for i in range(50):
        loss.on_packet(0.5 + i * 0.01, 30000 + i)
    assert loss.fraction(1.0) == 0.0


def test_closed_loop_sender_follows_a_capacity_dip_and_recovers() -> None:
    """A sender that sends at the estimate, through a link of 1000 -> 400 -> 1000 kbit/s."""
    est = UplinkEstimator()
    t = free = 0.0
    seq = 0
    seen: dict[int, float] = {}
    while t < 40.0:
        capacity = 400.0 if 10.0 <= t < 20.0 else 1000.0
        rate = min(est.estimate_kbps(free) or 800.0, 1500.0)
        free = max(t + 0.02, free) + SIZE * 8 / (capacity * 1000)
        est.on_packet(free, seq & 0xFFFF, SIZE, ast(t))
        assert free - t < 0.6  # the queue is drained, not left to grow
        seen.setdefault(int(free), est.estimate_kbps(free) or 0.0)
        seq += 1
        t += SIZE * 8 / (rate * 1000)
    assert all(300 <= seen[s] <= 480 for s in range(13, 20))
    assert all(750 <= seen[s] <= 1150 for s in range(33, 40))
