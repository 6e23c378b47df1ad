"""Who is in a space or meeting room: the seats both keep (a roster), and the ``Venue`` protocol.

A ``Seat`` is what the clinic domain knows of a participant: id, display name, role, since when.
The participant itself (its media, its link) is ``sfu.calls.call.Participant``, which takes and
gives back its seat."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from sfu.errors import room_full


@dataclass(frozen=True)
class Seat:
    id: str
    name: str
    role: str
    joined_at: float

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "role": self.role}


class Roster:
    """Participants by id, in join order, at most ``capacity`` of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._by_id: dict[str, Seat] = {}

    def add(self, pid: str, name: str, role: str, now: float) -> Seat:
        """Add a participant; the same id again replaces the old entry (a reconnect)."""
        if pid not in self._by_id and len(self._by_id) >= self.capacity:
            raise room_full(f"this call already has {self.capacity} participants")
        self._by_id.pop(pid, None)
        participant = Seat(pid, name, role, now)
        self._by_id[pid] = participant
        return participant

    def remove(self, pid: str) -> Seat | None:
        return self._by_id.pop(pid, None)

    def get(self, pid: str) -> Seat | None:
        return self._by_id.get(pid)

    def has_role(self, *roles: str) -> bool:
        return any(p.role in roles for p in self._by_id.values())

    @property
    def is_full(self) -> bool:
        return len(self._by_id) >= self.capacity

    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def clear(self) -> None:
        self._by_id.clear()

    def to_json(self) -> list[dict[str, str]]:
        return [p.to_json() for p in self._by_id.values()]

    def __contains__(self, pid: object) -> bool:
        return pid in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Seat]:
        return iter(list(self._by_id.values()))


class Venue(Protocol):
    """What a media session needs from the place it runs in: a ``Space`` or a ``MeetingRoom``."""

    @property
    def id(self) -> str: ...
    @property
    def clinic(self) -> str: ...
    @property
    def kind(self) -> str: ...  # "space" or "room"
    @property
    def closed(self) -> bool: ...  # ended / deleted: no more joins
    @property
    def is_full(self) -> bool: ...
    @property
    def participants(self) -> list[dict[str, str]]: ...
    def participant_joined(self, pid: str, name: str, role: str, now: float) -> Seat: ...
    def participant_left(self, pid: str, now: float) -> Seat | None: ...
    # the participant's media connection is up (a space's expiry counts it)
    def media_connected(self, pid: str, now: float) -> None: ...
