"""Delay-based overuse detection on send-side (transport-cc) feedback, as in libwebrtc's GCC.

Input: for each packet the receiver acknowledged, its send time (sender's clock) and arrival time
(receiver's clock), in seconds, in arrival order. The two clocks need not agree: only differences
within each clock are used. Four steps, each a port of a libwebrtc file (constants in
:class:`TrendlineSettings`, the origin of each in the comment next to it):

1. **Send-time groups** (``inter_arrival_delta.cc``): a packet sent within 5 ms of the first packet
   of the current group joins it (one pacer burst or one frame); so does a packet that arrives
   within 5 ms of the previous one while its propagation delta is negative, at most 100 ms after
   the group's first arrival (a burst a queue released at once). When a packet opens a new group,
   the two previous complete groups give a send delta (between their last send times) and an
   arrival delta (between their last arrival times). A packet sent before the current group's
   first one is reordered and skipped; a negative arrival delta three times in a row, or an
   arrival delta 3 s larger than the send delta (a clock jump, a long pause), starts over.
2. **Trendline** (``trendline_estimator.cc``): the inter-group delay variation
   ``d = arrival delta - send delta`` (ms) is accumulated into a queuing delay, smoothed
   exponentially (coefficient 0.9), and a least-squares slope of the smoothed delay against arrival
   time is fitted over the last 20 groups. The slope, dimensionless, is about
   ``(send rate - capacity) / capacity``; the *modified trend* is
   ``slope * min(deltas, 60) * 4`` (threshold gain), in ms.
3. **Adaptive threshold** (draft-ietf-rmcat-gcc-02 section 5.4, with libwebrtc's gains):
   ``gamma += k * (|m| - gamma) * dt_ms``, ``k = 0.0087`` (k_up) when ``|m| > gamma`` else
   ``0.039`` (k_down), ``dt`` at most 100 ms, not updated when ``|m| > gamma + 15 ms`` (a latency
   spike), clamped to 6..600 ms, starting at 12.5 ms. It lets the detector keep its share against
   loss-based flows (TCP) instead of yielding to every standing queue.
4. **Overuse detector**: ``m > gamma`` for more than 10 ms (summed send deltas) and at least two
   groups, with the trend not decreasing -> ``"overusing"``; ``m < -gamma`` -> ``"underusing"``;
   ``|m| <= gamma`` -> ``"normal"``. While ``m > gamma`` but not yet for long enough the state is
   kept, as libwebrtc does.

:mod:`sfu.bandwidth.delay` is the receive-side cousin of this (abs-send-time, fixed constants).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Usage = Literal["normal", "overusing", "underusing"]


@dataclass(frozen=True)
class TrendlineSettings:
    group_s: float = 0.005  # kSendTimeGroupLength (inter_arrival_delta.cc), draft: burst_time 5 ms
    burst_delta_s: float = 0.005  # kBurstDeltaThreshold
    max_burst_s: float = 0.1  # kMaxBurstDuration
    offset_reset_s: float = 3.0  # kArrivalTimeOffsetThreshold
    reordered_reset: int = 3  # kReorderedResetThreshold
    window: int = 20  # kDefaultTrendlineWindowSize (trendline_estimator.cc)
    smoothing: float = 0.9  # kDefaultTrendlineSmoothingCoeff
    threshold_gain: float = 4.0  # kDefaultTrendlineThresholdGain
    max_deltas: int = 60  # kMinNumDeltas: the trend's weight stops growing after 60 groups
    initial_threshold_ms: float = 12.5  # threshold_ initial value (draft: del_var_th 12.5 ms)
    k_up: float = 0.0087  # libwebrtc k_up_ (the draft's 0.01)
    k_down: float = 0.039  # libwebrtc k_down_ (the draft's 0.00018 is for a different scale)
    max_adapt_offset_ms: float = 15.0  # kMaxAdaptOffsetMs
    max_adapt_dt_ms: float = 100.0  # kMaxTimeDeltaMs
    min_threshold_ms: float = 6.0
    max_threshold_ms: float = 600.0
    overuse_time_ms: float = 10.0  # overusing_time_threshold_ (draft: overuse_time_th 10 ms)


class _Group:
    __slots__ = ("first_arrival", "first_send", "last_arrival", "last_send")

    def __init__(self, send: float, arrival: float) -> None:
        self.first_send = self.last_send = send
        self.first_arrival = self.last_arrival = arrival


class TrendlineDetector:
    """Feed acknowledged packets with :meth:`on_packet`; read :attr:`state` (see module doc)."""

    def __init__(self, settings: TrendlineSettings | None = None) -> None:
        self.settings = settings or TrendlineSettings()
        self.threshold_ms = self.settings.initial_threshold_ms
        self.modified_trend_ms = 0.0
        self.state: Usage = "normal"
        self._last_threshold_update: float | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the groups and the trend (after a stream timeout); the threshold is kept."""
        self._reset_groups()
        self._first_arrival: float | None = None
        self._accumulated_ms = 0.0
        self._smoothed_ms = 0.0
        self._history: deque[tuple[float, float]] = deque(maxlen=self.settings.window)
        self._deltas = 0
        self._trend = 0.0
        self._time_over_ms = -1.0
        self._overuse_count = 0
        self.modified_trend_ms = 0.0
        self.state = "normal"

    def _reset_groups(self) -> None:
        self._current: _Group | None = None
        self._previous: _Group | None = None
        self._reordered = 0

    def on_packet(self, send: float, arrival: float) -> Usage:
        """Account one acknowledged packet; return the detector state after it."""
        self.on_packets(((arrival, send, 0),))
        return self.state

    def on_packets(self, packets: Iterable[tuple[float, float, int]]) -> Usage:
        """Account acknowledged packets, each ``(arrival, send, size)``, in arrival order; return
        the detector state after them. The per-packet step (does the packet join the group being
        built?) is written out here with local names, since it runs for every packet forwarded;
        the step that closes a group (one in several packets) is ``_close_group``."""
        s = self.settings
        group_s, burst_delta_s, max_burst_s = s.group_s, s.burst_delta_s, s.max_burst_s
        current = self._current
        for arrival, send, _ in packets:
            if current is None:
                current = self._current = _Group(send, arrival)
                continue
            if send < current.first_send:
                continue  # reordered: sent before the group being built
            # does it open a new group?
            send_delta = send - current.last_send
            if send_delta == 0:
                opens = False
            else:
                arrival_delta = arrival - current.last_arrival
                if (
                    arrival_delta - send_delta < 0
                    and arrival_delta <= burst_delta_s
                    and arrival - current.first_arrival < max_burst_s
                ):
                    opens = False  # part of a burst released by a queue
                else:
                    opens = send - current.first_send > group_s
            if not opens:
                if send > current.last_send:
                    current.last_send = send
                current.last_arrival = arrival
                continue
            self._close_group(current, send, arrival)
            current = self._current
        return self.state

    def _close_group(self, current: _Group, send: float, arrival: float) -> None:
        """A packet opens a new group: the two previous complete groups give a delta."""
        s = self.settings
        previous = self._previous
        if previous is not None:
            send_delta = current.last_send - previous.last_send
            arrival_delta = current.last_arrival - previous.last_arrival
            if arrival_delta - send_delta >= s.offset_reset_s:
                self._reset_groups()
                self._current = _Group(send, arrival)
                return
            if arrival_delta < 0:
                self._reordered += 1
                if self._reordered >= s.reordered_reset:
                    self._reset_groups()
                return
            self._reordered = 0
            self._update(send_delta * 1000.0, arrival_delta * 1000.0, arrival)
        self._previous = current
        self._current = _Group(send, arrival)

    def _update(self, send_delta_ms: float, arrival_delta_ms: float, arrival: float) -> None:
        s = self.settings
        self._deltas = min(self._deltas + 1, 1000)  # kDeltaCounterMax
        if self._first_arrival is None:
            self._first_arrival = arrival
        self._accumulated_ms += arrival_delta_ms - send_delta_ms
        self._smoothed_ms = (
            s.smoothing * self._smoothed_ms + (1 - s.smoothing) * self._accumulated_ms
        )
        self._history.append(((arrival - self._first_arrival) * 1000.0, self._smoothed_ms))
        trend = self._trend
        if len(self._history) == s.window:
            slope = _slope(self._history)
            if slope is not None:
                trend = slope
        self._detect(trend, send_delta_ms, arrival)

    def _detect(self, trend: float, send_delta_ms: float, now: float) -> None:
        s = self.settings
        if self._deltas < 2:
            self.state = "normal"
            return
        modified = min(self._deltas, s.max_deltas) * trend * s.threshold_gain
        self.modified_trend_ms = modified
        if modified > self.threshold_ms:
            if self._time_over_ms < 0:
                self._time_over_ms = send_delta_ms / 2  # over half the time since the last group
            else:
                self._time_over_ms += send_delta_ms
            self._overuse_count += 1
            if (
                self._time_over_ms > s.overuse_time_ms
                and self._overuse_count > 1
                and trend >= self._trend
            ):
                self._time_over_ms = 0.0
                self._overuse_count = 0
                self.state = "overusing"
        elif modified < -self.threshold_ms:
            self._time_over_ms = -1.0
            self._overuse_count = 0
            self.state = "underusing"
        else:
            self._time_over_ms = -1.0
            self._overuse_count = 0
            self.state = "normal"
        self._trend = trend
        self._adapt_threshold(modified, now)

    def _adapt_threshold(self, modified: float, now: float) -> None:
        s = self.settings
        last = self._last_threshold_update
        self._last_threshold_update = now
        if last is None or abs(modified) > self.threshold_ms + s.max_adapt_offset_ms:
            return
        k = s.k_down if abs(modified) < self.threshold_ms else s.k_up
        dt_ms = min(max((now - last) * 1000.0, 0.0), s.max_adapt_dt_ms)
        self.threshold_ms += k * (abs(modified) - self.threshold_ms) * dt_ms
        self.threshold_ms = min(max(self.threshold_ms, s.min_threshold_ms), s.max_threshold_ms)


def _slope(points: deque[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``y`` against ``x``; None if all ``x`` are equal."""
    n = len(points)
    mean_x = sum([p[0] for p in points]) / n  # a list, not a generator: once per group, faster
    mean_y = sum([p[1] for p in points]) / n
    num = 0.0
    den = 0.0
    for x, y in points:
        dx = x - mean_x
        num += dx * (y - mean_y)
        den += dx * dx
    return None if den == 0 else num / den
