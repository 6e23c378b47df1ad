"""A call and its participants: who is in one space or meeting room, and who receives whom.

The ownership tree below the calls manager (``sfu.calls.manager.Calls``), as mediasoup's
Router -> Transport -> Producer/Consumer::

    Call ─┬─ Participant ─┬─ endpoint (MediaEndpoint: peer, producers, consumers)
          │               ├─ link     (Link: what its estimates rest on)
          │               ├─ seat     (its entry in the venue's roster, once admitted)
          │               └─ probe task (while a newcomer's link is measured)
          ├─ Participant ...
          └─ quality      (the call's QualityController, ticked by the manager)

A participant is created with its endpoint (the only place one is made for a call) and
``close`` is the only place that closes it. There are two ways out, both idempotent: the
participant's own client leaves (``close``), or the server puts it out (``kick``: the client is
told why, the participant leaves the call at once and its endpoint is closed in the background).

Everyone admitted receives everyone else's published tracks. A newcomer being probed receives
the call's audio and one video, unseen: nobody is told about it and nobody receives it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from sfu.auth import ADMIN, STAFF
from sfu.calls.events import CallEvents, CallKey, Client, Member
from sfu.calls.link import Link
from sfu.calls.media import EndpointFactory, MediaProducer
from sfu.rooms import WAITING, Space, Venue
from sfu.transport.endpoint import EndpointListener, TrackInfo

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], None]

NEW, PROBING, JOINED, LEFT = "new", "probing", "joined", "left"


class Ticker(Protocol):
    """The call's quality controller, as the call's owner drives it."""

    def tick(self, now: float) -> None: ...
    def urgent(self, now: float) -> None:
        """Reallocate now, between ticks (a link showed congestion)."""


class Participant(EndpointListener):
    """One person in one call: the only object that stands for them on the server."""

    def __init__(self, *, id: str, name: str, role: str, identity: str, call: Call,
                 venue: Venue, client: Client, new_endpoint: EndpointFactory, events: CallEvents,
                 clock: Callable[[], float], spawn: Spawn) -> None:
        self.id = id
        self.name = name
        self.role = role
        self.identity = identity  # the token's ``sub``: the same person joining again replaces this
        self.call = call
        self.venue = venue
        self.client = client
        self.events = events
        self.clock = clock
        self.joined_at = clock()
        self.state = NEW
        self._spawn = spawn
        self._seated = False
        self._media_up = False  # its endpoint connected (ICE and DTLS)
        self._tasks: set[asyncio.Task[None]] = set()
        self.endpoint = new_endpoint(id, self)
        self.link = Link()
        self.link.attach(self.endpoint)

    @property
    def member(self) -> Member:
        return Member(self.id, self.name, self.role)

    @property
    def probing(self) -> bool:
        return self.state == PROBING

    @property
    def closed(self) -> bool:
        return self.state == LEFT

    def log_context(self) -> dict[str, str]:
        """Opaque ids for structured logs (never a name)."""
        return {**self.call.key.ids(), "participant": self.id, "role": self.role}

    # -- the seat in the venue ---------------------------------------------------------------
    def take_seat(self) -> None:
        """Enter the venue's roster (``ApiError`` when it ended or is full: nothing changed)."""
        self.venue.participant_joined(self.id, self.name, self.role, self.clock())
        self._seated = True
        if self._media_up:
            self.venue.media_connected(self.id, self.clock())

    def _leave_seat(self) -> None:
        if self._seated:
            self._seated = False
            self.venue.participant_left(self.id, self.clock())

    # -- tasks it owns -------------------------------------------------------------------------
    def own(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"participant-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- commands from its client -------------------------------------------------------------
    async def answer(self, sdp: str) -> None:
        await self.endpoint.apply_answer(sdp)

    async def add_candidate(self, candidate: str, sdp_mid: str | None) -> None:
        await self.endpoint.add_candidate(candidate, sdp_mid)

    # -- the ways out ------------------------------------------------------------------------
    def detach(self, reason: str) -> None:
        """Leave the call now (idempotent): unwired, seat given back, the others told."""
        if self.state == LEFT:
            return
        self.call.remove(self, reason)
        self.state = LEFT
        self._leave_seat()

    async def close(self, reason: str) -> None:
        """Leave the call and close everything owned, children first (idempotent)."""
        self.detach(reason)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.endpoint.close()

    def kick(self, reason: str) -> None:
        """Put the participant out: its client hears ``ended`` with ``reason``."""
        if self.state == LEFT:
            return
        self.client.ended(reason)
        self.detach(reason)
        self._spawn(self.close(reason))

    def fail(self, code: str, message: str, reason: str) -> None:
        """Put the participant out with an error (``media_failed``, ``insufficient_bandwidth``)."""
        if self.state == LEFT:
            return
        self.client.failed(code, message)
        self.detach(reason)
        self._spawn(self.close(reason))

    # -- what its endpoint tells (EndpointListener) --------------------------------------------
    async def send_offer(self, endpoint: object, sdp: str, tracks: list[TrackInfo]) -> None:
        self.client.offer(sdp, tracks)

    def producers_changed(self, endpoint: object) -> None:
        if self.state != LEFT:
            self.call.producers_changed(self)

    def failed(self, endpoint: object, reason: str) -> None:
        log.info("participant %s: media failed (%s)", self.id, reason, extra=self.log_context())
        self.fail("media_failed", f"media connection lost: {reason}", "failed")

    def connected(self, endpoint: object) -> None:
        self._media_up = True
        if self._seated and self.state != LEFT:
            self.venue.media_connected(self.id, self.clock())

    def first_media(self, endpoint: object) -> None:
        self.events.first_media(self.clock() - self.joined_at)


class Call:
    """The participants of one space or meeting room, and who is forwarded to whom."""

    def __init__(self, key: CallKey, max_participants: int, events: CallEvents,
                 clock: Callable[[], float], on_empty: Callable[[Call], None]) -> None:
        self.key = key
        self._on_empty = on_empty  # the owner forgets an empty call
        self.max_participants = max_participants
        self.events = events
        self.clock = clock
        self.participants: dict[str, Participant] = {}  # admitted, in join order
        self.probing: dict[str, Participant] = {}  # newcomers whose link is being measured
        self.quality: Ticker | None = None  # set by the owner

    def __len__(self) -> int:
        return len(self.participants) + len(self.probing)

    @property
    def full(self) -> bool:
        return len(self) >= self.max_participants

    @property
    def empty(self) -> bool:
        return not self.participants and not self.probing

    def members(self) -> list[Participant]:
        """Everyone with an endpoint in the call: the admitted, then those being probed."""
        return [*self.participants.values(), *self.probing.values()]

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not participant]

    def find_identity(self, identity: str, role: str) -> Participant | None:
        return next((p for p in self.members() if p.identity == identity and p.role == role), None)

    # -- joining -----------------------------------------------------------------------------
    def start_probe(self, participant: Participant) -> None:
        """Let a newcomer receive, unseen, everyone's audio and one video (the patient's when
        there is one) while its link is measured: the load of a degraded call, without flooding
        a weak link so hard that its signaling starves."""
        participant.state = PROBING
        self.probing[participant.id] = participant
        ordered = sorted(self.participants.values(), key=lambda p: p.role != "patient")
        video_taken = False
        for other in ordered:
            for kind, producer in other.endpoint.producers.items():
                if kind == "audio" or not video_taken:
                    participant.endpoint.subscribe(producer)
                    video_taken = video_taken or kind == "video"
        participant.endpoint.start()
        participant.endpoint.renegotiate()

    def admit(self, participant: Participant) -> None:
        """Seat the participant, tell everyone, wire the media (``ApiError`` when the venue
        refuses the seat: then nothing changed but a probing newcomer leaving)."""
        probed = participant.state == PROBING
        venue = participant.venue
        # the first clinician to join a waiting patient ends the wait
        waited = (self.clock() - venue.waiting_since if isinstance(venue, Space)
                  and venue.status == WAITING and participant.role in (STAFF, ADMIN) else None)
        participant.take_seat()
        self.probing.pop(participant.id, None)
        others = list(self.participants.values())
        self.participants[participant.id] = participant
        participant.state = JOINED
        for other in others:
            other.client.member_joined(participant.member)
        self._wire(participant)
        self.events.participant_joined(self.key, participant.id, participant.role)
        if waited is not None:
            self.events.patient_waited(max(0.0, waited))
        log.info("participant %s (%s) joined %s %s", participant.id, participant.role,
                 self.key.kind, self.key.id, extra=participant.log_context())
        participant.client.joined(participant.member, self.key, [p.member for p in others])
        if not probed:
            participant.endpoint.start()
            participant.endpoint.renegotiate()

    def _wire(self, participant: Participant) -> None:
        """Make the forwarding match the call: everyone receives everyone else's tracks."""
        endpoint = participant.endpoint
        for other in self.others(participant):
            for producer in other.endpoint.producers.values():
                endpoint.subscribe(producer)
            for producer in endpoint.producers.values():
                other.endpoint.subscribe(producer)

    def producers_changed(self, participant: Participant) -> None:
        """A participant's published tracks changed: update every subscriber."""
        if participant.state != JOINED:
            return  # nobody receives a probing newcomer
        current = set(participant.endpoint.producers.values())
        for other in self.others(participant):
            for producer in other.endpoint.subscribed():
                if producer.owner == participant.id and producer not in current:
                    other.endpoint.unsubscribe(producer)
            for producer in current:
                other.endpoint.subscribe(producer)

    # -- leaving -------------------------------------------------------------------------------
    def remove(self, participant: Participant, reason: str) -> None:
        """Take a participant out (its own ``detach`` calls this): the others stop receiving it
        and are told; a probing newcomer just goes, unseen."""
        if self.probing.pop(participant.id, None) is not None:
            if self.empty:
                self._on_empty(self)
            return
        if self.participants.pop(participant.id, None) is None:
            return
        producers: list[MediaProducer] = list(participant.endpoint.producers.values())
        for other in self.members():
            for producer in producers:
                other.endpoint.unsubscribe(producer)
        for other in self.participants.values():
            other.client.member_left(participant.member)
        log.info("participant %s left %s %s (%s)", participant.id, self.key.kind, self.key.id,
                 reason, extra={**participant.log_context(), "reason": reason})
        self.events.participant_left(self.key, participant.id, reason)
        if self.empty:
            self._on_empty(self)
