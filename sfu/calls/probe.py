"""The admission probe: measure a newcomer whose join would fill a call, then admit or refuse.

The newcomer receives the call's audio and one video, unseen (``Call.start_probe``), for
``probe_seconds`` counted from its first media, while its up- and downlink are measured. Clear
evidence of a good link (media both ways, two rounds of receiver reports on everything sent, no
loss, and with transport-cc no delay overuse) ends the probe early. Then
``sfu.bandwidth.decide`` predicts the call with the newcomer: admitted (everyone hears what was degraded) or refused with ``insufficient_bandwidth`` and the
numbers, leaving the call as it was.

``Probe`` is the clock-driven decision (no asyncio: ``poll(now)`` and ``decide(now)``);
``run_probe`` is the thin coroutine that polls it, owned by the newcomer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sfu.bandwidth import BandwidthSettings, Decision, ParticipantEstimate, decide
from sfu.calls.call import Call, Participant
from sfu.calls.events import QualityNotice
from sfu.errors import ApiError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


class Probe:
    def __init__(self, participant: Participant, *, seconds: float, now: float) -> None:
        self.participant = participant
        self.seconds = seconds
        self.started = now
        self.media_at: float | None = None  # the probe counts from the newcomer's first media
        self._reported_at_media = 0

    def poll(self, now: float) -> bool:
        """True once the measurement is over (time is up, or the link is clearly good)."""
        link = self.participant.link
        if self.media_at is None:
            if self.participant.endpoint.got_media:
                self.media_at, self._reported_at_media = now, link.ticks_reported
                return False
            return now - self.started >= self.seconds  # no media at all: decide on no evidence
        measured = now - self.media_at
        if measured >= self.seconds:
            return True
        return (measured >= min(2.0, self.seconds) and bool(link.up_kbps(now))
                and link.ticks_reported - self._reported_at_media >= 2
                and not link.silent and link.loss < 0.02 and not link.overused)

    def decide(self, call: Call, settings: BandwidthSettings, now: float) -> Decision:
        def estimate(p: Participant) -> ParticipantEstimate:
            return ParticipantEstimate(p.id, p.link.limited_up_kbps(now),
                                       p.link.limited_down_kbps(now),
                                       2 if p.role == "patient" else 0)

        newcomer = self.participant
        decision = decide([estimate(p) for p in call.participants.values()], estimate(newcomer),
                          settings, call.max_participants)
        log.info("probe of %s: loss %.3f -> %s", newcomer.id, newcomer.link.loss, decision.code,
                 extra=newcomer.log_context())
        return decision


async def run_probe(probe: Probe, call: Call, settings: BandwidthSettings,
                    monotonic: Callable[[], float],
                    refused: Callable[[Participant, str], None]) -> None:
    """Poll the probe, then admit the newcomer or put it out (``refused`` reports the code)."""
    participant = probe.participant
    while not probe.poll(monotonic()):
        await asyncio.sleep(POLL_SECONDS)
        if participant.closed:
            return
    decision = probe.decide(call, settings, monotonic())
    if participant.closed:
        return
    if not decision.admit:
        log.info("participant %s refused after probe: %s", participant.id, decision.code,
                 extra=participant.log_context())
        refused(participant, decision.code)
        participant.fail(decision.code, decision.message, "refused")
        return
    try:
        call.admit(participant)
    except ApiError as exc:
        refused(participant, exc.code)
        participant.fail(exc.code, exc.message, "refused")
        return
    for p in call.participants.values():
        if p.id in decision.degraded:
            p.client.quality(QualityNotice(p.id, "degraded",
                                           f"a sixth participant joined: {decision.message}",
                                           admission=True))
