"""A meeting room: static, created by an admin, for staff and the guests they invite."""

from __future__ import annotations

from typing import Any, Final

from sfu.errors import not_found
from sfu.rooms.roster import Roster, Seat


class MeetingRoom:
    kind: Final = "room"

    def __init__(self, *, id: str, clinic: str, name: str, capacity: int) -> None:
        self._id = id
        self._clinic = clinic
        self.name = name
        self._roster = Roster(capacity)
        self.deleted = False

    @property
    def id(self) -> str:
        return self._id

    @property
    def clinic(self) -> str:
        return self._clinic

    @property
    def closed(self) -> bool:
        return self.deleted

    @property
    def is_full(self) -> bool:
        return self._roster.is_full

    @property
    def in_use(self) -> bool:
        """Someone is inside: a newcomer is allowed, and the people inside are told."""
        return bool(self._roster)

    @property
    def participants(self) -> list[dict[str, str]]:
        return self._roster.to_json()

    @property
    def roster(self) -> Roster:
        return self._roster

    def participant_joined(self, pid: str, name: str, role: str, now: float) -> Seat:
        """Record a join (404 once deleted, ``room_full`` at capacity)."""
        if self.deleted:
            raise not_found(f"meeting room {self._id!r} was deleted")
        return self._roster.add(pid, name, role, now)

    def participant_left(self, pid: str, now: float) -> Seat | None:
        return self._roster.remove(pid)

    def media_connected(self, pid: str, now: float) -> None:
        return None  # a meeting room does not expire

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "clinic": self._clinic,
            "name": self.name,
            "participants": self._roster.to_json(),
        }
