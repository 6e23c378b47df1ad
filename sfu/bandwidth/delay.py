"""Delay-based overuse detection on the abs-send-time header extension.

A simplified port of libwebrtc's receive-side estimator (the same algorithm aiortc's ``rate.py``
ports), in three steps:

1. **Grouping** (``InterArrival``): packets whose send times lie within 5 ms of the first packet of
   a group form one group (one frame or one pacer burst). For two consecutive groups we compare the
   send-time delta of their last packets with the arrival-time delta. Their difference, the
   *inter-group delay variation*, is positive while a queue builds up on the path.
2. **Trendline**: the variations are accumulated into a one-way queuing delay, smoothed
   exponentially (alpha 0.9), and a least-squares slope is fitted over the last 20 groups. The
   slope, scaled by ``min(groups, 60) * 4``, is the *trend* (ms).
3. **Adaptive threshold**: the trend is compared with a threshold that adapts to it (fast up,
   slow down, clamped to 6..600 ms) so that competing TCP flows do not starve us. A trend above the
   threshold for more than 10 ms and at least two groups, and still rising, signals ``"overuse"``;
   below minus the threshold ``"underuse"``; otherwise ``"normal"``.

abs-send-time is 24 bits of 6.18 fixed-point seconds, wrapping every 64 s; it is unwrapped here.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

Signal = Literal["normal", "overuse", "underuse"]

_AST_BITS = 24
_AST_WRAP = 1 << _AST_BITS
_AST_UNITS_PER_S = float(1 << 18)

GROUP_LENGTH_S = 0.005
TRENDLINE_WINDOW = 20
SMOOTHING = 0.9
THRESHOLD_GAIN = 4.0
MAX_DELTAS = 60
K_UP = 0.0087
K_DOWN = 0.039
OVERUSE_TIME_MS = 10.0


class _Group:
    __slots__ = ("first_send", "last_arrival", "last_send")

    def __init__(self, send: float, arrival: float) -> None:
        self.first_send = send
        self.last_send = send
        self.last_arrival = arrival


class DelayDetector:
    """Feed ``(arrival time, abs-send-time)`` per packet; read :attr:`signal`."""

    def __init__(self) -> None:
        self._last_ast: int | None = None
        self._send_ext = 0.0  # unwrapped send time, seconds
        self._current: _Group | None = None
        self._previous: _Group | None = None
        # trendline
        self._first_arrival: float | None = None
        self._accumulated_ms = 0.0
        self._smoothed_ms = 0.0
        self._history: deque[tuple[float, float]] = deque(maxlen=TRENDLINE_WINDOW)
        self._deltas = 0
        # detector
        self.threshold_ms = 12.5
        self._last_threshold_update: float | None = None
        self._time_over_ms = -1.0
        self._overuse_count = 0
        self._prev_trend = 0.0
        self.trend_ms = 0.0
        self.signal: Signal = "normal"

    def _unwrap(self, abs_send_time: int) -> float:
        ast = abs_send_time & (_AST_WRAP - 1)
        if self._last_ast is None:
            self._send_ext = ast / _AST_UNITS_PER_S
        else:
            delta = (ast - self._last_ast) % _AST_WRAP
            if delta >= _AST_WRAP // 2:
                delta -= _AST_WRAP
            self._send_ext += delta / _AST_UNITS_PER_S
        self._last_ast = ast
        return self._send_ext

    def on_packet(self, now: float, abs_send_time: int) -> Signal:
        """Account one packet; return the detector state after it."""
        send = self._unwrap(abs_send_time)
        current = self._current
        if current is None:
            self._current = _Group(send, now)
            return self.signal
        if send < current.first_send:
            return self.signal  # reordered across groups: ignored, as libwebrtc does
        if send - current.first_send <= GROUP_LENGTH_S:
            current.last_send = max(current.last_send, send)
            current.last_arrival = max(current.last_arrival, now)
            return self.signal
        # `send` starts a new group: the current one is complete.
        previous = self._previous
        if previous is not None:
            send_delta = current.last_send - previous.last_send
            arrival_delta = current.last_arrival - previous.last_arrival
            if arrival_delta < 0 or arrival_delta > 3.0:
                self._reset_trend()  # clock jump or long pause: start over
            else:
                self._update(current.last_arrival, send_delta * 1000.0, arrival_delta * 1000.0)
        self._previous = current
        self._current = _Group(send, now)
        return self.signal

    def _reset_trend(self) -> None:
        self._first_arrival = None
        self._accumulated_ms = 0.0
        self._smoothed_ms = 0.0
        self._history.clear()
        self._deltas = 0

    def _update(self, arrival: float, send_delta_ms: float, arrival_delta_ms: float) -> None:
        if self._first_arrival is None:
            self._first_arrival = arrival
        self._deltas = min(self._deltas + 1, MAX_DELTAS)
        self._accumulated_ms += arrival_delta_ms - send_delta_ms
        self._smoothed_ms = SMOOTHING * self._smoothed_ms + (1 - SMOOTHING) * self._accumulated_ms
        self._history.append(((arrival - self._first_arrival) * 1000.0, self._smoothed_ms))
        if len(self._history) == TRENDLINE_WINDOW:
            slope = _slope(self._history)
            if slope is not None:
                self.trend_ms = slope * self._deltas * THRESHOLD_GAIN
        self._detect(arrival, send_delta_ms)

    def _detect(self, now: float, send_delta_ms: float) -> None:
        trend = self.trend_ms
        if trend > self.threshold_ms:
            if self._time_over_ms < 0:
                self._time_over_ms = send_delta_ms / 2
            else:
                self._time_over_ms += send_delta_ms
            self._overuse_count += 1
            if (
                self._time_over_ms > OVERUSE_TIME_MS
                and self._overuse_count > 1
                and trend >= self._prev_trend
            ):
                self._time_over_ms = 0.0
                self._overuse_count = 0
                self.signal = "overuse"
        elif trend < -self.threshold_ms:
            self._time_over_ms = -1.0
            self._overuse_count = 0
            self.signal = "underuse"
        else:
            self._time_over_ms = -1.0
            self._overuse_count = 0
            self.signal = "normal"
        self._prev_trend = trend
        self._adapt_threshold(now, trend)

    def _adapt_threshold(self, now: float, trend: float) -> None:
        last = self._last_threshold_update
        self._last_threshold_update = now
        if last is None or abs(trend) > self.threshold_ms + 15.0:
            return  # outliers (e.g. a sudden route change) do not move the threshold
        k = K_DOWN if abs(trend) < self.threshold_ms else K_UP
        dt_ms = min((now - last) * 1000.0, 100.0)
        self.threshold_ms += k * (abs(trend) - self.threshold_ms) * dt_ms
        self.threshold_ms = min(max(self.threshold_ms, 6.0), 600.0)


def _slope(points: deque[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``y`` against ``x``; None if all ``x`` are equal."""
    n = len(points)
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return None if den == 0 else num / den
