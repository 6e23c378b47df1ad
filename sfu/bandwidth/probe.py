"""When to probe a limited downlink, how hard, and what a probe proved.

A downlink whose video is paused or capped carries less than the call needs, so its estimate
can only grow with what it carries (8 %/s at best, and a browser's REMB grows only with what it
receives): without help, a link that came back stays degraded for tens of seconds. As
libwebrtc's probe controller and LiveKit's stream allocator do, the server then sends a short
cluster of padding on top of the media, at the rate the allocation needs, and watches the
receiver's feedback: no loss and no delay overuse during and just after the cluster prove the
link carries that rate, and the estimate may jump to it at once.

Budget: a probe never asks for more than ``max_factor`` times the current estimate (so a weak
link is tested a step at a time, and its audio is not swamped), lasts ``duration_s``, and a
failed probe doubles the wait before the next one (up to ``max_interval_s``).

Pure: the caller passes ``now``; it sends the padding and reports what it saw.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeSettings:
    first_after_s: float = 1.0  # a downlink must have been limited (and clean) this long
    interval_s: float = 0.0  # after a success: the next, higher step (exponential probing) at
    # once, in the tick that judged the last one (its proven rate is already allocated)
    retry_s: float = 1.0  # after the first failure; each further failure doubles it
    max_interval_s: float = 1.0  # ... up to this: a link that comes back is found within it
    # (with the cluster judged a tick later and the publishers following, video is back in 5 s)
    duration_s: float = 0.1  # one cluster of padding: short, so that queues absorb it (at 2x
    # the estimate its excess is 100 ms of the link: what a 100 ms buffer holds)
    settle_s: float = 0.6  # feedback after the cluster that still belongs to it; with the
    # cluster, under the 1 s quality tick: a probe is judged at the next tick, not the one after
    max_factor: float = 2.0  # a probe asks for at most this times what is known to pass
    min_kbps: float = 250.0  # a probe asks for at least this (a paused video's minimum, and audio)
    carried_fraction: float = 0.7  # a cluster that arrived slower than this found the limit
    initial_factor: float = 3.0  # a link never probed is probed at once, this much higher
    # (libwebrtc probes a new connection at 3x its start rate before it has sent anything)


class ProbeController:
    """Probing of one downlink (see the module docstring)."""

    def __init__(self, settings: ProbeSettings | None = None) -> None:
        self.settings = settings or ProbeSettings()
        self._limited_since: float | None = None
        self._next_at = 0.0
        self._wait = self.settings.retry_s
        self._probing: tuple[float, float] | None = None  # (started, rate)
        self._spoiled = False
        self.probes = 0
        self.successes = 0
        self.last_carried = False  # the last cluster judged arrived at its rate (or near it)
        self.last_rate = 0.0  # ... and the rate it was sent at
        # what the last call of judge concluded: None (nothing judged), "carried" (a success),
        # "limit" (it arrived slower: the link's limit), "spoiled" (loss or delay overuse)
        self.verdict: str | None = None

    @property
    def active(self) -> bool:
        """A cluster is being sent or judged."""
        return self._probing is not None

    def plan(self, now: float, *, estimate_kbps: float | None, target_kbps: float,
             limited: bool, clean: bool = True, sent_kbps: float = 0.0) -> float | None:
        """The total rate (media and padding, kbit/s) to probe at from ``now`` for
        ``duration_s``, or None. ``limited``: the allocation leaves video paused or capped;
        ``clean``: the latest feedback shows no loss and no overuse (a lossy link is not
        probed: its loss has to end first); ``sent_kbps``: the media it carries now."""
        s = self.settings
        if not limited:  # recovered: a later limit starts afresh
            self._limited_since = None
            self._wait = s.retry_s
            self._next_at = 0.0
            return None
        if not clean:  # not now: a lossy or queued link has to clear first
            return None
        if self._limited_since is None:
            self._limited_since = now
        first = self.probes == 0
        if self._probing is not None or now < self._next_at \
                or (not first and now - self._limited_since < s.first_after_s):
            return None
        base = max(estimate_kbps or 0.0, sent_kbps)
        factor = s.initial_factor if first else s.max_factor
        rate = max(min(target_kbps, base * factor), min(target_kbps, s.min_kbps))
        if estimate_kbps is not None and rate <= estimate_kbps:
            return None  # the estimate already covers it: nothing to prove
        self._probing = (now, rate)
        self._spoiled = False
        self.probes += 1
        return rate

    def observe(self, *, lossy: bool, overusing: bool) -> None:
        """What the feedback says now: loss over 2 % or delay overuse spoil a running probe."""
        if self._probing is not None and (lossy or overusing):
            self._spoiled = True

    def judge(self, now: float, received_kbps: float | None = None) -> float | None:
        """Once the cluster has been sent and settled: the rate it proved, or None (a failure,
        or nothing to judge yet). ``received_kbps``: the cluster's arrival rate where transport-cc
        measures it; a link that only queued what it was offered proves no more than 95 % of
        what arrived (libwebrtc's probe bitrate estimator). A cluster that arrived at under
        ``carried_fraction`` of its rate found the link's limit: what it proved is returned, but
        probing backs off as after a failure (libwebrtc probes further only above 70 % of the
        target), or a link at its limit would be flooded with a cluster every tick."""
        self.verdict = None
        if self._probing is None:
            return None
        started, rate = self._probing
        s = self.settings
        if now - started < s.duration_s + s.settle_s:
            return None
        self._probing = None
        self.last_rate = rate
        proved = None if self._spoiled else rate
        if proved is not None and received_kbps is not None:
            proved = min(proved, 0.95 * received_kbps)
        if proved is None or proved < s.carried_fraction * rate:
            self._next_at = now + self._wait
            self._wait = min(self._wait * 2.0, s.max_interval_s)
            self.last_carried = False
            self.verdict = "spoiled" if proved is None else "limit"
            return proved
        self.successes += 1
        self.last_carried = True
        self.verdict = "carried"
        self._wait = s.retry_s
        self._next_at = now + s.interval_s
        return proved
