"""Which pre-encoded rendition a synthetic publisher sends, following REMB and its own estimate.

A browser's encoder follows the send-side estimate, which REMB caps: libwebrtc's GoogCC takes the
lower of its transport-cc estimate and the last REMB, and the encoder lowers its bitrate as soon
as that falls and raises it only once a higher rate has held for a while. The synthetic client
cannot re-encode, so it switches between renditions of the same clip encoded at fixed bitrates
(for example 150, 300, 600, 1200 kbit/s). Pure: the caller passes the time.

Rules, on the limit ``min(last REMB, last send-side estimate)`` (either alone while the other is
unknown), re-evaluated whenever either arrives:

* the allowed rendition is the highest whose bitrate is at most the limit (the lowest if none is);
* a lower allowed rendition is taken at once;
* a higher one only after every limit for ``hold`` seconds has allowed it; then the lowest of what
  those limits allowed is taken (a limit that allows only the current one, or less, restarts the
  hold).

The send-side estimate is libwebrtc's GCC (``sfu.bandwidth.SendSideEstimator``) on the server's
transport feedback, made by :func:`publisher_estimator`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from sfu.bandwidth import AimdSettings, GccSettings, SendSideEstimator

# How far above what was acknowledged the publisher's estimate may grow. libwebrtc allows 1.5x
# (+10 kbit/s): its encoder follows the estimate continuously and probes for more. Renditions are
# about 2x apart and the synthetic publisher neither encodes nor probes: at 1.5x it could never
# be allowed the next one. At 2.5x a rendition plus audio opens the next; a link that cannot
# carry it shows overuse or loss and the estimate falls back (down at once, as an encoder).
PUBLISHER_HEADROOM = 2.5


def publisher_estimator(start_kbps: float) -> SendSideEstimator:
    """The send-side estimator a synthetic publisher runs on the server's feedback, starting at
    ``start_kbps`` (what it starts sending, as a browser starts its estimate at its start rate)."""
    return SendSideEstimator(GccSettings(
        start_kbps=start_kbps, aimd=AimdSettings(throughput_headroom=PUBLISHER_HEADROOM)))


class RenditionSelector:
    def __init__(self, kbps: Sequence[int], start_kbps: int, *, hold: float = 2.0) -> None:
        if not kbps or list(kbps) != sorted(kbps) or len(set(kbps)) != len(kbps):
            raise ValueError(f"rendition bitrates must be ascending and distinct: {kbps}")
        self.kbps = tuple(kbps)
        self.hold = hold
        self.current = self.allowed(start_kbps * 1000)
        self._up_since: float | None = None
        self._up_target = self.current
        self.remb_bps: float | None = None
        self.estimate_bps: float | None = None  # the send-side (transport-cc) estimate for video

    @property
    def limit_bps(self) -> float | None:
        """What the rendition must fit: the lower of the REMB and the estimate that are known."""
        known = [b for b in (self.remb_bps, self.estimate_bps) if b is not None]
        return min(known) if known else None

    def allowed(self, bps: float) -> int:
        """Index of the highest rendition at most ``bps`` (0 when none is)."""
        return max(0, bisect.bisect_right(self.kbps, bps / 1000) - 1)

    def on_remb(self, bps: float, now: float) -> int | None:
        """Take a REMB; the index of the rendition to switch to, or None to stay."""
        self.remb_bps = bps
        return self._on_limit(now)

    def on_estimate(self, bps: float, now: float) -> int | None:
        """Take the send-side estimate (the share of it video may use); as :meth:`on_remb`."""
        self.estimate_bps = bps
        return self._on_limit(now)

    def _on_limit(self, now: float) -> int | None:
        limit = self.limit_bps
        assert limit is not None
        allowed = self.allowed(limit)
        if allowed < self.current:
            self._up_since = None
            self.current = allowed
            return allowed
        if allowed == self.current:
            self._up_since = None
            return None
        if self._up_since is None:
            self._up_since = now
            self._up_target = allowed
            return None
        self._up_target = min(self._up_target, allowed)
        if now - self._up_since < self.hold * 0.95:  # REMBs come about once a second
            return None
        self._up_since = None
        self.current = self._up_target
        return self.current
