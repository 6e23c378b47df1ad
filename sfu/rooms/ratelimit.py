"""Sliding-window limiter of waiting-area entries per client address."""

from __future__ import annotations

import math
from collections import deque

from sfu.errors import rate_limited


class EntryRateLimiter:
    """At most ``limit`` entries per address in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    def check(self, address: str, now: float) -> None:
        """Count one entry for ``address``, or raise 429 when it is over the limit."""
        hits = self._hits.setdefault(address, deque())
        self._prune(hits, now)
        if len(hits) >= self.limit:
            retry = max(1, math.ceil(hits[0] + self.window - now))
            raise rate_limited(f"too many entries from this address; try again in {retry} s")
        hits.append(now)

    def prune(self, now: float) -> None:
        """Forget addresses without a recent entry (bounded memory)."""
        for address in list(self._hits):
            hits = self._hits[address]
            self._prune(hits, now)
            if not hits:
                del self._hits[address]

    def __len__(self) -> int:
        return len(self._hits)

    def _prune(self, hits: deque[float], now: float) -> None:
        while hits and hits[0] <= now - self.window:
            hits.popleft()
