"""A space: one patient's private consultation, from entry until it ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from sfu.auth import ADMIN, GUEST, PATIENT, STAFF
from sfu.errors import not_found
from sfu.rooms.roster import Roster, Seat
from sfu.rooms.text import iso_time

WAITING: Final = "waiting"
IN_CONSULTATION: Final = "in_consultation"
ON_HOLD: Final = "on_hold"

ENDED_BY_STAFF: Final = "ended_by_staff"
EXPIRED: Final = "expired"  # the patient never had media (or lost it) for too long
PATIENT_LEFT: Final = "patient_left"  # the patient dropped and did not come back in time


class Space:
    """Status is derived from who is inside: staff present -> ``in_consultation``; staff were here
    and left -> ``on_hold``; otherwise ``waiting``. ``waiting_since`` never changes.

    The patient's display name lives only here, in memory. ``on_change(space, previous_status)``
    is called after every join or leave while the space is open; ``previous_status`` is the status
    before it, so the owner can tell a status transition from a mere change of who is inside.
    """

    kind: Final = "space"

    def __init__(
        self,
        *,
        id: str,
        clinic: str,
        patient_name: str,
        patient_sub: str,
        now: float,
        capacity: int,
        on_change: Callable[[Space, str], None] | None = None,
    ) -> None:
        self._id = id
        self._clinic = clinic
        self.patient_name = patient_name
        self.patient_sub = patient_sub
        self.created_at = now
        self.waiting_since = now
        self._roster = Roster(capacity)
        self._on_change = on_change
        self._staff_seen = False
        self._patient_left_at: float | None = None
        # the patient's participants whose media connection is up, and since when none is
        self._patient_media: set[str] = set()
        self._without_media_since = now
        self.end_reason: str | None = None

    @property
    def id(self) -> str:
        return self._id

    @property
    def clinic(self) -> str:
        return self._clinic

    @property
    def closed(self) -> bool:
        """Ended: nobody may join any more."""
        return self.end_reason is not None

    @property
    def is_full(self) -> bool:
        return self._roster.is_full

    @property
    def status(self) -> str:
        if self._roster.has_role(STAFF, ADMIN):
            return IN_CONSULTATION
        return ON_HOLD if self._staff_seen else WAITING

    @property
    def patient_present(self) -> bool:
        return self._roster.has_role(PATIENT)

    @property
    def participants(self) -> list[dict[str, str]]:
        return self._roster.to_json()

    @property
    def roster(self) -> Roster:
        return self._roster

    def participant_joined(self, pid: str, name: str, role: str, now: float) -> Seat:
        """Record a join (404 when the space has ended, ``room_full`` at capacity)."""
        if self.closed:
            raise not_found("this consultation has ended")
        previous = self.status
        participant = self._roster.add(pid, name, role, now)
        if role in (STAFF, ADMIN):
            self._staff_seen = True
        if role == PATIENT:
            self._patient_left_at = None
        self._changed(previous)
        return participant

    def participant_left(self, pid: str, now: float) -> Seat | None:
        """Record a leave (idempotent). When the last patient connection goes, the grace starts."""
        previous = self.status
        participant = self._roster.remove(pid)
        if participant is None:
            return None
        if participant.role == PATIENT and not self.patient_present:
            self._patient_left_at = now
        if pid in self._patient_media:
            self._patient_media.discard(pid)
            if not self._patient_media:
                self._without_media_since = now
        if not self.closed:
            self._changed(previous)
        return participant

    @property
    def patient_media_connected(self) -> bool:
        """A patient's media connection is up in this space right now."""
        return bool(self._patient_media)

    def media_connected(self, pid: str, now: float) -> None:
        """A participant's media connection is up (ICE and DTLS): a patient's keeps the space."""
        seat = self._roster.get(pid)
        if seat is not None and seat.role == PATIENT and not self.closed:
            self._patient_media.add(pid)

    def expiry_reason(self, now: float, *, unconnected_expiry: float, reconnect_grace: float) -> str | None:
        """Why this space should be removed at ``now``, or None to keep it.

        A space whose patient has had no media connection for ``unconnected_expiry`` seconds
        (since entry, or since the last one ended) expires, whatever sockets are open or joined,
        unless a clinician or a guest is in it: a socket that joins and never answers, again and
        again, held a space (and the waiting list's attention) for as long as it liked. A
        patient who dropped keeps the space for ``reconnect_grace`` seconds (whoever else is in
        it).
        """
        if self.closed:
            return None
        if (not self._patient_media and not self._roster.has_role(STAFF, ADMIN, GUEST)
                and now - self._without_media_since >= unconnected_expiry):
            return EXPIRED
        if self.patient_present:
            return None
        if self._patient_left_at is not None:
            return PATIENT_LEFT if now - self._patient_left_at >= reconnect_grace else None
        return None

    def end(self, reason: str) -> tuple[str, ...]:
        """Mark ended (idempotent); return the ids of who was inside."""
        if self.closed:
            return ()
        self.end_reason = reason
        inside = self._roster.ids()
        return inside

    def to_json(self) -> dict[str, Any]:
        """The object of ``GET waiting-area`` and the ``waiting_area`` WebSocket message."""
        return {
            "space": self._id,
            "status": self.status,
            "waiting_since": iso_time(self.waiting_since),
            "patient": {"name": self.patient_name},
            "participants": self._roster.to_json(),
        }

    def _changed(self, previous: str) -> None:
        if self._on_change is not None:
            self._on_change(self, previous)
