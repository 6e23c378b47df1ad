"""A call: the participants of one space or meeting room, and who is forwarded to whom.

Everyone in a call receives everyone else's published tracks. The call talks to media only
through the ``MediaEndpoint`` protocol below; it never imports the HTTP layer, and the media
layer never learns about clinics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class MediaEndpoint(Protocol):
    id: str  # the participant id; a producer's ``owner``

    @property
    def producers(self) -> dict[str, Any]: ...

    def subscribe(self, producer: Any) -> Any: ...

    def unsubscribe(self, producer: Any) -> None: ...

    def subscribed(self) -> list[Any]: ...


class CallListener(Protocol):
    def participant_joined(self, call: Call, participant: Participant) -> None: ...

    def participant_left(self, call: Call, participant: Participant, reason: str) -> None: ...


@dataclass(eq=False)
class Participant:
    id: str
    name: str
    role: str
    identity: str  # the token's ``sub``
    endpoint: MediaEndpoint | None = None
    joined_at: float = 0.0
    notify: Callable[[dict[str, Any]], None] = field(default=lambda msg: None)

    def public(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "role": self.role}


@dataclass(frozen=True)
class CallKey:
    clinic: str
    kind: str  # "space" or "room"
    id: str

    def target(self) -> dict[str, str]:
        return {self.kind: self.id}


class Call:
    def __init__(self, key: CallKey, max_participants: int) -> None:
        self.key = key
        self.max_participants = max_participants
        self.participants: dict[str, Participant] = {}
        # Newcomers whose link is being probed before admission: they receive the call's media
        # but nobody is told about them and nobody receives theirs until they are admitted.
        self.probing: dict[str, Participant] = {}
        self.quality: Any = None  # the call's QualityController, set by the owner

    def __len__(self) -> int:
        return len(self.participants) + len(self.probing)

    @property
    def full(self) -> bool:
        return len(self) >= self.max_participants

    def start_probe(self, participant: Participant) -> None:
        """Let a newcomer receive, unseen, everyone's audio and one video (the patient's when
        there is one) while its link is measured: the load of a degraded call, without flooding
        a weak link so hard that its signaling starves."""
        self.probing[participant.id] = participant
        endpoint = participant.endpoint
        if endpoint is None:
            return
        ordered = sorted((p for p in self.participants.values() if p.endpoint is not None),
                         key=lambda p: p.role != "patient")
        video_taken = False
        for other in ordered:
            assert other.endpoint is not None
            for kind, producer in other.endpoint.producers.items():
                if kind == "audio" or not video_taken:
                    endpoint.subscribe(producer)
                    video_taken = video_taken or kind == "video"

    def end_probe(self, participant_id: str) -> Participant | None:
        return self.probing.pop(participant_id, None)

    def add(self, participant: Participant) -> None:
        """Add a participant (the caller has checked admission) and tell the others."""
        self.probing.pop(participant.id, None)
        others = list(self.participants.values())
        self.participants[participant.id] = participant
        for other in others:
            other.notify({"type": "participant_joined", "participant": participant.public()})
        self.wire(participant)

    def remove(self, participant_id: str) -> Participant | None:
        if participant_id in self.probing:
            return self.probing.pop(participant_id)
        participant = self.participants.pop(participant_id, None)
        if participant is None:
            return None
        endpoint = participant.endpoint
        if endpoint is not None:
            for other in [*self.participants.values(), *self.probing.values()]:
                if other.endpoint is None:
                    continue
                for producer in list(endpoint.producers.values()):
                    other.endpoint.unsubscribe(producer)
        for other in self.participants.values():
            other.notify({"type": "participant_left", "participant": participant.public()})
        return participant

    def wire(self, participant: Participant) -> None:
        """Make the forwarding match the call: everyone receives everyone else's tracks."""
        endpoint = participant.endpoint
        if endpoint is None:
            return
        for other in self.participants.values():
            if other is participant or other.endpoint is None:
                continue
            for producer in other.endpoint.producers.values():
                endpoint.subscribe(producer)
            for producer in endpoint.producers.values():
                other.endpoint.subscribe(producer)

    def producers_changed(self, participant: Participant) -> None:
        """A participant's published tracks changed: update every subscriber."""
        endpoint = participant.endpoint
        if endpoint is None:
            return
        current = set(endpoint.producers.values())
        if participant.id in self.probing:
            return  # nobody receives a probing newcomer
        for other in self.participants.values():
            if other is participant or other.endpoint is None:
                continue
            for producer in other.endpoint.subscribed():
                if producer.owner == endpoint.id and producer not in current:
                    other.endpoint.unsubscribe(producer)
            for producer in current:
                other.endpoint.subscribe(producer)

    def others(self, participant_id: str) -> list[Participant]:
        return [p for p in self.participants.values() if p.id != participant_id]

