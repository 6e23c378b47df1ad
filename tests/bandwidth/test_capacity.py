"""The pre-call test's downlink probe (sfu/bandwidth/capacity.py) against a simulated bottleneck.

The bottleneck is a token bucket (``tc tbf``: a rate, a 16 kB burst, a 100 ms queue) plus 20 ms
of propagation; the receiver reports every packet 100 ms later (transport-cc feedback) on a
clock 1000 s ahead of ours. The sender offers what the probe asks for in 10 ms bursts of
300-byte packets, media included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sfu.bandwidth.capacity import CapacityProbe, CapacitySettings

SIZE = 300
RX_CLOCK = 1000.0


@dataclass
class Tbf:
    kbps: float
    burst: float = 16_000.0
    latency_s: float = 0.1
    delay_s: float = 0.02
    tokens: float = 16_000.0
    last: float = 0.0
    free_at: float = 0.0

    def send(self, t: float, size: int) -> float | None:
        """Arrival time (sim clock) or None: dropped."""
        rate = self.kbps * 1000 / 8
        self.tokens = min(self.burst, self.tokens + (t - self.last) * rate)
        self.last = t
        if self.free_at <= t and self.tokens >= size:  # nothing queued and tokens to spare
            self.tokens -= size
            return t + self.delay_s
        start = max(t, self.free_at)
        if start - t > self.latency_s:
            return None
        self.free_at = start + size / rate
        self.tokens = 0.0
        return self.free_at + self.delay_s


@dataclass
class Sim:
    link: Tbf
    probe: CapacityProbe = field(default_factory=CapacityProbe)
    seq: int = 0
    offered: list[float] = field(default_factory=list)

    def run(self, until: float = 4.0, media_kbps: float = 300.0) -> None:
        pending: list[tuple[float, tuple[int, float, int, float | None]]] = []
        t = 0.0
        self.probe.start(0.0)
        target = self.probe.target_kbps(0.0)
        while t < until:
            if round(t * 100) % 10 == 0:  # the control step, every 100 ms
                target = self.probe.target_kbps(t)
                self.offered.append(target or 0.0)
            rate = target if target is not None else media_kbps
            for _ in range(max(1, round(rate * 1000 / 8 * 0.01 / SIZE))):
                self.seq += 1
                arrival = self.link.send(t, SIZE)
                # a loss is reported with the next packet that arrives (the queue is full)
                known = (arrival if arrival is not None else t + self.link.latency_s
                         + self.link.delay_s) + 0.1
                pending.append((known, (self.seq, t, SIZE,
                                        None if arrival is None else arrival + RX_CLOCK)))
            ready = [r for k, r in pending if k <= t]
            pending = [(k, r) for k, r in pending if k > t]
            if ready:
                self.probe.on_feedback(ready, t)
            t = round(t + 0.01, 2)


def test_the_probe_measures_a_bottleneck_under_its_ceiling() -> None:
    sim = Sim(Tbf(700))
    sim.run()
    capacity = sim.probe.capacity()
    assert capacity is not None and capacity.limited
    assert capacity.kbps == pytest.approx(700, rel=0.1)  # the bucket's burst is left out
    assert capacity.loss > 0.2
    assert sim.probe.done(4.0)


def test_a_link_above_the_ceiling_is_at_least_the_ceiling() -> None:
    sim = Sim(Tbf(20_000))
    sim.run()
    capacity = sim.probe.capacity()
    assert capacity is not None and not capacity.limited
    assert capacity.kbps == pytest.approx(1300, rel=0.1)
    assert capacity.loss == 0.0


def test_a_weak_link_stops_the_ramp_and_is_measured_at_the_lower_rate() -> None:
    sim = Sim(Tbf(150, tokens=0.0))  # media has been more than the link carries: no burst left
    sim.run()
    capacity = sim.probe.capacity()
    assert capacity is not None and capacity.limited
    assert capacity.kbps == pytest.approx(150, rel=0.15)
    assert sim.probe.hold_kbps < sim.probe.settings.ceiling_kbps  # not flooded at 1300
    assert max(sim.offered) < sim.probe.settings.ceiling_kbps


def test_the_budget_rate_and_duration() -> None:
    settings = CapacitySettings(ceiling_kbps=1000, step_s=0.3, hold_s=1.5)
    probe = CapacityProbe(settings)
    assert probe.target_kbps(0.0) is None  # not started
    probe.start(10.0)
    rates = [probe.target_kbps(10.0 + i / 100) for i in range(0, 300)]
    offered = [r for r in rates if r is not None]
    assert max(offered) == 1000 and offered[0] == 250
    assert len(offered) / 100 == pytest.approx(0.3 + 0.3 + 1.5, abs=0.02)  # then it stops
    assert rates[-1] is None and not probe.done(12.2) and probe.done(12.6)
    assert probe.capacity() is None  # no feedback: nothing measured
