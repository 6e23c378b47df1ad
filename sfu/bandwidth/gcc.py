"""Send-side bandwidth estimation on transport-cc feedback: Google Congestion Control (GCC).

What libwebrtc's ``GoogCcNetworkController`` does for a downlink, and therefore what mediasoup
(libwebrtc inside) and LiveKit (pion's GCC port) run: the server stamps each packet it sends with a
transport-wide sequence number and notes the send time; the receiver reports, per sequence
number, when the packet arrived or that it did not. Each report feeds two controllers, and the
estimate is the lower of the two:

* **delay-based** (draft-ietf-rmcat-gcc-02 section 5; libwebrtc ``delay_based_bwe.cc``): the
  acknowledged packets, sorted by arrival, go through :class:`~sfu.bandwidth.trendline.
  TrendlineDetector` (5 ms send-time groups, trendline over 20 groups with smoothing 0.9 and gain
  4, adaptive threshold k_up 0.0087 / k_down 0.039 clamped to 6..600 ms, overuse after 10 ms);
  its state drives :class:`~sfu.bandwidth.aimd.AimdRateControl` (decrease to 0.85 x the
  acknowledged bitrate, hold on underuse, increase 8 %/s far from the last decrease point and
  additively near it, never above 1.5 x acknowledged + 10 kbit/s). While overusing, the estimate
  is lowered at most once per RTT (10..200 ms); overuse before any acknowledged bitrate halves it
  every 200 ms (``InitialTimeToReduceFurther``).
* **loss-based** (libwebrtc's classic ``send_side_bandwidth_estimation.cc``): the loss fraction is
  taken over one-second intervals of feedback with at least 20 packets (GoogCC's
  ``kLossUpdateInterval``, ``kLimitNumPackets``). Under 2 %: ``1.08 x`` the lowest target of the
  last second ``+ 1 kbit/s`` (8 %/s); over 10 %: ``target x (1 - loss / 2)``, once per loss
  interval and at most once per ``300 ms + RTT`` (``kBweDecreaseInterval``), but not below
  ``0.85 x`` the highest acknowledged bitrate of that interval (a saturated link delivers its
  capacity, even if less is sent by the time the loss is known; libwebrtc's LossBasedBweV2
  bounds its estimate by the acknowledged rate too); in between: hold.
  A loss fraction older than 6 s (1.2 x ``kMaxRtcpFeedbackInterval``) no longer moves it. Its
  target is capped by the delay-based estimate, as libwebrtc caps ``current_target_``.

The **acknowledged bitrate** is the bytes of the packets that arrived over the last 0.5 s of the
receiver's clock (libwebrtc starts its ``BitrateEstimator`` with a 500 ms window); it is unknown
until the arrivals span that window.

Feedback bookkeeping: 16-bit sequence numbers are unwrapped around the highest seen; the status
of the last 4096 is remembered, so a packet reported twice counts once and a packet reported lost
and then received counts as received (libwebrtc keeps lost packets in its history for that
reason; here the loss is taken back only if its loss interval has not closed yet). Packets older than that, or with non-finite times, are ignored. Every window is also bounded by
that count, whatever clocks the receiver reports. Without feedback for 2 s
(``kStreamTimeOut``) the delay detector starts over.

The estimate is clamped to ``min_kbps .. max_kbps`` and is None until the first feedback. The
RTT defaults to 200 ms (libwebrtc ``kDefaultRtt``) until :meth:`SendSideEstimator.on_rtt` gives
one. Pure: every method takes ``now`` (seconds, the sender's clock, as the send times).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from sfu.bandwidth.aimd import AimdRateControl, AimdSettings
from sfu.bandwidth.trendline import TrendlineDetector, TrendlineSettings, Usage

_SEQ_MOD = 1 << 16
_HALF_SEQ = _SEQ_MOD // 2

Feedback = tuple[int, float, int, float | None]
"""One packet in a feedback: (transport-wide seq, send time s, size bytes, arrival s or None)."""


@dataclass(frozen=True)
class GccSettings:
    start_kbps: float = 300.0  # the first estimate, before any evidence (libwebrtc's default 300)
    min_kbps: float = 30.0  # floor: enough for audio and RTCP; libwebrtc congestion floor 5..30
    max_kbps: float = 20_000.0
    acked_window_s: float = 0.5  # acknowledged bitrate window (BitrateEstimator initial 500 ms)
    loss_interval_s: float = 1.0  # kLossUpdateInterval
    loss_min_packets: int = 20  # kLimitNumPackets
    low_loss: float = 0.02  # kDefaultLowLossThreshold
    high_loss: float = 0.10  # kDefaultHighLossThreshold
    loss_increase_per_s: float = 1.08  # over the lowest target of the last kBweIncreaseInterval
    loss_increase_kbps: float = 1.0  # "+1 kbps so that we do not get stuck"
    loss_decrease_interval_s: float = 0.3  # kBweDecreaseInterval, plus the RTT
    loss_timeout_s: float = 6.0  # 1.2 * kMaxRtcpFeedbackInterval
    initial_reduce_interval_s: float = 0.2  # InitialTimeToReduceFurther: halve every 200 ms
    default_rtt_s: float = 0.2  # kDefaultRtt
    stream_timeout_s: float = 2.0  # kStreamTimeOut
    history: int = 4096  # sequence numbers remembered against duplicates
    trendline: TrendlineSettings = field(default_factory=TrendlineSettings)
    aimd: AimdSettings = field(default_factory=AimdSettings)


class SendSideEstimator:
    """GCC downlink estimate from transport-cc feedback (see the module doc)."""

    def __init__(self, settings: GccSettings | None = None) -> None:
        self.settings = s = settings or GccSettings()
        self._detector = TrendlineDetector(s.trendline)
        self._aimd = AimdRateControl(s.start_kbps, s.min_kbps, s.max_kbps, s.aimd)
        self._rtt_s = s.default_rtt_s
        self._last_feedback: float | None = None
        # sequence bookkeeping
        self._highest: int | None = None
        self._status: dict[int, bool] = {}  # unwrapped seq -> received
        self._order: deque[int] = deque()
        # acknowledged bitrate, on the receiver's clock
        self._acked: deque[tuple[float, int]] = deque()
        self._acked_bytes = 0
        self._first_arrival: float | None = None
        self._latest_arrival: float | None = None
        # loss-based
        self._interval_start: float | None = None
        self._expected = 0
        self._lost = 0
        self._loss_report: float | None = None  # time of the last loss fraction
        self._interval_acked = 0.0  # the highest acknowledged bitrate in this loss interval
        self._loss_acked: float | None = None  # ... in the interval of the last loss fraction
        self._decreased_since_report = False
        self._last_loss_decrease = -math.inf
        self._min_history: deque[tuple[float, float]] = deque()
        self._target: float | None = None
        self._hold: tuple[float, float] | None = None  # (until, floor kbit/s): a probe in flight
        self.loss = 0.0
        self.ignored = 0  # packets skipped: non-finite, negative size, too old

    # -- read-only views for logs ---------------------------------------------------------

    @property
    def state(self) -> Usage:
        """The delay detector: ``normal``, ``overusing`` or ``underusing``."""
        return self._detector.state

    @property
    def delay_gradient(self) -> float:
        """The modified trend (ms) that the detector compares with its threshold."""
        return self._detector.modified_trend_ms

    @property
    def threshold_ms(self) -> float:
        return self._detector.threshold_ms

    @property
    def delay_based_kbps(self) -> float:
        return self._aimd.estimate_kbps

    @property
    def acknowledged_kbps(self) -> float | None:
        """Bytes received over the last ``acked_window_s`` of arrivals, None until it is full."""
        first, latest = self._first_arrival, self._latest_arrival
        if first is None or latest is None or latest - first < self.settings.acked_window_s:
            return None
        return self._acked_bytes * 8.0 / 1000.0 / self.settings.acked_window_s

    @property
    def rtt_s(self) -> float:
        return self._rtt_s

    # -- inputs ---------------------------------------------------------------------------

    def on_rtt(self, now: float, rtt_s: float) -> None:
        """An RTT measured elsewhere (RTCP); used for the decrease pacing and additive increase."""
        if math.isfinite(rtt_s) and rtt_s >= 0:
            self._rtt_s = rtt_s

    def on_feedback(self, now: float, packets: Sequence[Feedback]) -> None:
        """Apply one transport-cc feedback: per packet (seq, send s, size, arrival s or None).

        Runs once per feedback packet (about 10/s per receiver) over every packet it reports,
        i.e. once per packet forwarded: the per-packet steps (sequence unwrapping, the duplicate
        bookkeeping, the acknowledged-bitrate window) are written out in this one loop with
        local names, as are the trendline's (``TrendlineDetector.on_packets``), instead of a
        method call each; ``_unwrap``, ``_remember`` and ``_on_acked`` say the same thing one
        packet at a time."""
        if not math.isfinite(now):
            return
        s = self.settings
        last = self._last_feedback
        if last is not None and now - last > s.stream_timeout_s:
            self._detector.reset()
        self._last_feedback = now
        if self._interval_start is None:
            self._interval_start = now
        isfinite = math.isfinite
        history = s.history
        status = self._status
        order = self._order
        highest = self._highest
        expected = self._expected
        lost = self._lost
        ignored = 0
        arrived: list[tuple[float, float, int]] = []
        for seq, send, size, arrival in packets:
            if not isfinite(send) or size < 0 or (arrival is not None and not isfinite(arrival)):
                ignored += 1
                continue
            # self._unwrap(seq), inlined
            seq %= _SEQ_MOD
            if highest is None:
                highest = ext = seq
            else:
                delta = (seq - highest) % _SEQ_MOD
                if delta >= _HALF_SEQ:
                    delta -= _SEQ_MOD
                ext = highest + delta
                if ext > highest:
                    highest = ext
                elif ext <= highest - history:
                    ignored += 1  # too old to tell a duplicate
                    continue
            known = status.get(ext)
            if known:
                continue  # already acknowledged
            if known is None:  # self._remember(ext, arrival is not None), inlined
                status[ext] = arrival is not None
                order.append(ext)
                if len(order) > history:
                    status.pop(order.popleft(), None)
                expected += 1
                if arrival is None:
                    lost += 1
                    continue
            elif arrival is None:
                continue  # reported lost again
            else:  # reported lost before, arrived after all
                status[ext] = True
                lost = max(lost - 1, 0)
            arrived.append((arrival, send, size))
        self._highest = highest
        self._expected = expected
        self._lost = lost
        self.ignored += ignored
        if arrived:
            arrived.sort()
            self._on_acked_sorted(arrived)
            self._detector.on_packets(arrived)
        acked = self.acknowledged_kbps
        if acked is not None and acked > self._interval_acked:
            self._interval_acked = acked
        self._update_loss(now)
        if arrived:
            self._update_delay_based(now)
        self._update_target(now)

    # -- bookkeeping ----------------------------------------------------------------------

    def _unwrap(self, seq: int) -> int | None:
        seq %= _SEQ_MOD
        highest = self._highest
        if highest is None:
            self._highest = seq
            return seq
        delta = (seq - highest) % _SEQ_MOD
        if delta >= _SEQ_MOD // 2:
            delta -= _SEQ_MOD
        ext = highest + delta
        if ext > highest:
            self._highest = ext
        elif ext <= highest - self.settings.history:
            return None  # too old to tell a duplicate
        return ext

    def _remember(self, ext: int, received: bool) -> None:
        self._status[ext] = received
        self._order.append(ext)
        while len(self._order) > self.settings.history:
            self._status.pop(self._order.popleft(), None)

    def _on_acked(self, arrival: float, size: int) -> None:
        window = self.settings.acked_window_s
        latest = self._latest_arrival
        if latest is not None and arrival <= latest - window:
            return  # acknowledged too late to count towards the current window
        if self._first_arrival is None:
            self._first_arrival = arrival
        self._acked.append((arrival, size))
        self._acked_bytes += size
        latest = arrival if latest is None else max(latest, arrival)
        self._latest_arrival = latest
        acked = self._acked
        while acked and (acked[0][0] <= latest - window or len(acked) > self.settings.history):
            self._acked_bytes -= acked.popleft()[1]  # the count bound holds against odd clocks

    def _on_acked_sorted(self, arrived: list[tuple[float, float, int]]) -> None:
        """``_on_acked`` for each of ``arrived`` (sorted by arrival), the window trimmed once:
        the same result, since the latest arrival only grows along a sorted batch (a packet
        skipped as too late is one older than the window before the batch, and what a trim in
        between would drop the final trim drops too)."""
        window = self.settings.acked_window_s
        latest = self._latest_arrival
        acked = self._acked
        added = 0
        if latest is None:
            first = arrived[0][0]
            self._first_arrival = first
            latest = first
            cutoff = -math.inf
        else:
            cutoff = latest - window
        for arrival, _, size in arrived:
            if arrival <= cutoff:
                continue  # acknowledged too late to count towards the current window
            acked.append((arrival, size))
            added += size
            if arrival > latest:
                latest = arrival
        self._latest_arrival = latest
        self._acked_bytes += added
        history = self.settings.history
        trim = latest - window
        while acked and (acked[0][0] <= trim or len(acked) > history):
            self._acked_bytes -= acked.popleft()[1]  # the count bound holds against odd clocks

    # -- the two controllers --------------------------------------------------------------

    def _update_delay_based(self, now: float) -> None:
        aimd = self._aimd
        acked = self.acknowledged_kbps
        usage = self._detector.state
        if usage == "overusing":
            if acked is not None:
                if aimd.time_to_reduce(now, acked, self._rtt_s):
                    aimd.update(now, usage, acked, self._rtt_s)
            elif aimd.since_change_s(now) >= self.settings.initial_reduce_interval_s:
                aimd.set_estimate(now, aimd.estimate_kbps / 2)
        else:
            aimd.update(now, usage, acked, self._rtt_s)

    def _update_loss(self, now: float) -> None:
        s = self.settings
        start = self._interval_start
        if start is None or now - start < s.loss_interval_s or self._expected < s.loss_min_packets:
            return
        self.loss = min(max(self._lost / self._expected, 0.0), 1.0)
        self._loss_acked = self._interval_acked or None
        self._interval_acked = 0.0
        self._expected = self._lost = 0
        self._interval_start = now
        self._loss_report = now
        self._decreased_since_report = False

    def _update_target(self, now: float) -> None:
        s = self.settings
        target = self._target if self._target is not None else s.start_kbps
        history = self._min_history
        while history and now - history[0][0] >= 1.0:  # kBweIncreaseInterval
            history.popleft()
        while history and target <= history[-1][1]:
            history.pop()
        if len(history) >= self.settings.history:
            history.popleft()
        history.append((now, target))
        report = self._loss_report
        if report is not None and now - report < s.loss_timeout_s:
            if self.loss <= s.low_loss:
                target = history[0][1] * s.loss_increase_per_s + s.loss_increase_kbps
            elif self.loss > s.high_loss and not self._decreased_since_report:
                if now - self._last_loss_decrease >= s.loss_decrease_interval_s + self._rtt_s:
                    decreased = target * (1.0 - 0.5 * self.loss)
                    # what the receiver demonstrably got is a floor: a saturated link delivers
                    # its capacity, so cutting below it again for the same burst of loss (a
                    # join's flood, a keyframe storm) only starves a link that works
                    acked = self._loss_acked
                    if acked is not None:
                        decreased = max(decreased, min(target, s.aimd.beta * acked))
                    target = decreased
                    self._last_loss_decrease = now
                    self._decreased_since_report = True
        target = min(target, self._aimd.estimate_kbps)
        hold = self._hold
        if hold is not None:
            if now < hold[0]:
                # the probe's own queue or loss: it failed, which costs the probe, not the link
                if self._aimd.estimate_kbps < hold[1]:
                    self._aimd.set_estimate(now, hold[1])
                target = max(target, hold[1])
            else:
                self._hold = None
        self._target = min(max(target, s.min_kbps), s.max_kbps)

    def hold(self, until: float, kbps: float) -> None:
        """A probe cluster is in flight until ``until`` (sent, and its feedback back): the delay
        and loss it causes itself say that it failed, not that the link carries less than the
        ``kbps`` known before it, so neither part cuts below that meanwhile (LiveKit's stream
        allocator likewise returns to the committed estimate when a probe fails). After
        ``until`` the estimator reacts to what it sees as usual."""
        self._hold = (until, kbps)

    def on_probe(self, now: float, kbps: float) -> None:
        """A probe cluster proved the link carries ``kbps``: both parts may start from there
        (libwebrtc's probe result, applied with ``SetEstimate``)."""
        s = self.settings
        kbps = min(max(kbps, s.min_kbps), s.max_kbps)
        if kbps > self._aimd.estimate_kbps:
            self._aimd.set_estimate(now, kbps)
        if self._target is None or kbps > self._target:
            self._target = kbps
            self._min_history.clear()
            self._min_history.append((now, kbps))

    # -- output ---------------------------------------------------------------------------

    def estimate_kbps(self, now: float) -> float | None:
        """The target rate in kbit/s, None before the first feedback.

        ``min(delay-based, loss-based)``, as of the last feedback: ``now`` is taken for symmetry
        with the other estimators (no decay without feedback yet).
        """
        return self._target
