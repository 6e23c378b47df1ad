"""Estimate of one participant's downlink: what the server can send to it.

A loss-based controller in the style of libwebrtc's send-side loss estimator and Galène, driven by
the participant's RTCP receiver reports, capped by its REMB when it sends one:

* loss under 2 %  -> grow by 8 % per second of report interval (at most five seconds' worth per
  report: a browser that receives only audio reports about every 5 s), but not above
  ``1.5 * sent + 200`` kbit/s: capacity that was not exercised is not claimed, yet a receiver
  that currently gets audio only can still grow enough to try one video;
* loss over 10 % -> cut to ``min(estimate, sent) * (1 - loss / 2)``, at most once per
  ``rtt + 0.3 s`` so that one congestion episode, reported by several RRs, is cut once;
* in between -> hold.

``sent`` is what the server actually sent to the participant over the last 2 s. The estimate is
unknown (None) until the first receiver report or REMB, never below 20 kbit/s, and reported
through a 5 % hysteresis band. RTT is smoothed as TCP's SRTT (gain 1/8).

A receiver's REMB is evidence of a limit only while it is below what is being sent: a browser's
receive-side estimate grows only with what it receives (Chromium keeps it near 1.5 x the received
rate), so a low REMB towards a receiver that gets little (audio only) says nothing about its link.
A binding REMB is a strict cap; a REMB at or above the sent rate is ignored. (The allocator's
smoother holds an upgrade for 5 s, so a receiver whose REMB bound and then stopped binding once
less was sent is not flooded at once: if its link is still limited, its REMB binds again.)
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.bandwidth.window import Hysteresis, RateWindow


@dataclass(frozen=True)
class DownlinkSettings:
    sent_window_s: float = 2.0
    start_kbps: float = 300.0  # first estimate when nothing has been sent yet
    min_kbps: float = 20.0
    increase_per_s: float = 1.08
    max_growth_interval_s: float = 5.0  # one report grows the estimate for at most this long
    headroom: float = 1.5  # growth cap: headroom * sent + margin_kbps
    margin_kbps: float = 200.0
    low_loss: float = 0.02
    high_loss: float = 0.10
    decrease_guard_s: float = 0.3  # added to the RTT between two cuts
    remb_timeout_s: float = 10.0  # a REMB older than this no longer caps
    hysteresis: float = 0.05


class DownlinkEstimator:
    """Loss-based estimate of what the server can send to one participant (see module doc)."""

    def __init__(self, settings: DownlinkSettings | None = None) -> None:
        self.settings = s = settings or DownlinkSettings()
        self._sent = RateWindow(s.sent_window_s)
        self._loss_based: float | None = None
        self._last_report: float | None = None
        self._last_decrease = float("-inf")
        self._remb: tuple[float, float] | None = None  # (time, kbps)
        self._rtt_s: float | None = None
        self._reported = Hysteresis(s.hysteresis)
        self.fraction_lost = 0.0
        self.jitter_ms = 0.0
        # The owner may raise the growth margin: a receiver whose paused video needs more than
        # ``margin_kbps`` to resume must be allowed to grow that far without sending it first.
        self.margin_kbps = self.settings.margin_kbps

    @property
    def rtt_s(self) -> float | None:
        """Smoothed round-trip time in seconds, None until one was reported."""
        return self._rtt_s

    def on_sent(self, now: float, size: int) -> None:
        """Account ``size`` bytes the server sent to this participant."""
        self._sent.add(now, size)

    def sent_kbps(self, now: float) -> float:
        return self._sent.kbps(now)

    def on_receiver_report(
        self, now: float, fraction_lost: float, jitter_ms: float, rtt_s: float | None
    ) -> None:
        """Apply one RTCP receiver report (``fraction_lost`` 0..1, as decoded from the RR)."""
        s = self.settings
        loss = min(max(fraction_lost, 0.0), 1.0)
        self.fraction_lost = loss
        self.jitter_ms = jitter_ms
        if rtt_s is not None and rtt_s >= 0:
            srtt = self._rtt_s
            self._rtt_s = rtt_s if srtt is None else srtt + (rtt_s - srtt) / 8.0
        sent = self._sent.kbps(now)
        last = self._last_report
        self._last_report = now
        estimate = self._loss_based
        if estimate is None:
            estimate = sent if sent > 0 else s.start_kbps
            last = now
        assert last is not None
        if loss > s.high_loss:
            guard = (self._rtt_s or 0.0) + s.decrease_guard_s
            if now - self._last_decrease >= guard:
                basis = min(estimate, sent) if sent > 0 else estimate
                estimate = min(estimate, basis * (1.0 - 0.5 * loss))
                self._last_decrease = now
        elif loss < s.low_loss:
            grown = estimate * s.increase_per_s ** min(max(now - last, 0.0),
                                                       s.max_growth_interval_s)
            cap = s.headroom * sent + self.margin_kbps
            if grown > cap:
                grown = max(estimate, cap)
            estimate = grown
        self._loss_based = max(estimate, s.min_kbps)

    def on_probe(self, now: float, kbps: float) -> None:
        """A probe cluster proved the link carries ``kbps``: the estimate may start from there."""
        if self._loss_based is None or kbps > self._loss_based:
            self._loss_based = max(kbps, self.settings.min_kbps)
            self._last_report = now

    def on_remb(self, now: float, kbps: float) -> None:
        """Record the participant's REMB: while fresh and below what is sent, a strict cap."""
        self._remb = (now, max(kbps, 0.0))

    def _binds(self, now: float, remb_kbps: float) -> bool:
        """Whether a REMB limits what is sent (a REMB over the sent rate says nothing)."""
        return remb_kbps < self._sent.kbps(now)

    def estimate_kbps(self, now: float) -> float | None:
        """Smoothed estimate in kbit/s; None before any receiver report or REMB."""
        raw = self._loss_based
        remb = self._remb
        cap = None
        if remb is not None and now - remb[0] <= self.settings.remb_timeout_s \
                and (raw is None or self._binds(now, remb[1])):
            cap = remb[1]
            raw = cap if raw is None else min(raw, cap)
        if raw is None:
            return None
        value = self._reported.update(raw)
        return value if cap is None else min(value, cap)  # the REMB cap is strict
