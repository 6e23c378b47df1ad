"""Receive-side estimate of one participant's uplink: what it can send to the server.

Three kinds of evidence are combined, as libwebrtc's remote bitrate estimator (and aiortc's
``rate.py`` port) does, with loss added from sequence gaps:

* **incoming rate**: bytes received over a sliding window (1 s);
* **delay**: :class:`~sfu.bandwidth.delay.DelayDetector` on the abs-send-time extension signals
  ``overuse`` when a queue is building up on the path;
* **loss**: the share of sequence numbers missing over a 2 s window (:class:`SequenceLoss`).

They drive an AIMD controller:

* *overuse* -> decrease to ``0.85 * incoming`` (at most every 0.5 s, never upwards);
* loss above 10 % -> decrease to ``incoming * (1 - loss / 2)`` (same pacing);
* *underuse*, or loss between 2 % and 10 % -> hold;
* otherwise -> increase by 8 % per second, but never above ``1.5 * incoming + 10`` kbit/s (a
  capacity that was never exercised is not claimed; an estimate already above that bound is kept,
  not lowered, because a sender that chooses to send less has not lost capacity).

The estimate is unknown (None) until one second of media has been seen, and is reported through
a 5 % hysteresis band so that small oscillations do not reach the allocator.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from sfu.bandwidth.delay import DelayDetector, Signal
from sfu.bandwidth.window import Hysteresis, RateWindow

_SEQ_MOD = 1 << 16
_MAX_DROPOUT = 3000  # a larger jump is a new sequence (sender restart), as in libwebrtc


class SequenceLoss:
    """Loss from gaps in a 16-bit RTP sequence, over a sliding time window.

    Sequence numbers are unwrapped to integers around the highest one seen, so wrap-around and
    reordering (a late packet fills its gap) are handled; duplicates are counted once. The loss
    fraction is ``1 - received / (highest - lowest + 1)`` over packets that arrived within the
    window. A jump of more than 3000 in either direction restarts the count.
    """

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._highest: int | None = None
        self._arrivals: deque[tuple[float, int]] = deque()
        self._seen: set[int] = set()
        self.duplicates = 0

    def on_packet(self, now: float, seq: int) -> None:
        seq &= _SEQ_MOD - 1
        if self._highest is None:
            ext = seq
        else:
            delta = (seq - self._highest) % _SEQ_MOD
            if delta >= _SEQ_MOD // 2:
                delta -= _SEQ_MOD
            if abs(delta) > _MAX_DROPOUT:
                self._arrivals.clear()
                self._seen.clear()
                self._highest = None
                ext = seq
            else:
                ext = self._highest + delta
        if ext in self._seen:
            self.duplicates += 1
            return
        self._highest = ext if self._highest is None else max(self._highest, ext)
        self._seen.add(ext)
        self._arrivals.append((now, ext))
        self._evict(now)

    def _evict(self, now: float) -> None:
        horizon = now - self.window_s
        while self._arrivals and self._arrivals[0][0] <= horizon:
            self._seen.discard(self._arrivals.popleft()[1])

    def fraction(self, now: float) -> float:
        self._evict(now)
        if len(self._seen) < 2:
            return 0.0
        expected = max(self._seen) - min(self._seen) + 1
        return max(0.0, 1.0 - len(self._seen) / expected)


@dataclass(frozen=True)
class UplinkSettings:
    rate_window_s: float = 1.0
    loss_window_s: float = 2.0
    min_evidence_s: float = 1.0  # unknown until media has been seen for this long
    update_interval_s: float = 0.05  # the controller runs at most this often
    increase_per_s: float = 1.08
    decrease_factor: float = 0.85
    decrease_interval_s: float = 0.5
    headroom: float = 1.5  # increase cap: headroom * incoming + margin_kbps
    margin_kbps: float = 10.0
    low_loss: float = 0.02
    high_loss: float = 0.10
    hysteresis: float = 0.05


class UplinkEstimator:
    """Estimate of what one participant can send, from one of its media SSRCs (see module doc)."""

    def __init__(self, settings: UplinkSettings | None = None) -> None:
        self.settings = s = settings or UplinkSettings()
        self._rate = RateWindow(s.rate_window_s)
        self._loss = SequenceLoss(s.loss_window_s)
        self._delay = DelayDetector()
        self._signal: Signal = "normal"
        self._raw: float | None = None
        self._last_update: float | None = None
        self._last_decrease = float("-inf")
        self._reported = Hysteresis(s.hysteresis)

    @property
    def signal(self) -> Signal:
        """The delay detector's latest state (``normal`` without abs-send-time)."""
        return self._signal

    def on_packet(self, now: float, seq: int, size: int, abs_send_time: int | None) -> None:
        """Account one received RTP packet (``size`` in bytes, including headers)."""
        self._rate.add(now, size)
        self._loss.on_packet(now, seq)
        if abs_send_time is not None:
            self._signal = self._delay.on_packet(now, abs_send_time)
            if self._signal == "overuse":
                self._update(now)  # react to overuse without waiting for the next tick
                return
        last = self._last_update
        if last is None or now - last >= self.settings.update_interval_s:
            self._update(now)

    def _update(self, now: float) -> None:
        s = self.settings
        if self._rate.covered_s(now) < s.min_evidence_s:
            return
        incoming = self._rate.kbps(now)
        loss = self._loss.fraction(now)
        last = self._last_update
        self._last_update = now
        if self._raw is None or last is None:
            self._raw = max(incoming, 1.0)
        elif self._signal == "overuse" or loss > s.high_loss:
            if now - self._last_decrease >= s.decrease_interval_s:
                target = self._raw
                if self._signal == "overuse":
                    target = min(target, s.decrease_factor * incoming)
                if loss > s.high_loss:
                    target = min(target, incoming * (1.0 - 0.5 * loss))
                self._raw = max(target, 1.0)
                self._last_decrease = now
        elif self._signal == "normal" and loss < s.low_loss:
            grown = self._raw * s.increase_per_s ** min(now - last, 1.0)
            cap = s.headroom * incoming + s.margin_kbps
            if grown > cap:
                grown = max(self._raw, cap)
            self._raw = grown
        self._reported.update(self._raw)

    def estimate_kbps(self, now: float) -> float | None:
        """The smoothed estimate in kbit/s, or None before ``min_evidence_s`` of media."""
        if self._rate.covered_s(now) < self.settings.min_evidence_s:
            return None
        if self._reported.value is None:
            self._update(now)
        return self._reported.value

    def incoming_kbps(self, now: float) -> float:
        """The measured receive rate over the sliding window."""
        return self._rate.kbps(now)

    def loss_fraction(self, now: float) -> float:
        """Share (0..1) of sequence numbers missing over the loss window."""
        return self._loss.fraction(now)
