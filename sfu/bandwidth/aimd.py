"""The delay-based rate controller of GCC: AIMD on the overuse detector's state.

A port of libwebrtc's ``aimd_rate_control.cc`` and ``link_capacity_estimator.cc``
(draft-ietf-rmcat-gcc-02 section 5.5), driven once per transport-cc feedback with the detector's
state and the *acknowledged bitrate* (what the receiver got, measured on its clock):

* state machine: ``overusing`` -> decrease; ``underusing`` -> hold (let the queue drain);
  ``normal`` -> increase (from hold, after one feedback). A decrease is followed by hold.
* **decrease**: to ``0.85 * acknowledged`` (beta, libwebrtc ``kDefaultBackoffFactor``), never
  upwards; if the acknowledged rate is above the estimate, ``0.85 *`` the link capacity estimate.
  The acknowledged rate at the decrease is a sample of the link capacity: an exponential average
  (alpha 0.05) with a normalised variance (clamped 0.4..2.5) gives an interval
  ``estimate +- 3 sigma``. Decreases are at most once per RTT (clamped 10..200 ms) unless the
  acknowledged rate fell below half the estimate (``TimeToReduceFurther``).
* **increase**: far from convergence (no capacity estimate, or the acknowledged rate left the
  interval, which resets it) multiplicative, ``1.08 ** dt`` (dt <= 1 s, at least 1 kbit/s);
  near the capacity estimate additive, about one packet per response time
  (``rtt + 100 ms``) for a 30 fps stream of <= 1200-byte packets, at least 4 kbit/s per second.
  Never above ``1.5 * acknowledged + 10 kbit/s``: capacity not exercised is not claimed.

Pure: every method takes ``now`` (seconds, sender's clock); rates in kbit/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sfu.bandwidth.trendline import Usage

_State = Literal["hold", "increase", "decrease"]


@dataclass(frozen=True)
class AimdSettings:
    beta: float = 0.85  # kDefaultBackoffFactor
    increase_per_s: float = 1.08  # MultiplicativeRateIncrease alpha
    min_multiplicative_kbps: float = 1.0  # at least 1000 bps per increase
    min_additive_kbps_per_s: float = 4.0  # kMinIncreaseRateBpsPerSecond
    frame_rate: float = 30.0  # GetNearMaxIncreaseRateBpsPerSecond: kFrameInterval 1/30 s
    packet_bytes: int = 1200  # ... kPacketSize
    detector_delay_s: float = 0.1  # ... response time = rtt + 100 ms
    throughput_headroom: float = 1.5  # increase limit: 1.5 * acknowledged + 10 kbit/s
    throughput_margin_kbps: float = 10.0
    capacity_alpha: float = 0.05  # LinkCapacityEstimator::OnOveruseDetected alpha
    min_reduce_interval_s: float = 0.01  # TimeToReduceFurther: rtt clamped to 10..200 ms
    max_reduce_interval_s: float = 0.2


class LinkCapacity:
    """Average acknowledged rate at overuse, with a normalised deviation (libwebrtc)."""

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self._deviation = 0.4

    def reset(self) -> None:
        self.estimate_kbps = None

    def on_overuse(self, sample_kbps: float, alpha: float) -> None:
        estimate = self.estimate_kbps
        estimate = sample_kbps if estimate is None else (1 - alpha) * estimate + alpha * sample_kbps
        self.estimate_kbps = estimate
        error = estimate - sample_kbps
        deviation = (1 - alpha) * self._deviation + alpha * error * error / max(estimate, 1.0)
        self._deviation = min(max(deviation, 0.4), 2.5)

    def _sigma(self) -> float:
        return math.sqrt(self._deviation * (self.estimate_kbps or 0.0))

    def upper_kbps(self) -> float:
        return math.inf if self.estimate_kbps is None else self.estimate_kbps + 3 * self._sigma()

    def lower_kbps(self) -> float:
        return (
            0.0 if self.estimate_kbps is None else max(0.0, self.estimate_kbps - 3 * self._sigma())
        )


class AimdRateControl:
    """The delay-based estimate (kbit/s); see the module doc."""

    def __init__(
        self,
        start_kbps: float,
        min_kbps: float,
        max_kbps: float,
        settings: AimdSettings | None = None,
    ) -> None:
        self.settings = settings or AimdSettings()
        self.min_kbps = min_kbps
        self.max_kbps = max_kbps
        self.estimate_kbps = min(max(start_kbps, min_kbps), max_kbps)
        self.capacity = LinkCapacity()
        self._state: _State = "hold"
        self._last_change: float | None = None
        self._throughput_kbps = self.estimate_kbps

    def time_to_reduce(self, now: float, acked_kbps: float, rtt_s: float) -> bool:
        """Whether an overuse may lower the estimate now (``TimeToReduceFurther``)."""
        s = self.settings
        if self._last_change is None:
            return True
        interval = min(max(rtt_s, s.min_reduce_interval_s), s.max_reduce_interval_s)
        if now - self._last_change >= interval:
            return True
        return acked_kbps < 0.5 * self.estimate_kbps

    def since_change_s(self, now: float) -> float:
        return math.inf if self._last_change is None else now - self._last_change

    def set_estimate(self, now: float, kbps: float) -> None:
        """Force the estimate (e.g. halving on overuse before any acknowledged rate)."""
        self.estimate_kbps = self._clamp(kbps)
        self._last_change = now

    def update(self, now: float, usage: Usage, acked_kbps: float | None, rtt_s: float) -> float:
        """Apply one detector state; return the new estimate."""
        s = self.settings
        if acked_kbps is not None:
            self._throughput_kbps = acked_kbps
        throughput = self._throughput_kbps
        if usage == "overusing":
            self._state = "decrease"
        elif usage == "underusing":
            self._state = "hold"
        elif self._state == "hold":
            self._state = "increase"
            self._last_change = now
        current = self.estimate_kbps
        new = current
        if self._state == "increase":
            if throughput > self.capacity.upper_kbps():
                self.capacity.reset()  # far above the old capacity: probe multiplicatively again
            limit = s.throughput_headroom * throughput + s.throughput_margin_kbps
            if current < limit:
                last = self._last_change if self._last_change is not None else now
                dt = min(max(now - last, 0.0), 1.0)
                if self.capacity.estimate_kbps is not None:
                    increased = current + self._additive_kbps_per_s(current, rtt_s) * dt
                else:
                    step = current * (s.increase_per_s**dt - 1.0)
                    increased = current + max(step, s.min_multiplicative_kbps)
                new = min(increased, limit)
            self._last_change = now
        elif self._state == "decrease":
            decreased = s.beta * throughput
            if decreased > current and self.capacity.estimate_kbps is not None:
                decreased = s.beta * self.capacity.estimate_kbps
            if decreased < current:
                new = decreased
            if throughput < self.capacity.lower_kbps():
                self.capacity.reset()  # far below the old capacity: start a new average
            self.capacity.on_overuse(throughput, s.capacity_alpha)
            self._state = "hold"  # until the queue has drained
            self._last_change = now
        self.estimate_kbps = self._clamp(new)
        return self.estimate_kbps

    def _additive_kbps_per_s(self, current_kbps: float, rtt_s: float) -> float:
        s = self.settings
        frame_bits = current_kbps * 1000.0 / s.frame_rate
        packets = max(math.ceil(frame_bits / (s.packet_bytes * 8)), 1)
        response_s = rtt_s + s.detector_delay_s
        return max(s.min_additive_kbps_per_s, frame_bits / packets / response_s / 1000.0)

    def _clamp(self, kbps: float) -> float:
        return min(max(kbps, self.min_kbps), self.max_kbps)
