"""A receive-side bandwidth estimate that grows like Chromium's REMB, for the synthetic client.

Chromium as a subscriber (REMB negotiated, no transport-cc) sends a REMB from its receive-side
estimator (libwebrtc ``AimdRateControl``): it starts low, grows about 8 % a second while nothing
goes wrong, never grows past about 1.5 x what it actually receives, and is cut when the delay
builds up (to 0.85 x the incoming rate) or, here, when the loss passes 10 %. After
``init_after`` seconds of reception it is set to the measured incoming rate if that is higher
(libwebrtc initializes its estimate from the measured throughput after 5 s).

Pure: :meth:`ReceiveEstimate.update` takes cumulative counters and the time; the client calls it
about once a second and sends the result as REMB.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RembSettings:
    start_bps: int = 300_000
    min_bps: int = 30_000
    max_bps: int = 20_000_000
    growth_per_s: float = 0.08
    loss_cut: float = 0.10  # cut above this loss fraction; grow only below ``loss_grow``
    loss_grow: float = 0.02
    overuse_ms: float = 30.0  # queueing delay above the recent minimum that counts as overuse
    backoff: float = 0.85
    init_after: float = 5.0  # seconds of reception before the estimate may jump to the rate


class ReceiveEstimate:
    def __init__(self, settings: RembSettings | None = None) -> None:
        self.settings = settings or RembSettings()
        self.bps = float(self.settings.start_bps)
        self.incoming_bps = 0.0
        self.loss = 0.0
        self.delay_ms: float | None = None
        self.overuse = False
        self._last: tuple[float, int, int, int] | None = None  # (now, bytes, expected, received)
        self._started_at: float | None = None
        self._initialized = False
        self._delays: deque[float] = deque(maxlen=10)  # windows' minimum transit, in ms

    def reset_delay(self) -> None:
        """Forget the transit history (the stream it was measured on changed)."""
        self._delays.clear()

    def update(self, now: float, received_bytes: int, expected: int, received: int,
               transit_ms: float | None = None) -> int:
        """The estimate in bit/s, from cumulative ``received_bytes`` and packet counts (expected,
        received) and, if known, the least one-way transit seen since the last call (any offset;
        only its rise over the recent minimum counts)."""
        s = self.settings
        last, self._last = self._last, (now, received_bytes, expected, received)
        if last is None or now <= last[0]:
            return int(self.bps)
        dt = now - last[0]
        self.incoming_bps = max(0, received_bytes - last[1]) * 8 / dt
        exp_d, rec_d = expected - last[2], received - last[3]
        self.loss = max(0.0, (exp_d - rec_d) / exp_d) if exp_d > 0 else 0.0
        self.overuse = False
        if transit_ms is not None:
            baseline = min(self._delays, default=transit_ms)
            self._delays.append(transit_ms)
            self.delay_ms = transit_ms - min(baseline, transit_ms)
            self.overuse = self.delay_ms > s.overuse_ms
        if self.incoming_bps > 0 and self._started_at is None:
            self._started_at = now
        if self.loss > s.loss_cut:
            self.bps = min(self.bps, self.incoming_bps) * (1 - self.loss / 2)
        elif self.overuse:
            self.bps = min(self.bps, s.backoff * self.incoming_bps)
        elif self.loss < s.loss_grow:
            if (not self._initialized and self._started_at is not None
                    and now - self._started_at >= s.init_after):
                self._initialized = True
                self.bps = max(self.bps, self.incoming_bps)
            ceiling = 1.5 * self.incoming_bps + 10_000
            if self.bps < ceiling:
                self.bps = min(self.bps * (1 + s.growth_per_s) ** dt, ceiling)
        self.bps = max(s.min_bps, min(s.max_bps, self.bps))
        return int(self.bps)
