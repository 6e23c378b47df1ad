"""ProbeController: when a limited downlink is probed, how hard, and what a probe proves."""

from __future__ import annotations

from sfu.bandwidth.probe import ProbeController, ProbeSettings


def run_until_probe(pc: ProbeController, start: float, estimate: float, target: float,
                    limit: float = 60.0) -> tuple[float, float] | None:
    t = start
    while t < start + limit:
        rate = pc.plan(t, estimate_kbps=estimate, target_kbps=target, limited=True)
        if rate is not None:
            return t, rate
        t += 0.5
    return None


def test_an_unlimited_downlink_is_never_probed() -> None:
    pc = ProbeController()
    for i in range(100):
        assert pc.plan(i * 0.5, estimate_kbps=300, target_kbps=2000, limited=False) is None
    assert pc.probes == 0


def test_a_new_link_is_probed_at_once_then_a_limited_one_after_a_while_within_the_budget(
) -> None:
    pc = ProbeController()
    assert pc.plan(0.0, estimate_kbps=300, target_kbps=2000, limited=True) == 900  # 3x at once
    pc.observe(lossy=False, overusing=False)
    assert pc.judge(2.0) == 900
    assert pc.plan(2.0, estimate_kbps=900, target_kbps=2000, limited=False) is None  # recovered
    found = run_until_probe(pc, 10.0, estimate=200, target=1200)
    assert found is not None
    t, rate = found
    assert t - 10.0 >= ProbeSettings().first_after_s
    assert rate == 400  # twice the estimate, not the whole target at once
    assert pc.active
    assert pc.plan(t + 0.5, estimate_kbps=200, target_kbps=1200, limited=True) is None


def used(pc: ProbeController) -> ProbeController:
    """A controller past the first probe of its link (which asks for more, at once)."""
    assert pc.plan(0.0, estimate_kbps=100, target_kbps=300, limited=True) == 300
    pc.judge(5.0)
    pc.plan(5.0, estimate_kbps=1000, target_kbps=300, limited=False)
    return pc


def test_a_clean_probe_proves_its_rate_and_the_next_one_asks_more() -> None:
    pc = used(ProbeController())
    t, rate = run_until_probe(pc, 0.0, estimate=200, target=1200) or (0.0, 0.0)
    pc.observe(lossy=False, overusing=False)
    settings = ProbeSettings()
    assert pc.judge(t + settings.duration_s + settings.settle_s - 0.05) is None  # not settled
    proved = pc.judge(t + 3.0)
    assert proved == rate == 400
    t2, rate2 = run_until_probe(pc, t + 3.0, estimate=proved, target=1200) or (0.0, 0.0)
    assert t2 - (t + 3.0) <= ProbeSettings().interval_s + 0.5
    assert rate2 == 800  # the next step: twice as much
    # a link that proved it carries the whole target: the estimate covers it, no more probes
    assert run_until_probe(pc, t2 + 3.0, estimate=1300, target=1200, limit=10) is None


def test_a_spoiled_probe_proves_nothing_and_backs_off() -> None:
    # the defaults wait 1 s after any failure (retry_s == max_interval_s): doubling shown up to 4 s
    settings = ProbeSettings(max_interval_s=4.0)
    pc = used(ProbeController(settings))
    waits = []
    t = 0.0
    for _ in range(5):
        found = run_until_probe(pc, t, estimate=200, target=1200)
        assert found is not None
        t, _ = found
        pc.observe(lossy=True, overusing=False)
        assert pc.judge(t + 3.0) is None
        waits.append(t)
        t += 3.0
    gaps = [b - a for a, b in zip(waits, waits[1:], strict=False)]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]  # doubling waits ...
    assert gaps[-1] <= 3.0 + settings.max_interval_s + 0.5  # ... up to the most
    assert pc.successes == 1  # only the first probe of the link, in used()


def test_recovery_resets_the_backoff() -> None:
    pc = used(ProbeController())
    t, _ = run_until_probe(pc, 0.0, estimate=200, target=1200) or (0.0, 0.0)
    pc.observe(lossy=False, overusing=True)
    assert pc.judge(t + 3.0) is None
    assert pc.plan(t + 3.5, estimate_kbps=2000, target_kbps=1200, limited=False) is None
    found = run_until_probe(pc, t + 4.0, estimate=200, target=1200)
    assert found is not None and found[0] - (t + 4.0) <= ProbeSettings().first_after_s + 0.5


def test_a_lossy_link_is_not_probed_until_its_loss_ends() -> None:
    pc = used(ProbeController())
    for i in range(20):
        assert pc.plan(i * 0.5, estimate_kbps=200, target_kbps=1200, limited=True,
                       clean=False) is None
    found = run_until_probe(pc, 10.0, estimate=200, target=1200)
    assert found is not None and found[0] - 10.0 >= ProbeSettings().first_after_s


def test_what_is_sent_counts_as_passing() -> None:
    pc = used(ProbeController())
    found = None
    t = 0.0
    while found is None and t < 10:
        found = pc.plan(t, estimate_kbps=20, target_kbps=1200, limited=True, sent_kbps=300)
        t += 0.5
    assert found == 600  # twice the 300 kbit/s that flow, not twice the estimate


def test_a_cluster_the_link_only_queued_proves_its_arrival_rate_and_probing_backs_off() -> None:
    """Behind a 700 kbit/s bottleneck a cluster at 1230 arrives at about 700: it measures the
    limit (95 % of what arrived) but is no success: without backing off, such a link got a
    cluster every tick (seen behind tbf: 1.05 Mbit/s of padding for 150 ms every second)."""
    pc = used(ProbeController())
    t, rate = run_until_probe(pc, 0.0, estimate=650, target=2000) or (0.0, 0.0)
    assert rate == 1300
    pc.observe(lossy=False, overusing=False)
    proved = pc.judge(t + 1.0, received_kbps=700.0)
    assert proved == 0.95 * 700
    assert not pc.last_carried
    # the next cluster only after the back-off, not in the tick that judged this one
    t2, _ = run_until_probe(pc, t + 1.0, estimate=650, target=2000) or (0.0, 0.0)
    assert t2 - (t + 1.0) >= ProbeSettings().retry_s
    # one that arrived at 90 % of its rate is a success: the next step follows at once
    pc.observe(lossy=False, overusing=False)
    assert pc.judge(t2 + 1.0, received_kbps=1200.0) == 1140
    assert pc.last_carried
    assert pc.plan(t2 + 1.0, estimate_kbps=1140, target_kbps=3000, limited=True) == 2280
