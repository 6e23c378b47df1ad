"""DownlinkEstimator: the loss-based controller driven by receiver reports, capped by REMB."""

from __future__ import annotations

import pytest

from sfu.bandwidth.downlink import DownlinkEstimator


def send(est: DownlinkEstimator, kbps: float, start: float, end: float) -> None:
    """Account packets sent every 10 ms at ``kbps``."""
    size = int(kbps * 1000 / 8 / 100)
    t = start
    while t < end - 1e-9:
        est.on_sent(t, size)
        t += 0.01


def test_unknown_until_the_first_report() -> None:
    est = DownlinkEstimator()
    send(est, 500, 0.0, 2.0)
    assert est.estimate_kbps(2.0) is None
    assert est.rtt_s is None
    est.on_receiver_report(2.0, 0.0, 5.0, 0.05)
    value = est.estimate_kbps(2.0)
    assert value == pytest.approx(500, rel=0.02)  # starts from what was sent
    assert est.rtt_s == pytest.approx(0.05)


def test_grows_under_low_loss_up_to_the_cap_over_what_was_sent() -> None:
    est = DownlinkEstimator()
    send(est, 500, 0.0, 2.0)
    est.on_receiver_report(2.0, 0.0, 5.0, 0.05)
    values = []
    for second in range(3, 20):
        send(est, 500, second - 1.0, float(second))
        est.on_receiver_report(float(second), 0.01, 5.0, 0.05)
        value = est.estimate_kbps(float(second))
        assert value is not None
        values.append(value)
    assert values[0] == pytest.approx(500 * 1.08, rel=0.06)
    assert values == sorted(values)
    assert values[-1] == pytest.approx(1.5 * 500 + 200, rel=0.06)


def test_holds_between_two_and_ten_percent() -> None:
    est = DownlinkEstimator()
    send(est, 500, 0.0, 2.0)
    est.on_receiver_report(2.0, 0.0, 5.0, 0.05)
    start = est.estimate_kbps(2.0)
    for second in range(3, 10):
        send(est, 500, second - 1.0, float(second))
        est.on_receiver_report(float(second), 0.05, 5.0, 0.05)
    assert est.estimate_kbps(10.0) == start


def test_cuts_over_ten_percent_from_what_was_sent() -> None:
    est = DownlinkEstimator()
    send(est, 800, 0.0, 2.0)
    est.on_receiver_report(2.0, 0.0, 5.0, 0.05)
    send(est, 800, 2.0, 3.0)
    est.on_receiver_report(3.0, 0.2, 30.0, 0.05)
    assert est.estimate_kbps(3.0) == pytest.approx(800 * (1 - 0.1), rel=0.02)
    # A second bad report within rtt + 0.3 s belongs to the same episode: no second cut.
    est.on_receiver_report(3.2, 0.2, 30.0, 0.05)
    assert est.estimate_kbps(3.2) == pytest.approx(720, rel=0.02)
    send(est, 700, 3.0, 4.0)
    est.on_receiver_report(4.0, 0.5, 30.0, 0.05)
    value = est.estimate_kbps(4.0)
    assert value is not None and value < 720 * 0.8
    assert est.fraction_lost == 0.5 and est.jitter_ms == 30.0


def test_never_below_the_floor() -> None:
    est = DownlinkEstimator()
    send(est, 100, 0.0, 1.0)
    for second in range(1, 30):
        est.on_receiver_report(float(second), 1.0, 100.0, None)
    assert est.estimate_kbps(30.0) == pytest.approx(20.0)


def test_remb_caps_the_estimate_and_counts_as_evidence() -> None:
    est = DownlinkEstimator()
    est.on_remb(0.5, 400.0)
    assert est.estimate_kbps(0.5) == 400.0
    send(est, 800, 0.0, 2.0)
    est.on_receiver_report(2.0, 0.0, 5.0, 0.05)
    assert est.estimate_kbps(2.0) == 400.0
    est.on_remb(2.5, 390.0)  # inside the hysteresis band, still a strict cap
    assert est.estimate_kbps(2.5) == 390.0
    est.on_remb(3.0, 2000.0)
    value = est.estimate_kbps(3.0)
    assert value is not None and value == pytest.approx(800, rel=0.1)


def test_a_stale_remb_no_longer_caps() -> None:
    est = DownlinkEstimator()
    send(est, 800, 0.0, 2.0)
    est.on_receiver_report(2.0, 0.0, 5.0, None)
    est.on_remb(2.0, 100.0)
    send(est, 800, 2.0, 13.0)
    assert est.estimate_kbps(5.0) == 100.0
    value = est.estimate_kbps(13.0)
    assert value is not None and value > 700


def test_a_remb_over_what_is_sent_is_no_limit() -> None:
    """A browser's REMB grows only with what it receives: towards a receiver that gets audio
    only it stays low, and holding it against the link would keep video paused for good."""
    est = DownlinkEstimator()
    send(est, 40, 0.0, 2.0)  # audio only
    est.on_receiver_report(2.0, 0.0, 5.0, 0.05)
    for second in range(3, 23):
        send(est, 40, second - 1.0, float(second))
        est.on_remb(float(second), 70.0)  # about 1.5 x what it receives
        if second % 5 == 2:
            est.on_receiver_report(float(second), 0.0, 5.0, 0.05)
    after = est.estimate_kbps(22.0)
    assert after is not None and after > 150  # grew past the REMB, towards a video's worth


def test_a_remb_binds_while_it_is_below_what_is_sent() -> None:
    est = DownlinkEstimator()
    send(est, 800, 0.0, 2.0)
    est.on_receiver_report(2.0, 0.0, 5.0, 0.05)
    est.on_remb(2.0, 300.0)  # the receiver cannot take 800
    assert est.estimate_kbps(2.0) == 300.0
    send(est, 250, 2.0, 6.0)  # the sender backs off under it: no longer a limit
    value = est.estimate_kbps(6.0)
    assert value is not None and value > 300.0


def test_reports_a_few_seconds_apart_grow_by_their_real_interval() -> None:
    """Chromium reports on an audio-only downlink about every 5 s: growth must keep 8 %/s."""
    est = DownlinkEstimator()
    send(est, 200, 0.0, 2.0)
    est.on_receiver_report(2.0, 0.0, 5.0, 0.05)
    start = est.estimate_kbps(2.0)
    assert start is not None
    send(est, 200, 2.0, 7.0)
    est.on_receiver_report(7.0, 0.0, 5.0, 0.05)
    value = est.estimate_kbps(7.0)
    assert value == pytest.approx(start * 1.08 ** 5, rel=0.06)


def test_rtt_is_smoothed() -> None:
    est = DownlinkEstimator()
    est.on_receiver_report(1.0, 0.0, 5.0, 0.1)
    est.on_receiver_report(2.0, 0.0, 5.0, 0.9)
    assert est.rtt_s == pytest.approx(0.1 + 0.8 / 8)
    est.on_receiver_report(3.0, 0.0, 5.0, None)
    assert est.rtt_s == pytest.approx(0.2)
