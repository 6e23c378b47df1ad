"""Pure stream allocation: per receiver, what each subscribed stream is forwarded at.

For each receiver independently, with a budget equal to its downlink (unknown = unconstrained):

1. **Audio first, never paused.** Every subscribed audio stream gets its full rate if all audio
   fits, else its minimum (level ``capped``). If even the minimums do not fit, audio is still
   forwarded at the minimum and the receiver is marked ``over_budget``: audio is never
   sacrificed, and in that case no video is forwarded at all.
2. **Video minimums by priority.** In descending priority (ties by stream id, so the result is
   deterministic) each video stream gets its ``min_kbps`` (``capped``) if it fits in what is
   left, else it is ``paused``. A lower-priority stream with a smaller minimum may still fit
   after a higher one was paused.
3. **Raise toward full by priority.** What is left is handed out in the same order, each stream
   raised up to its ``full_kbps`` (reaching it makes the level ``full``).

So the video total never exceeds the budget, and the patient's stream and the active speaker
(given a higher priority by the caller) are the last to be capped and paused.

A **simulcast** stream (``layers``: the encodings its publisher sends, each with its rate) is
given whole layers: its minimum is its lowest layer, and raising it moves up to the best layer
that fits what is left with ``LAYER_HEADROOM`` (``StreamAllocation.layer``). Its level is ``full`` on its top layer,
``capped`` on a lower one; pausing stays the last resort, when not even the lowest layer fits.

``publisher_cap_kbps`` for each video stream is the most any receiver takes (the encoding that
serves everyone when the publisher simulcasts or the forwarder can thin layers); it is the value
to ask the publisher for via REMB. With ``shared_encoding=True`` (one non-scalable encoding,
forwarded as is) every receiver gets the *same* rate, so each stream's rate is lowered to the
least that any non-paused receiver was given, and the publisher is capped to that.
When nobody receives a video stream its cap is its ``min_kbps`` (the encoder stays alive, so
resuming is quick).

:class:`AllocationSmoother` rate-limits changes over time (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

Kind = Literal["audio", "video"]


# A simulcast layer above the lowest is chosen only when this much of its measured rate fits: a
# layer's rate is an average (keyframes burst above it), packets carry headers the rate leaves
# out, and an estimate on a limited link swings by a fifth; a layer that just does not fit
# freezes the picture for seconds before the estimate says so.
LAYER_HEADROOM = 1.25


class Level(StrEnum):
    FULL = "full"
    CAPPED = "capped"
    PAUSED = "paused"


class ReceiverLevel(StrEnum):
    GOOD = "good"  # every video stream full (or no video)
    DEGRADED = "degraded"  # some video capped or paused
    AUDIO_ONLY = "audio_only"  # every video stream paused


_RANK = {Level.PAUSED: 0, Level.CAPPED: 1, Level.FULL: 2}
_RECEIVER_RANK = {ReceiverLevel.AUDIO_ONLY: 0, ReceiverLevel.DEGRADED: 1, ReceiverLevel.GOOD: 2}


def _rank(a: StreamAllocation) -> tuple[int, int]:
    """How good an allocation is: its level, then (simulcast) its layer."""
    return _RANK[a.level], -1 if a.layer is None else a.layer


def receiver_rank(level: ReceiverLevel) -> int:
    """0 audio_only, 1 degraded, 2 good: higher is better."""
    return _RECEIVER_RANK[level]


@dataclass(frozen=True)
class Stream:
    id: str
    publisher: str
    kind: Kind
    full_kbps: float
    min_kbps: float
    priority: int = 0  # higher first: the patient's stream, the active speaker
    # simulcast: (layer index, kbps) of each layer that can be forwarded, lowest rate first;
    # empty for a single encoding. ``min_kbps``/``full_kbps`` are then its lowest/top layer's.
    layers: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class Receiver:
    id: str
    downlink_kbps: float | None  # None: unknown, treated as unconstrained


@dataclass(frozen=True)
class StreamAllocation:
    level: Level
    kbps: float
    layer: int | None = None  # the simulcast layer to forward (None: not simulcast, or paused)


@dataclass
class Allocation:
    """Result of :func:`allocate`. ``streams`` is keyed by ``(receiver_id, stream_id)``."""

    streams: dict[tuple[str, str], StreamAllocation] = field(default_factory=dict)
    receiver_levels: dict[str, ReceiverLevel] = field(default_factory=dict)
    publisher_cap_kbps: dict[str, float] = field(default_factory=dict)
    over_budget: set[str] = field(default_factory=set)  # receivers whose audio alone overflows

    def get(self, receiver_id: str, stream_id: str) -> StreamAllocation:
        return self.streams[(receiver_id, stream_id)]

    def for_receiver(self, receiver_id: str) -> dict[str, StreamAllocation]:
        return {sid: a for (rid, sid), a in self.streams.items() if rid == receiver_id}

    def total_kbps(self, receiver_id: str) -> float:
        return sum(a.kbps for (rid, _), a in self.streams.items() if rid == receiver_id)


def _order(streams: Iterable[Stream]) -> list[Stream]:
    return sorted(streams, key=lambda s: (-s.priority, s.id))


def _allocate_receiver(
    budget: float, subscribed: Sequence[Stream]
) -> tuple[dict[str, StreamAllocation], bool]:
    out: dict[str, StreamAllocation] = {}
    audio = _order(s for s in subscribed if s.kind == "audio")
    video = _order(s for s in subscribed if s.kind == "video")
    full_audio = sum(s.full_kbps for s in audio)
    over = False
    if full_audio <= budget:
        for s in audio:
            out[s.id] = StreamAllocation(Level.FULL, s.full_kbps)
        left = budget - full_audio
    else:
        for s in audio:
            out[s.id] = StreamAllocation(Level.CAPPED, s.min_kbps)
        left = budget - sum(s.min_kbps for s in audio)
        if left < 0:
            over, left = True, 0.0
    given: dict[str, float] = {}
    for s in video:
        if s.min_kbps <= left:
            given[s.id] = s.min_kbps
            left -= s.min_kbps
    chosen: dict[str, int] = {}  # simulcast stream -> position in its layers
    for s in video:
        if s.id not in given or left <= 0:
            continue
        if s.layers:  # whole layers: the best one the budget reaches, with headroom
            at = 0
            while (at + 1 < len(s.layers)
                   and s.layers[at + 1][1] * LAYER_HEADROOM - given[s.id] <= left):
                at += 1
            chosen[s.id] = at
            extra = s.layers[at][1] - given[s.id]
        else:
            extra = max(min(left, s.full_kbps - given[s.id]), 0.0)
        given[s.id] += extra
        left -= extra
    for s in video:
        kbps = given.get(s.id)
        if kbps is None:
            out[s.id] = StreamAllocation(Level.PAUSED, 0.0)
        elif s.layers:
            at = chosen.get(s.id, 0)
            top = at == len(s.layers) - 1
            out[s.id] = StreamAllocation(Level.FULL if top else Level.CAPPED, kbps,
                                         s.layers[at][0])
        else:
            out[s.id] = StreamAllocation(Level.FULL if kbps >= s.full_kbps else Level.CAPPED, kbps)
    return out, over


def summarize(
    allocation: Allocation, receivers: Iterable[str], streams: Mapping[str, Stream]
) -> None:
    """Fill ``receiver_levels`` and ``publisher_cap_kbps`` from ``allocation.streams``."""
    levels: dict[str, list[Level]] = {rid: [] for rid in receivers}
    caps: dict[str, float] = {}
    for (rid, sid), a in allocation.streams.items():
        stream = streams[sid]
        if stream.kind != "video":
            continue
        levels.setdefault(rid, []).append(a.level)
        if a.level is not Level.PAUSED:
            caps[sid] = max(caps.get(sid, 0.0), a.kbps)
    for rid, video_levels in levels.items():
        if all(lv is Level.FULL for lv in video_levels):
            allocation.receiver_levels[rid] = ReceiverLevel.GOOD
        elif all(lv is Level.PAUSED for lv in video_levels):
            allocation.receiver_levels[rid] = ReceiverLevel.AUDIO_ONLY
        else:
            allocation.receiver_levels[rid] = ReceiverLevel.DEGRADED
    for sid, s in streams.items():
        if s.kind == "video":
            allocation.publisher_cap_kbps[sid] = caps.get(sid, s.min_kbps)


def allocate(
    receivers: Sequence[Receiver],
    streams: Sequence[Stream],
    subscriptions: Mapping[str, Sequence[str]],
    shared_encoding: bool = False,
) -> Allocation:
    """Allocate every receiver's subscriptions within its downlink (see module doc).

    Subscriptions to unknown stream ids are ignored.
    """
    by_id = {s.id: s for s in streams}
    result = Allocation()
    for r in receivers:
        budget = math.inf if r.downlink_kbps is None else max(r.downlink_kbps, 0.0)
        subscribed = [
            by_id[sid] for sid in dict.fromkeys(subscriptions.get(r.id, ())) if sid in by_id
        ]
        per_stream, over = _allocate_receiver(budget, subscribed)
        if over:
            result.over_budget.add(r.id)
        for sid, a in per_stream.items():
            result.streams[(r.id, sid)] = a
    if shared_encoding:
        _share(result, by_id)
    summarize(result, (r.id for r in receivers), by_id)
    return result


def _share(result: Allocation, by_id: Mapping[str, Stream]) -> None:
    """Lower each video stream to the least rate any non-paused receiver was given."""
    least: dict[str, float] = {}
    for (_, sid), a in result.streams.items():
        if by_id[sid].kind == "video" and not by_id[sid].layers and a.level is not Level.PAUSED:
            least[sid] = min(least.get(sid, math.inf), a.kbps)
    for key, a in result.streams.items():
        sid = key[1]
        if sid in least and a.level is not Level.PAUSED:
            kbps = least[sid]
            level = Level.FULL if kbps >= by_id[sid].full_kbps else Level.CAPPED
            result.streams[key] = StreamAllocation(level, kbps)


@dataclass(frozen=True)
class LevelChange:
    """One (receiver, stream) whose level changed; ``keyframe``: paused video resumed."""

    receiver_id: str
    stream_id: str
    previous: Level | None  # None: a new subscription
    level: Level
    kbps: float
    keyframe: bool


@dataclass(frozen=True)
class ReceiverChange:
    receiver_id: str
    previous: ReceiverLevel | None
    level: ReceiverLevel


@dataclass(frozen=True)
class SmoothedUpdate:
    allocation: Allocation
    changes: list[LevelChange]
    receiver_changes: list[ReceiverChange]


CONFIRM_WINDOW_S = 3.0  # how long a probe's proof lets upgrades skip the hold


class AllocationSmoother:
    """Rate-limits level changes per (receiver, stream) so that quality does not flap.

    * A downgrade (full -> capped -> paused), or a lower rate within a level, applies at once:
      the link cannot carry the old allocation.
    * An upgrade applies only after a proposal at least that good has been seen continuously for
      ``upgrade_hold_s``; until then the stream stays at its current level and rate (so the
      smoothed total never exceeds the proposed one). Each downgrade that comes less than
      ``upgrade_hold_s`` after the previous upgrade doubles the hold for that pair (up to
      ``max_hold_s``): a link that keeps failing right after recovering is trusted less.
    * A new subscription takes its proposed level at once.

    :meth:`update` returns the smoothed allocation and what changed, so the caller can send
    ``quality`` messages and request a keyframe for each resumed video (``keyframe=True``).
    """

    def __init__(self, upgrade_hold_s: float = 5.0, max_hold_s: float = 60.0) -> None:
        self.upgrade_hold_s = upgrade_hold_s
        self.max_hold_s = max_hold_s
        self._current: dict[tuple[str, str], StreamAllocation] = {}
        self._pending_since: dict[tuple[str, str], float] = {}
        self._hold: dict[tuple[str, str], float] = {}
        self._last_upgrade: dict[tuple[str, str], float] = {}
        self._receiver_levels: dict[str, ReceiverLevel] = {}
        # receiver -> until when its upgrades skip the hold (a probe proved its link)
        self._confirmed: dict[str, float] = {}

    def confirm(self, receiver_id: str, now: float) -> None:
        """The receiver's link proved it carries more (a probe): the upgrades proposed for it
        in the next ``CONFIRM_WINDOW_S`` need not wait out the hold, and the longer holds its
        earlier failures earned are forgiven. A window, not one update: a paused video may
        resume only once its publisher follows the new cap, a tick or two later."""
        self._confirmed[receiver_id] = now + CONFIRM_WINDOW_S
        for key in [k for k in self._hold if k[0] == receiver_id]:
            del self._hold[key]

    def update(self, now: float, proposed: Allocation, streams: Sequence[Stream]) -> SmoothedUpdate:
        by_id = {s.id: s for s in streams}
        out = Allocation(over_budget=set(proposed.over_budget))
        changes: list[LevelChange] = []
        for key, want in proposed.streams.items():
            have = self._current.get(key)
            chosen = self._choose(now, key, have, want)
            out.streams[key] = chosen
            self._current[key] = chosen
            if have is None or have.level is not chosen.level or have.layer != chosen.layer:
                previous = None if have is None else have.level
                resumed = previous is Level.PAUSED and chosen.level is not Level.PAUSED
                changes.append(
                    LevelChange(key[0], key[1], previous, chosen.level, chosen.kbps, resumed)
                )
        for gone in set(self._current) - set(proposed.streams):
            for table in (self._current, self._pending_since, self._hold, self._last_upgrade):
                table.pop(gone, None)
        summarize(out, proposed.receiver_levels, by_id)
        receiver_changes = []
        for rid, level in out.receiver_levels.items():
            before = self._receiver_levels.get(rid)
            if before is not level:
                receiver_changes.append(ReceiverChange(rid, before, level))
        self._receiver_levels = dict(out.receiver_levels)
        for rid in [r for r, until in self._confirmed.items() if until < now]:
            del self._confirmed[rid]
        return SmoothedUpdate(out, changes, receiver_changes)

    def _choose(
        self,
        now: float,
        key: tuple[str, str],
        have: StreamAllocation | None,
        want: StreamAllocation,
    ) -> StreamAllocation:
        if have is None:
            return want
        hold = self._hold.get(key, self.upgrade_hold_s)
        if _rank(want) < _rank(have):
            self._pending_since.pop(key, None)
            last_up = self._last_upgrade.get(key)
            if last_up is not None and now - last_up < hold:
                self._hold[key] = min(hold * 2.0, self.max_hold_s)
            return want
        if _rank(want) == _rank(have):
            self._pending_since.pop(key, None)
            return want
        since = self._pending_since.setdefault(key, now)
        if now - since >= hold or now <= self._confirmed.get(key[0], -1.0):
            self._pending_since.pop(key, None)
            self._last_upgrade[key] = now
            return want
        return StreamAllocation(have.level, min(have.kbps, want.kbps), have.layer)
