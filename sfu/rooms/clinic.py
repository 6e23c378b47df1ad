"""Clinics: each with exactly one waiting area and any number of meeting rooms."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sfu.errors import bad_request, not_found, server_full
from sfu.rooms.events import (
    ClinicUpdated,
    DomainEvent,
    InviteRevoked,
    Listener,
    RoomDeleted,
    RoomUpdated,
)
from sfu.rooms.meeting_room import MeetingRoom
from sfu.rooms.ratelimit import EntryRateLimiter
from sfu.rooms.settings import ClinicSettings, LimitsSettings, WaitingAreaSettings
from sfu.rooms.space import Space
from sfu.rooms.text import clean_name, valid_id
from sfu.rooms.waiting_area import WaitingArea


class Clinic:
    def __init__(self, registry: ClinicRegistry, id: str, name: str, closed_message: str = "") -> None:
        self.id = id
        self.name = name
        self._registry = registry
        self._rooms: dict[str, MeetingRoom] = {}
        self._revoked: dict[str, float] = {}  # guest invite id (its token's sub) -> token expiry
        limits = registry.limits
        self.waiting_area = WaitingArea(
            id,
            settings=registry.waiting_area_settings,
            capacity=limits.max_participants,
            max_spaces=limits.max_spaces_per_clinic,
            closed_message=closed_message,
            emit=registry.emit,
        )

    # -- guest invites ------------------------------------------------------------------------
    def revoke_invite(self, invite: str, expires: float, now: float) -> None:
        """No token of guest invite ``invite`` is taken again (until ``expires``, when it would
        have stopped anyway), and guests in a call with it are put out."""
        self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        self._revoked[invite] = expires
        self._registry.emit(InviteRevoked(self.id, invite))

    def invite_revoked(self, invite: str) -> bool:
        return invite in self._revoked

    def revocations(self) -> dict[str, float]:
        """Revoked guest invites and until when they are refused."""
        return dict(self._revoked)

    @property
    def rooms(self) -> list[MeetingRoom]:
        return list(self._rooms.values())

    def find_room(self, room_id: str) -> MeetingRoom | None:
        return self._rooms.get(room_id)

    def room(self, room_id: str) -> MeetingRoom:
        room = self._rooms.get(room_id)
        if room is None:
            raise not_found(f"no meeting room {room_id!r} in clinic {self.id!r}")
        return room

    def put_room(self, room_id: str, name: object) -> tuple[MeetingRoom, bool]:
        """Create or rename a meeting room; return it and whether it was created (400 on bad input)."""
        if not valid_id(room_id):
            raise bad_request("a room id is 1-64 letters, digits, '-' or '_'")
        clean = clean_name(name)
        room = self._rooms.get(room_id)
        if room is not None:
            room.name = clean
            self._registry.emit(RoomUpdated(self.id, room_id, created=False))
            return room, False
        room = MeetingRoom(
            id=room_id, clinic=self.id, name=clean, capacity=self._registry.limits.max_participants
        )
        self._rooms[room_id] = room
        self._registry.emit(RoomUpdated(self.id, room_id, created=True))
        return room, True

    def delete_room(self, room_id: str) -> MeetingRoom:
        """Delete a room (404 if absent); the people inside are named in ``RoomDeleted``."""
        room = self.room(room_id)
        del self._rooms[room_id]
        room.deleted = True
        self._registry.emit(RoomDeleted(self.id, room_id, room.roster.ids()))
        return room

    def to_json(self) -> dict[str, Any]:
        area = self.waiting_area
        return {
            "id": self.id,
            "name": self.name,
            "rooms": [room.to_json() for room in self._rooms.values()],
            "waiting_area": {"closed": area.closed, "message": area.closed_message, "spaces": len(area)},
        }


class ClinicRegistry:
    """Every clinic of the server, built from the configured ``clinics`` and changed by the admin API.

    ``on_event`` (and listeners added later) hear every ``DomainEvent``.
    """

    def __init__(
        self,
        clinics: Iterable[ClinicSettings],
        *,
        limits: LimitsSettings,
        waiting_area: WaitingAreaSettings,
        on_event: Listener | None = None,
    ) -> None:
        self.limits = limits
        self.waiting_area_settings = waiting_area
        self._listeners: list[Listener] = [on_event] if on_event is not None else []
        self._clinics: dict[str, Clinic] = {}
        self._limiter = EntryRateLimiter(waiting_area.entry_rate_limit, waiting_area.entry_rate_window)
        for clinic_settings in clinics:
            self._add_from_settings(clinic_settings)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, event: DomainEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    @property
    def clinics(self) -> list[Clinic]:
        return list(self._clinics.values())

    def find(self, clinic_id: str) -> Clinic | None:
        return self._clinics.get(clinic_id)

    def get(self, clinic_id: str) -> Clinic:
        clinic = self._clinics.get(clinic_id)
        if clinic is None:
            raise not_found(f"no clinic {clinic_id!r}")
        return clinic

    def put_clinic(self, clinic_id: str, name: object) -> tuple[Clinic, bool]:
        """Create or rename a clinic; return it and whether it was created (400 on bad input)."""
        if not valid_id(clinic_id):
            raise bad_request("a clinic id is 1-64 letters, digits, '-' or '_'")
        clean = clean_name(name)
        clinic = self._clinics.get(clinic_id)
        if clinic is not None:
            clinic.name = clean
            self.emit(ClinicUpdated(clinic_id, created=False))
            return clinic, False
        clinic = Clinic(self, clinic_id, clean)
        self._clinics[clinic_id] = clinic
        self.emit(ClinicUpdated(clinic_id, created=True))
        return clinic, True

    def enter_waiting_area(
        self, clinic_id: str, name: object, address: str, now: float, *,
        patient_sub: str | None = None, space_id: str | None = None, rate_checked: bool = False
    ) -> Space:
        """A patient enters ``clinic_id``'s waiting area from ``address``.

        404 unknown clinic, 409 closed (with its message) or full, 429 over the per-address rate,
        400 bad name. Every attempt at an open waiting area counts towards the rate, unless
        ``rate_checked`` (the cluster node that placed the space here counted it).
        """
        area = self.get(clinic_id).waiting_area
        if area.closed:
            return area.enter(name, now)  # raises 409 with the clinic's message
        if not rate_checked:
            self._limiter.check(address, now)
        unconnected = sum(c.waiting_area.unconnected() for c in self._clinics.values())
        if unconnected >= self.limits.unconnected_spaces_total:
            raise server_full("Too many patients are connecting at the moment. Please try "
                              "again in a minute.")
        return area.enter(name, now, patient_sub=patient_sub, space_id=space_id)

    def check_entry_rate(self, address: str, now: float) -> None:
        """Count one entry from ``address`` (429 over the rate): a cluster node counts an entry
        it places on another node."""
        self._limiter.check(address, now)

    def find_space(self, clinic_id: str, space_id: str) -> Space | None:
        clinic = self._clinics.get(clinic_id)
        return None if clinic is None else clinic.waiting_area.find(space_id)

    def expire(self, now: float) -> list[Space]:
        """Remove expired spaces of every clinic; call it periodically (e.g. every few seconds)."""
        removed: list[Space] = []
        for clinic in list(self._clinics.values()):
            removed.extend(clinic.waiting_area.expire(now))
        self._limiter.prune(now)
        return removed

    def end_all(self, reason: str) -> list[Space]:
        """End every space of every clinic (e.g. ``server_shutdown``)."""
        ended: list[Space] = []
        for clinic in list(self._clinics.values()):
            ended.extend(clinic.waiting_area.end_all(reason))
        return ended

    def _add_from_settings(self, settings: ClinicSettings) -> None:
        clinic = Clinic(self, settings.id, settings.name, settings.waiting_area_closed_message)
        self._clinics[clinic.id] = clinic
        for room in settings.rooms:
            clinic._rooms[room.id] = MeetingRoom(
                id=room.id, clinic=clinic.id, name=room.name, capacity=self.limits.max_participants
            )
