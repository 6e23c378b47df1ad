"""Joining, probing, admitting and leaving calls; the once-a-second quality tick.

The ``CallManager`` owns every live ``Call`` (keyed by clinic + space/room), the media endpoint
of each participant, and the probe of a newcomer whose join would fill a call: that newcomer
receives the call's media unseen for up to ``bandwidth.probe_seconds`` while its up- and downlink
are measured; then it is admitted (and everyone hears what was degraded) or refused with
``insufficient_bandwidth`` and the numbers, leaving the call exactly as it was.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from sfu.auth import Claims
from sfu.bandwidth import AdmissionSettings, ParticipantEstimate, decide
from sfu.calls.call import Call, CallKey, Participant
from sfu.calls.quality import QualityController, QualitySettings
from sfu.errors import ApiError
from sfu.rooms.policy import ResolvedTarget
from sfu.transport.endpoint import Endpoint

if TYPE_CHECKING:
    from sfu.service.server import Server
    from sfu.service.signaling import SignalingSession

log = logging.getLogger(__name__)


class CallManager:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.calls: dict[CallKey, Call] = {}
        bw = server.config.bandwidth
        self.admission = AdmissionSettings(
            max_participants=server.config.limits.max_participants,
            min_video_kbps=bw.min_video_kbps, min_audio_kbps=bw.min_audio_kbps,
            audio_only_acceptable=bw.audio_only_acceptable, warn_kbps=bw.warn_kbps,
            block_kbps=bw.block_kbps)
        self._emptied = asyncio.Event()
        self.quality_settings = QualitySettings(min_video_kbps=bw.min_video_kbps,
                                                min_audio_kbps=bw.min_audio_kbps)

    # -- joining --------------------------------------------------------------------------------
    def admit(self, session: SignalingSession, claims: Claims,
              resolved: ResolvedTarget) -> tuple[str, str] | None:
        """Admit (or start probing) a participant, or return (code, message). A refusal changes nothing."""
        server = self.server
        if server.draining:
            return "draining", "the server is shutting down; try again in a moment"
        venue = resolved.venue
        if venue.closed:
            return "not_found", "this consultation has ended"
        key = CallKey(resolved.clinic.id, venue.kind, venue.id)
        call = self.calls.get(key) or self._new_call(key)
        # the same identity joining again replaces its old connection (a reload, a reconnect)
        for other in [*call.participants.values(), *call.probing.values()]:
            if other.identity == claims.sub and other.role == claims.role:
                old = self.session_of(other)
                if old is not None:
                    old.ended("replaced")
                    self.detach(old, "replaced")
        if call.full:
            if not call.participants and not call.probing:
                self.calls.pop(key, None)
            return "room_full", (f"this call already has {len(call)} participants, "
                                 f"the most allowed is {call.max_participants}")
        pid = "p_" + secrets.token_hex(8)
        if claims.role == "patient":
            name = claims.name or getattr(venue, "patient_name", "") or "Patient"
        else:
            name = claims.name or claims.role.capitalize()
        participant = Participant(pid, name, claims.role, claims.sub, joined_at=server.clock(),
                                  notify=session.send)
        participant.endpoint = Endpoint(pid, server.endpoint_settings, session, server.counters)
        self.calls[key] = call
        if self._needs_probe(call):
            call.start_probe(participant)
            session.probing(call, participant, participant.endpoint, venue)
            task = asyncio.ensure_future(self._probe(session, call, participant, venue, claims))
            session.own(task)
            return None
        return self._complete(session, call, participant, venue, claims)

    def _new_call(self, key: CallKey) -> Call:
        call = Call(key, self.server.config.limits.max_participants)
        call.quality = QualityController(call, self.quality_settings, self._quality_changed,
                                         self._estimates)
        return call

    def _needs_probe(self, call: Call) -> bool:
        probe = self.server.config.bandwidth.probe_seconds
        return probe > 0 and len(call.participants) >= 1 and len(call) + 1 >= call.max_participants

    def _complete(self, session: SignalingSession, call: Call, participant: Participant,
                  venue: Any, claims: Claims) -> tuple[str, str] | None:
        server = self.server
        try:
            venue.participant_joined(participant.id, participant.name, claims.role, server.clock())
        except ApiError as exc:
            call.end_probe(participant.id)
            self._drop_if_empty(call)
            return exc.code, exc.message
        call.add(participant)
        key = call.key
        server.metrics.join_outcome(claims.role, "admitted")
        server.emit("participant.joined", {"clinic": key.clinic, key.kind: key.id,
                                           "participant": participant.id, "role": claims.role})
        if claims.role in ("staff", "admin") and key.kind == "space":
            since = getattr(venue, "waiting_since", None)
            if since is not None and not getattr(venue, "_wait_observed", False):
                venue._wait_observed = True
                server.metrics.wait_seconds.observe(max(0.0, server.clock() - since))
        log.info("participant %s (%s) joined %s %s", participant.id, claims.role, key.kind, key.id,
                 extra=self.context(call, participant))
        assert isinstance(participant.endpoint, Endpoint)
        session.joined(call, participant, participant.endpoint, venue)
        return None

    async def _probe(self, session: SignalingSession, call: Call, participant: Participant,
                     venue: Any, claims: Claims) -> None:
        """Measure a newcomer's links, then admit or refuse it."""
        quality: QualityController = call.quality
        link = quality.link(participant)
        seconds = self.server.config.bandwidth.probe_seconds
        loop = asyncio.get_running_loop()
        start = loop.time()
        endpoint = participant.endpoint
        assert isinstance(endpoint, Endpoint)
        media_at: float | None = None  # the probe counts from the newcomer's first media
        reported_at_media = 0
        while loop.time() - (media_at or start) < seconds:
            await asyncio.sleep(0.25)
            if participant.id not in call.probing:
                return  # left while probing
            if media_at is None:
                if endpoint.got_media:
                    media_at, reported_at_media = loop.time(), link.ticks_reported
                elif loop.time() - start > seconds + self.server.config.media.connect_timeout:
                    break
                continue
            now = time.monotonic()
            # clear evidence of a good link ends the probe early: media both ways, two rounds of
            # receiver reports on everything sent, no loss
            if loop.time() - media_at >= min(2.0, seconds) and link.up_kbps(now) \
                    and link.ticks_reported - reported_at_media >= 2 and not link.silent \
                    and link.loss < 0.02:
                break
        now = time.monotonic()
        incumbents = [ParticipantEstimate(p.id, quality.link(p).limited_up_kbps(now),
                                          quality.link(p).limited_down_kbps(now),
                                          2 if p.role == "patient" else 0)
                      for p in call.participants.values()]
        newcomer = ParticipantEstimate(participant.id, link.limited_up_kbps(now),
                                       link.limited_down_kbps(now),
                                       2 if participant.role == "patient" else 0)
        decision = decide(incumbents, newcomer, self.admission)
        log.info("probe of %s: up %s down %s loss %.3f -> %s", participant.id,
                 newcomer.uplink_kbps, newcomer.downlink_kbps, link.loss, decision.code,
                 extra=self.context(call, participant))
        if participant.id not in call.probing:
            return
        if not decision.admit:
            log.info("participant %s refused after probe: %s", participant.id, decision.code,
                     extra=self.context(call, participant))
            call.end_probe(participant.id)
            quality.forget(participant.id)
            self._drop_if_empty(call)
            self.server.refused(claims, decision.code, call.key.target())
            session.refuse(decision.code, decision.message)
            return
        outcome = self._complete(session, call, participant, venue, claims)
        if outcome is not None:
            self.server.refused(claims, outcome[0], call.key.target())
            session.refuse(*outcome)
            return
        if decision.degraded:
            for p in call.participants.values():
                if p.id in decision.degraded:
                    p.notify({"type": "quality", "participant": p.id, "level": "degraded",
                              "reason": f"a sixth participant joined: {decision.message}",
                              "admission": True})

    @staticmethod
    def context(call: Call, participant: Participant) -> dict[str, str]:
        """Opaque ids for structured logs (never a name)."""
        return {"clinic": call.key.clinic, call.key.kind: call.key.id,
                "participant": participant.id, "role": participant.role}

    # -- leaving --------------------------------------------------------------------------------
    def session_of(self, participant: Participant) -> SignalingSession | None:
        return next((s for s in self.server.sessions if s.participant is participant), None)

    def _drop_if_empty(self, call: Call) -> None:
        if not call.participants and not call.probing and self.calls.get(call.key) is call:
            self.calls.pop(call.key, None)
        if not self.calls:
            self._emptied.set()

    async def wait_empty(self) -> None:
        """Return once no call is left."""
        while self.calls:
            self._emptied.clear()
            await self._emptied.wait()

    def detach(self, session: SignalingSession, reason: str) -> Endpoint | None:
        """Take a participant out of its call now; return its endpoint for the caller to close."""
        call, participant = session.call, session.participant
        session.mark_left()
        if call is None or participant is None:
            return None
        probing = participant.id in call.probing
        removed = call.remove(participant.id)
        if call.quality is not None:
            call.quality.forget(participant.id)
        if removed is participant and not probing:
            if session.venue is not None:
                session.venue.participant_left(participant.id, self.server.clock())
            log.info("participant %s left %s %s (%s)", participant.id, call.key.kind, call.key.id,
                     reason, extra={**self.context(call, participant), "reason": reason})
            self.server.emit("participant.left", {
                "clinic": call.key.clinic, call.key.kind: call.key.id,
                "participant": participant.id, "reason": reason})
        self._drop_if_empty(call)
        endpoint = session.endpoint
        return endpoint

    async def remove(self, session: SignalingSession, reason: str) -> None:
        endpoint = self.detach(session, reason)
        if endpoint is not None:
            await endpoint.close()

    def end_call(self, key: CallKey, reason: str) -> None:
        call = self.calls.get(key)
        if call is None:
            return
        for participant in [*call.participants.values(), *call.probing.values()]:
            session = self.session_of(participant)
            if session is not None:
                session.ended(reason)

    async def close(self) -> None:
        for call in list(self.calls.values()):
            for participant in [*call.participants.values(), *call.probing.values()]:
                endpoint = participant.endpoint
                call.remove(participant.id)
                if isinstance(endpoint, Endpoint):
                    await endpoint.close()
        self.calls.clear()

    # -- quality ----------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        for call in list(self.calls.values()):
            if call.quality is None:
                continue
            try:
                call.quality.tick(now)
            except Exception:  # noqa: BLE001 - one call's failure must not stop the others
                log.exception("quality tick failed for %s %s", call.key.kind, call.key.id)

    def _quality_changed(self, participant: Participant, level: str, reason: str,
                         estimates: dict[str, Any]) -> None:
        participant.notify({"type": "quality", "participant": participant.id, "level": level,
                            "reason": reason, **estimates})
        self.server.metrics.quality_changes.labels(level).inc()
        self.server.emit("quality.changed", {"participant": participant.id, "level": level})

    def _estimates(self, up: float | None, down: float | None, rtt: float | None) -> None:
        metrics = self.server.metrics
        if up is not None:
            metrics.bandwidth_estimate.labels("uplink").observe(up)
        if down is not None:
            metrics.bandwidth_estimate.labels("downlink").observe(down)
        if rtt is not None:
            metrics.rtt.observe(rtt)

    # -- views --------------------------------------------------------------------------------------
    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        roles: dict[str, int] = {}
        rooms = {"space": 0, "room": 0}
        for call in self.calls.values():
            if call.participants:
                rooms[call.key.kind] += 1
            for p in call.participants.values():
                roles[p.role] = roles.get(p.role, 0) + 1
        return roles, rooms
