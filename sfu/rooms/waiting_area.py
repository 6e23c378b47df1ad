"""A clinic's one waiting area: the private spaces of the patients who entered it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sfu.errors import conflict, not_found
from sfu.rooms.events import (
    DomainEvent,
    SpaceCreated,
    SpaceEnded,
    SpaceStatusChanged,
    WaitingAreaChanged,
)
from sfu.rooms.settings import WaitingAreaSettings
from sfu.rooms.space import ENDED_BY_STAFF, Space
from sfu.rooms.text import clean_message, clean_name, new_id

DEFAULT_CLOSED_MESSAGE = "The waiting area is closed at the moment. Please try again later."


class WaitingArea:
    def __init__(
        self,
        clinic: str,
        *,
        settings: WaitingAreaSettings,
        capacity: int,
        max_spaces: int,
        closed_message: str = "",
        emit: Callable[[DomainEvent], None],
    ) -> None:
        self.clinic = clinic
        self.settings = settings
        self.capacity = capacity
        self.max_spaces = max_spaces
        self._emit = emit
        self._spaces: dict[str, Space] = {}
        self.closed = bool(closed_message)
        self.closed_message = closed_message

    # -- opening hours ------------------------------------------------------------------------

    def close(self, message: str = "") -> None:
        """Refuse new entries (409 with ``message``); spaces already here stay."""
        message = clean_message(message) or DEFAULT_CLOSED_MESSAGE
        self.closed, self.closed_message = True, message
        self._emit(WaitingAreaChanged(self.clinic))

    def open(self) -> None:
        self.closed, self.closed_message = False, ""
        self._emit(WaitingAreaChanged(self.clinic))

    # -- spaces ---------------------------------------------------------------------------------

    def enter(self, name: object, now: float, *, patient_sub: str | None = None,
              space_id: str | None = None) -> Space:
        """A patient enters: a new private space (409 when closed or full, 400 for a bad name).

        Rate limiting per address is the registry's (``ClinicRegistry.enter_waiting_area``).
        ``space_id``: the id a cluster node chose when it placed the space here.
        """
        if self.closed:
            raise conflict(self.closed_message or DEFAULT_CLOSED_MESSAGE)
        patient_name = clean_name(name)
        if len(self._spaces) >= self.max_spaces:
            raise conflict("The waiting area is full at the moment. Please try again later.")
        if space_id is None or space_id in self._spaces:
            space_id = new_id("sp_")
        while space_id in self._spaces:  # pragma: no cover - 96 random bits
            space_id = new_id("sp_")
        space = self._add(space_id, patient_name, patient_sub or new_id("pt_"), now)
        self._emit(SpaceCreated(self.clinic, space_id))
        self._emit(WaitingAreaChanged(self.clinic))
        return space

    def adopt(self, space_id: str, *, patient_sub: str, waiting_since: float, patient_name: str,
              now: float) -> Space:
        """A space that another node hosted (it was lost or drained) is hosted here from now on:
        the same id, patient and place in the list (``waiting_since``); nobody is inside yet.
        Not a new space: no ``SpaceCreated``. The name is the patient token's, or "" until the
        patient joins."""
        space = self._spaces.get(space_id)
        if space is not None:
            return space
        space = self._add(space_id, patient_name, patient_sub, now)
        space.waiting_since = waiting_since
        self._emit(WaitingAreaChanged(self.clinic))
        return space

    def _add(self, space_id: str, patient_name: str, patient_sub: str, now: float) -> Space:
        space = Space(
            id=space_id,
            clinic=self.clinic,
            patient_name=patient_name,
            patient_sub=patient_sub,
            now=now,
            capacity=self.capacity,
            on_change=self._space_changed,
        )
        self._spaces[space_id] = space
        return space

    def find(self, space_id: str) -> Space | None:
        return self._spaces.get(space_id)

    def get(self, space_id: str) -> Space:
        space = self._spaces.get(space_id)
        if space is None:
            raise not_found("no such space: it has ended or never existed")
        return space

    def unconnected(self) -> int:
        """Open spaces whose patient has no media connection (entered or dropped)."""
        return sum(1 for s in self._spaces.values() if not s.closed and not s.patient_media_connected)

    @property
    def spaces(self) -> list[Space]:
        """Longest waiting first."""
        return sorted(self._spaces.values(), key=lambda s: s.waiting_since)

    def end(self, space_id: str, reason: str = ENDED_BY_STAFF) -> Space:
        """Remove a space; everyone inside is to be told ``ended`` (event ``SpaceEnded``). 404 if gone."""
        space = self.get(space_id)
        self._remove(space, reason)
        self._emit(WaitingAreaChanged(self.clinic))
        return space

    def end_all(self, reason: str) -> list[Space]:
        """Remove every space (e.g. ``server_shutdown``)."""
        ended = list(self._spaces.values())
        for space in ended:
            self._remove(space, reason)
        if ended:
            self._emit(WaitingAreaChanged(self.clinic))
        return ended

    def expire(self, now: float) -> list[Space]:
        """Remove spaces whose patient never connected or whose reconnect grace ran out."""
        removed: list[Space] = []
        for space in list(self._spaces.values()):
            reason = space.expiry_reason(
                now,
                unconnected_expiry=self.settings.unconnected_expiry,
                reconnect_grace=self.settings.reconnect_grace,
            )
            if reason is not None:
                self._remove(space, reason)
                removed.append(space)
        if removed:
            self._emit(WaitingAreaChanged(self.clinic))
        return removed

    def to_json(self) -> dict[str, Any]:
        """``GET waiting-area``; the WebSocket ``waiting_area`` message is ``{"type": ..., **this}``."""
        return {
            "spaces": [space.to_json() for space in self.spaces],
            "closed": self.closed,
            "message": self.closed_message,
        }

    def __len__(self) -> int:
        return len(self._spaces)

    def _remove(self, space: Space, reason: str) -> None:
        del self._spaces[space.id]
        inside = space.end(reason)
        self._emit(SpaceEnded(self.clinic, space.id, reason, inside))

    def _space_changed(self, space: Space, previous: str) -> None:
        if space.id not in self._spaces:
            return
        status = space.status
        if status != previous:
            self._emit(SpaceStatusChanged(self.clinic, space.id, status, previous))
        self._emit(WaitingAreaChanged(self.clinic))
