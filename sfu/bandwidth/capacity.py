"""How much a downlink carries, found within seconds: the pre-call test's padding probe.

A link that carries a few hundred kbit/s of media without loss says nothing about what more it
could carry; the pre-call test has a few seconds, not the tens of seconds a congestion
controller takes to ramp up. So, as a speed test does, the server offers more than the link
needs and measures what arrives: padding on top of the media, ramping in steps
(``ceiling / 4``, ``ceiling / 2``, each ``step_s``), then held at ``ceiling`` for ``hold_s``.
Transport-cc feedback tells, per packet, whether and when it arrived (the receiver's clock).

The capacity is the rate at which the packets sent during the hold arrived (between the 10th
and the 90th percentile of their arrival times), leaving out its first ``skip_s``: by then a token bucket's burst has drained and a standing queue paces the
arrivals at the bottleneck's rate (behind ``tc tbf`` with a 16 kB bucket, the burst alone would
add about 250 kbit/s to a half-second measurement). Without a bottleneck below the ceiling the
packets arrive about as fast as they were sent, and the capacity is "at least" that
(``limited`` is False).

Feedback that already shows more than ``stop_loss`` of the probe's packets lost ends the ramp:
the hold then runs at that step's rate, which is already over the link's capacity, so that a
weak link is flooded no harder than needed to measure it.

Budget: at most ``ceiling_kbps`` in total (media and padding), for ``2 * step_s + hold_s``
seconds. Pure: every method takes ``now``; the caller sends the padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# (transport-wide seq, send time on our clock, bytes, arrival on the receiver's clock or None)
Feedback = tuple[int, float, int, float | None]


@dataclass(frozen=True)
class CapacitySettings:
    ceiling_kbps: float = 1300.0  # the most offered (media and padding)
    step_s: float = 0.3  # each of the two ramp steps
    hold_s: float = 1.5  # at the ceiling (or at the step that showed loss)
    skip_s: float = 0.5  # of the hold, left out of the measurement
    settle_s: float = 0.4  # feedback on the last packets may take this long to arrive
    stop_loss: float = 0.1  # a ramp step losing more than this ends the ramp
    limited_ratio: float = 0.9  # arriving at less than this x the rate sent: the link's limit
    min_packets: int = 20  # the least a measurement rests on


@dataclass(frozen=True)
class Capacity:
    kbps: float  # the rate at which the measured packets arrived
    limited: bool  # True: the link's limit (it carried less than it was offered); False: at least
    offered_kbps: float  # the rate at which they were sent
    loss: float  # the share of them reported lost
    packets: int


class CapacityProbe:
    """One downlink's capacity probe (see the module docstring)."""

    def __init__(self, settings: CapacitySettings | None = None) -> None:
        self.settings = settings or CapacitySettings()
        self.started: float | None = None
        self.hold_start: float | None = None
        self.hold_kbps = self.settings.ceiling_kbps
        self._step = 0
        self._step_start = 0.0
        self._results: dict[int, tuple[float, int, float | None]] = {}  # seq -> (sent, size, arrival)
        self.feedback_packets = 0

    # -- the schedule --------------------------------------------------------------------------
    def start(self, now: float) -> None:
        if self.started is None:
            self.started = self._step_start = now

    def target_kbps(self, now: float) -> float | None:
        """The total rate (media and padding, kbit/s) to offer from ``now``, or None: not
        started, or the probe is over."""
        s = self.settings
        if self.started is None:
            return None
        if self.hold_start is None:
            if self._step_lossy():
                self.hold_kbps = self._step_kbps()  # already over the link's capacity
                self.hold_start = now
            elif now - self._step_start >= s.step_s:
                if self._step == 0:
                    self._step, self._step_start = 1, now
                else:
                    self.hold_start = now
        if self.hold_start is None:
            return self._step_kbps()
        if now - self.hold_start >= s.hold_s:
            return None
        return self.hold_kbps

    def _step_kbps(self) -> float:
        return self.settings.ceiling_kbps / (4 if self._step == 0 else 2)

    def done(self, now: float) -> bool:
        """The schedule is over and its feedback has had time to arrive."""
        s = self.settings
        return self.hold_start is not None and now - self.hold_start >= s.hold_s + s.settle_s

    def _step_lossy(self) -> bool:
        """Feedback on the probe so far reports more than ``stop_loss`` of its packets lost
        (feedback on a short step mostly comes after it: the whole probe so far counts)."""
        sent = len(self._results)
        lost = sum(1 for _, _, arrival in self._results.values() if arrival is None)
        return sent >= self.settings.min_packets and lost / sent > self.settings.stop_loss

    # -- what the receiver reports -------------------------------------------------------------
    def on_feedback(self, results: Sequence[Feedback], now: float | None = None) -> None:
        if self.started is None:
            return
        self.feedback_packets += len(results)
        for seq, sent_at, size, arrival in results:
            if sent_at < self.started:
                continue
            known = self._results.get(seq)
            if known is None or known[2] is None:  # a late report of an arrival wins over "lost"
                self._results[seq] = (sent_at, size, arrival)

    # -- what it concludes ---------------------------------------------------------------------
    def capacity(self) -> Capacity | None:
        """What the hold (after ``skip_s``) measured, or None without enough feedback."""
        s = self.settings
        if self.hold_start is None:
            return None
        begin = self.hold_start + s.skip_s
        end = self.hold_start + s.hold_s
        window = [(sent_at, size, arrival) for sent_at, size, arrival in self._results.values()
                  if begin <= sent_at <= end]
        arrived = sorted((arrival, size) for _, size, arrival in window if arrival is not None)
        if len(arrived) < s.min_packets:
            return None
        first_sent = min(w[0] for w in window)
        last_sent = max(w[0] for w in window)
        span_sent = max(0.05, last_sent - first_sent)
        # the rate between the 10th and the 90th percentile of the arrivals: a receiver that
        # reads its socket late under load stamps a batch of packets at once, and at either
        # end of the span such a batch would stretch or squeeze it
        lo, hi = len(arrived) // 10, len(arrived) - 1 - len(arrived) // 10
        span = max(0.05, arrived[hi][0] - arrived[lo][0])
        kbps = sum(size for _, size in arrived[lo + 1:hi + 1]) * 8 / 1000 / span
        offered = (sum(size for _, size, _ in window) - window[0][1]) * 8 / 1000 / span_sent
        loss = 1 - len(arrived) / len(window)
        limited = kbps < s.limited_ratio * offered or loss > 0.02
        return Capacity(kbps=kbps, limited=limited, offered_kbps=offered, loss=loss,
                        packets=len(window))
