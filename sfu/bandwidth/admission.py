"""Admission by bandwidth: admit a newcomer, saying who is degraded, or refuse with the numbers.

Policy (every threshold is a field of the ``[bandwidth]`` section, :class:`BandwidthSettings`):

1. With ``max_participants`` (``limits``) already in the call the answer is ``room_full``.
2. A newcomer whose measured link (the lower of its known uplink and downlink) is below
   ``block_kbps`` is refused with ``insufficient_bandwidth``, whatever else holds.
3. Otherwise the allocation *with* the newcomer is predicted with :func:`allocate`: everyone
   publishes one audio stream (``min_audio_kbps``) and one video stream (up to
   ``FULL_VIDEO_KBPS``, at least ``min_video_kbps``, limited by the publisher's uplink) and
   receives everyone else's. The newcomer is admitted if everyone keeps the minimum:

   * every participant's uplink carries its audio, and every downlink all the audio it receives;
   * every video stream is sent and forwarded at ``min_video_kbps`` or more to everyone, or, when
     ``audio_only_acceptable``, a participant whose link cannot take video gets audio only.

   If not, ``insufficient_bandwidth`` names each participant who would fall short and why.
4. On admission, ``degraded`` lists the incumbents whose predicted reception gets worse than
   without the newcomer, plus the newcomer if it would not receive every video in full.

An unknown estimate (None) counts as unconstrained, like an unknown downlink in the allocator:
only evidence refuses anyone.

:func:`precall_verdict` grades a pre-call test the same way: under ``block_kbps`` ``blocked``;
under ``warn_kbps`` (video likely paused), under ``good_kbps`` (video reduced) or an RTT above
``WARN_RTT_S`` ``warn``; else ``ok``. Only measured limits grade, not lower bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sfu.bandwidth.allocator import (
    Allocation,
    Level,
    Receiver,
    ReceiverLevel,
    Stream,
    allocate,
    receiver_rank,
)
from sfu.bandwidth.settings import BandwidthSettings

Code = Literal["ok", "room_full", "insufficient_bandwidth"]
Verdict = Literal["ok", "warn", "blocked"]


FULL_VIDEO_KBPS = 1000.0  # predicted video rate on an unconstrained link
WARN_RTT_S = 0.4  # a pre-call round trip over this warns


@dataclass(frozen=True)
class ParticipantEstimate:
    id: str
    uplink_kbps: float | None
    downlink_kbps: float | None
    priority: int = 0  # the patient's priority is higher


@dataclass(frozen=True)
class Decision:
    admit: bool
    code: Code
    message: str
    degraded: list[str] = field(default_factory=list)
    levels: dict[str, ReceiverLevel] = field(default_factory=dict)  # predicted, when computed


def _k(value: float) -> str:
    return f"{value:.0f} kbit/s"


def _streams(
    people: Sequence[ParticipantEstimate], s: BandwidthSettings
) -> tuple[list[Stream], dict[str, list[str]]]:
    streams: list[Stream] = []
    for p in people:
        streams.append(
            Stream(f"{p.id}/audio", p.id, "audio", s.min_audio_kbps, s.min_audio_kbps, p.priority)
        )
        video = FULL_VIDEO_KBPS
        if p.uplink_kbps is not None:
            video = min(video, p.uplink_kbps - s.min_audio_kbps)
        if video >= s.min_video_kbps:
            streams.append(
                Stream(f"{p.id}/video", p.id, "video", video, s.min_video_kbps, p.priority)
            )
    subs = {p.id: [st.id for st in streams if st.publisher != p.id] for p in people}
    return streams, subs


def predict(people: Sequence[ParticipantEstimate], settings: BandwidthSettings) -> Allocation:
    """The allocation if exactly ``people`` were in the call."""
    streams, subs = _streams(people, settings)
    receivers = [Receiver(p.id, p.downlink_kbps) for p in people]
    return allocate(receivers, streams, subs)


def _problems(
    people: Sequence[ParticipantEstimate], alloc: Allocation, s: BandwidthSettings
) -> list[str]:
    problems: list[str] = []
    others = len(people) - 1
    audio_need = others * s.min_audio_kbps
    for p in people:
        up = p.uplink_kbps
        if up is not None and up < s.min_audio_kbps:
            problems.append(
                f"{p.id}'s uplink of {_k(up)} cannot carry audio at {_k(s.min_audio_kbps)}"
            )
        elif (
            up is not None
            and not s.audio_only_acceptable
            and up - s.min_audio_kbps < s.min_video_kbps
        ):
            problems.append(
                f"{p.id}'s uplink of {_k(up)} cannot carry video at {_k(s.min_video_kbps)} "
                f"plus audio at {_k(s.min_audio_kbps)}"
            )
        down = p.downlink_kbps
        if down is None:
            continue
        if p.id in alloc.over_budget:
            problems.append(
                f"{p.id} would need {_k(audio_need)} for {others} audio streams at "
                f"{_k(s.min_audio_kbps)} but its downlink is {_k(down)}"
            )
            continue
        videos = [a for sid, a in alloc.for_receiver(p.id).items() if sid.endswith("/video")]
        paused = sum(1 for a in videos if a.level is Level.PAUSED)
        if paused and not s.audio_only_acceptable:
            need = audio_need + len(videos) * s.min_video_kbps
            problems.append(
                f"{p.id}'s downlink of {_k(down)} would carry only {len(videos) - paused} of "
                f"{len(videos)} video streams at {_k(s.min_video_kbps)} (all need {_k(need)})"
            )
    return problems


def decide(
    incumbents: Sequence[ParticipantEstimate],
    newcomer: ParticipantEstimate,
    settings: BandwidthSettings,
    max_participants: int = 6,
) -> Decision:
    """Admit ``newcomer`` or refuse it, by the policy in the module docstring; the call holds at
    most ``max_participants`` (``limits.max_participants``)."""
    s = settings
    if len(incumbents) >= max_participants:
        return Decision(
            False,
            "room_full",
            f"The call already has {len(incumbents)} participants; the maximum is {max_participants}.",
        )
    known = [v for v in (newcomer.uplink_kbps, newcomer.downlink_kbps) if v is not None]
    if known and min(known) < s.block_kbps:
        return Decision(
            False,
            "insufficient_bandwidth",
            f"{newcomer.id}'s connection measures {_k(min(known))} "
            f"(up {_fmt(newcomer.uplink_kbps)}, down {_fmt(newcomer.downlink_kbps)}); "
            f"at least {_k(s.block_kbps)} is needed to join.",
        )
    people = [*incumbents, newcomer]
    after = predict(people, s)
    problems = _problems(people, after, s)
    if problems:
        return Decision(
            False,
            "insufficient_bandwidth",
            f"Admitting {newcomer.id} as participant {len(people)} would leave: "
            + "; ".join(problems)
            + ".",
            levels=dict(after.receiver_levels),
        )
    before = predict(incumbents, s) if incumbents else Allocation()
    degraded = [
        p.id
        for p in incumbents
        if p.id in before.receiver_levels
        and receiver_rank(after.receiver_levels[p.id]) < receiver_rank(before.receiver_levels[p.id])
    ]
    if after.receiver_levels[newcomer.id] is not ReceiverLevel.GOOD:
        degraded.append(newcomer.id)
    message = f"{newcomer.id} admitted as participant {len(people)} of {max_participants}"
    if degraded:
        detail = ", ".join(f"{pid} ({after.receiver_levels[pid].value})" for pid in degraded)
        message += f"; degraded: {detail}"
    return Decision(True, "ok", message + ".", degraded, dict(after.receiver_levels))


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else _k(value)


def graded_link(up_kbps: float, down_kbps: float, *, up_at_least: bool = False,
                down_at_least: bool = False) -> float:
    """The figure a pre-call test is graded by: the lower of the two directions' limits
    (infinite when neither showed one)."""
    limits = [v for v, lower in ((up_kbps, up_at_least), (down_kbps, down_at_least)) if not lower]
    return min(limits) if limits else float("inf")


def precall_video(link_kbps: float, settings: BandwidthSettings) -> str:
    """What a consultation's video can expect on a link graded ``link_kbps``: ``full``,
    ``reduced`` (under ``good_kbps``), ``paused`` (under ``warn_kbps``: audio only at times)
    or ``none`` (under ``block_kbps``)."""
    if link_kbps < settings.block_kbps:
        return "none"
    if link_kbps < settings.warn_kbps:
        return "paused"
    return "reduced" if link_kbps < settings.good_kbps else "full"


def precall_verdict(
    up_kbps: float, down_kbps: float, rtt_s: float | None, settings: BandwidthSettings,
    *, up_at_least: bool = False, down_at_least: bool = False,
) -> tuple[Verdict, str]:
    """Grade a pre-call link test by the clinic's thresholds, with the numbers in the message.

    A figure is either the link's limit (it carried less than it was offered, or lost
    packets) or, ``*_at_least``, a lower bound: the link carried all it was given. Only the
    limits grade: a lower bound under a threshold is no evidence against the link (a browser
    ramps its sending up over tens of seconds, so a few seconds of what it sent prove little),
    as unknown estimates count as unconstrained in admission. Under ``block_kbps``
    ``blocked``; under ``warn_kbps`` ``warn`` (video may be paused); under ``good_kbps``
    ``warn`` (video reduced); an RTT over ``WARN_RTT_S`` ``warn``; else ``ok``."""
    s = settings
    link = graded_link(up_kbps, down_kbps, up_at_least=up_at_least, down_at_least=down_at_least)
    measured = (f"Upload {'at least ' if up_at_least else ''}{_k(up_kbps)}, "
                f"download {'at least ' if down_at_least else ''}{_k(down_kbps)}")
    if rtt_s is not None:
        measured += f", round trip {rtt_s * 1000:.0f} ms"
    if link < s.block_kbps:
        return "blocked", f"{measured}: below the {_k(s.block_kbps)} needed for a consultation."
    reasons: list[str] = []
    if link < s.warn_kbps:
        reasons.append(f"below {_k(s.warn_kbps)} video may be paused (audio only)")
    elif link < s.good_kbps:
        reasons.append(f"below {_k(s.good_kbps)} video may be reduced in quality")
    if rtt_s is not None and rtt_s > WARN_RTT_S:
        reasons.append(f"a round trip over {WARN_RTT_S * 1000:.0f} ms delays conversation")
    if reasons:
        return "warn", f"{measured}: " + "; ".join(reasons) + "."
    return "ok", f"{measured}: good for a video consultation."
