"""A small closed-loop bottleneck simulation for the send-side estimator (fake clock, pure Python).

A sender paces 1200-byte packets at the estimator's current estimate through a drop-tail FIFO
served at ``capacity_kbps`` plus a propagation delay (each way); an optional loss process drops
packets before the queue. The receiver sends transport-cc feedback every 100 ms of its clock,
reporting what arrived (on its own clock, offset by ``RX_CLOCK``) and what was lost; the feedback
reaches the sender one propagation delay later.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sfu.bandwidth.gcc import Feedback, SendSideEstimator

SIZE = 1200
RX_CLOCK = 1000.0  # the receiver's clock reads this much more than the sender's
Loss = Callable[[], bool]


def random_loss(p: float, seed: int = 1) -> Loss:
    rng = random.Random(seed)
    return lambda: rng.random() < p


def bursty_loss(p: float, burst: float = 4.0, seed: int = 1) -> Loss:
    """Gilbert model: everything is lost in the bad state, ``burst`` packets long on average."""
    rng = random.Random(seed)
    leave_bad = 1.0 / burst
    enter_bad = p * leave_bad / (1.0 - p)
    bad = [False]

    def lost() -> bool:
        bad[0] = rng.random() >= leave_bad if bad[0] else rng.random() < enter_bad
        return bad[0]

    return lost


@dataclass
class Link:
    capacity_kbps: float
    delay_s: float = 0.02
    buffer_s: float = 0.5  # drop-tail: a packet that would wait longer is dropped
    loss: Loss | None = None
    _free_at: float = 0.0
    max_queue_s: float = 0.0

    def queue_s(self, t: float) -> float:
        """How long a packet sent at ``t`` would wait."""
        return max(self._free_at - t, 0.0)

    def send(self, t: float, size: int) -> tuple[float, float | None]:
        """(time the receiver learns about it, arrival time or None if dropped), sim clock."""
        start = max(t, self._free_at)
        wait = start - t
        self.max_queue_s = max(self.max_queue_s, wait)
        if (self.loss is not None and self.loss()) or wait > self.buffer_s:
            return t + wait + self.delay_s, None
        self._free_at = start + size * 8 / (self.capacity_kbps * 1000)
        arrival = self._free_at + self.delay_s
        return arrival, arrival


@dataclass
class Run:
    points: list[tuple[float, float]] = field(default_factory=list)  # (time, estimate) per feedback
    queue: list[tuple[float, float]] = field(default_factory=list)  # (time, queuing delay)

    def between(self, t0: float, t1: float) -> list[float]:
        return [v for t, v in self.points if t0 <= t < t1]

    def max_queue(self, t0: float, t1: float) -> float:
        return max(q for t, q in self.queue if t0 <= t < t1)

    def at(self, t: float) -> float:
        return [v for when, v in self.points if when <= t][-1]

    def first_time(self, since: float, test: Callable[[float], bool]) -> float | None:
        return next((t for t, v in self.points if t >= since and test(v)), None)


Deliver = Callable[[SendSideEstimator, float, list[Feedback]], None]


def simulate(
    est: SendSideEstimator,
    link: Link,
    until: float,
    *,
    seq0: int = 65000,
    rtt: bool = True,
    interval: float = 0.1,
    deliver: Deliver | None = None,
    change: Callable[[float, Link], None] | None = None,
    send_rate: Callable[[float, float], float] | None = None,
) -> Run:
    """Run the loop from ``start`` to ``until`` (seconds); returns the estimate per feedback.

    The sender sends at the estimate, or at ``send_rate(t, estimate)`` (kbit/s) when given (a
    sender that does not follow at once, as forwarded media whose publisher adapts later)."""
    run = Run()
    pending: deque[tuple[float, Feedback]] = deque()
    t = 0.0
    seq = seq0
    next_feedback = interval
    while t < until:
        while next_feedback + link.delay_s <= t:
            packets = []
            while pending and pending[0][0] <= next_feedback:
                packets.append(pending.popleft()[1])
            now = next_feedback + link.delay_s
            if rtt:
                est.on_rtt(now, 2 * link.delay_s + link.queue_s(now))
            if deliver is None:
                est.on_feedback(now, packets)
            else:
                deliver(est, now, packets)
            value = est.estimate_kbps(now)
            assert value is not None
            run.points.append((now, value))
            run.queue.append((now, link.queue_s(now)))
            next_feedback += interval
        if change is not None:
            change(t, link)
        rate = est.estimate_kbps(t) or est.settings.start_kbps
        if send_rate is not None:
            rate = send_rate(t, rate)
        known, arrival = link.send(t, SIZE)
        pending.append(
            (known, (seq & 0xFFFF, t, SIZE, None if arrival is None else arrival + RX_CLOCK))
        )
        seq += 1
        t += SIZE * 8 / (rate * 1000)
    return run
