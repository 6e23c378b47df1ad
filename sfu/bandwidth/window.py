"""Small building blocks shared by the estimators: a sliding-window byte rate and a hysteresis gate.

Both are pure: every method takes the clock ``now`` (seconds, float) as an argument.
"""

from __future__ import annotations

from collections import deque


class RateWindow:
    """Bytes seen over the last ``window_s`` seconds, reported in kbit/s.

    Samples are kept in a deque and evicted lazily, so adding is O(1) amortised. The rate is the
    bytes inside ``(now - window_s, now]`` divided by ``window_s`` (not by the span actually
    covered: callers that need a full window check :meth:`covered_s` first).
    """

    def __init__(self, window_s: float = 1.0) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._bytes = 0
        self._first: float | None = None

    def add(self, now: float, size: int) -> None:
        if self._first is None:
            self._first = now
        self._samples.append((now, size))
        self._bytes += size
        self._evict(now)

    def _evict(self, now: float) -> None:
        horizon = now - self.window_s
        samples = self._samples
        while samples and samples[0][0] <= horizon:
            self._bytes -= samples.popleft()[1]

    def covered_s(self, now: float) -> float:
        """Seconds since the first sample ever added (0 if none)."""
        return 0.0 if self._first is None else max(0.0, now - self._first)

    def kbps(self, now: float) -> float:
        self._evict(now)
        return self._bytes * 8.0 / 1000.0 / self.window_s


class Hysteresis:
    """Reports a value that only moves when the input leaves a band around it.

    The reported value follows the input once ``|input - reported| > band * reported``; smaller
    wiggles are ignored, so consumers (allocator, REMB) do not react to noise.
    """

    def __init__(self, band: float = 0.05) -> None:
        self.band = band
        self.value: float | None = None

    def update(self, raw: float) -> float:
        if self.value is None or abs(raw - self.value) > self.band * self.value:
            self.value = raw
        return self.value

    def reset(self) -> None:
        self.value = None
