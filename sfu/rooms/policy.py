"""Who may enter what, and who may manage what (the rules of issue 3, each tested).

Order of checks, so that a refusal never tells a token holder whether something they may not see
exists: the token's scope first (403), then existence (404). 401 is ``verify_token``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sfu.auth import ADMIN, ALL_CLINICS, GUEST, PATIENT, STAFF, Claims
from sfu.errors import bad_request, forbidden
from sfu.rooms.clinic import Clinic, ClinicRegistry
from sfu.rooms.meeting_room import MeetingRoom
from sfu.rooms.space import Space


@dataclass(frozen=True)
class JoinTarget:
    """What a ``join`` asks for: exactly one of ``space`` / ``room``; ``clinic`` defaults to the
    token's (an admin token for ``*`` must name it)."""

    space: str | None = None
    room: str | None = None
    clinic: str | None = None

    @classmethod
    def parse(cls, raw: object) -> JoinTarget:
        """From the WebSocket ``target`` object (400 when malformed)."""
        if isinstance(raw, JoinTarget):
            return raw
        if not isinstance(raw, Mapping):
            raise bad_request("'target' must be an object: {\"space\": id} or {\"room\": id}")
        values: dict[str, str | None] = {}
        for key in ("space", "room", "clinic"):
            value: Any = raw.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise bad_request(f"'target.{key}' must be a non-empty string")
            values[key] = value
        if (values["space"] is None) == (values["room"] is None):
            raise bad_request("'target' names exactly one of 'space' or 'room'")
        return cls(space=values["space"], room=values["room"], clinic=values["clinic"])

    @property
    def kind(self) -> str:
        return "space" if self.space is not None else "room"

    def to_json(self) -> dict[str, str]:
        out = {"space": self.space} if self.space is not None else {"room": self.room or ""}
        if self.clinic is not None:
            out["clinic"] = self.clinic
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class ResolvedTarget:
    """An authorised join target; ``venue`` is where ``participant_joined`` is to be called."""

    clinic: Clinic
    target: JoinTarget
    space: Space | None = None
    room: MeetingRoom | None = None

    @property
    def venue(self) -> Space | MeetingRoom:
        venue = self.space if self.space is not None else self.room
        assert venue is not None
        return venue


def _target_clinic(claims: Claims, target: JoinTarget) -> str:
    if target.clinic is None:
        if claims.clinic == ALL_CLINICS:
            raise bad_request("an admin token for every clinic must name 'target.clinic'")
        return claims.clinic
    if not claims.acts_on(target.clinic):
        raise forbidden("this token is not for that clinic")
    return target.clinic


def authorize_join(
    claims: Claims, registry: ClinicRegistry, target: object
) -> ResolvedTarget:
    """Resolve a join or refuse it: 400 malformed, 403 out of the token's scope, 404 gone.

    - a patient enters only their own space (``claims.space``), never a meeting room;
    - a guest enters only the one space or room its token names;
    - staff and admins enter spaces and rooms of their own clinic (an admin for ``*``: every clinic).
    """
    wanted, clinic_id = check_join_scope(claims, target)
    clinic = registry.get(clinic_id)
    if wanted.space is not None:
        return ResolvedTarget(clinic, wanted, space=clinic.waiting_area.get(wanted.space))
    assert wanted.room is not None
    return ResolvedTarget(clinic, wanted, room=clinic.room(wanted.room))


def check_join_scope(claims: Claims, target: object) -> tuple[JoinTarget, str]:
    """The part of ``authorize_join`` that needs no registry: 400 malformed, 403 out of the
    token's scope; the parsed target and its clinic id. (A cluster node checks this before it
    looks up where a call lives: a refusal never tells whether it exists.)"""
    wanted = JoinTarget.parse(target)
    clinic_id = _target_clinic(claims, wanted)
    if claims.role == PATIENT:
        if wanted.room is not None:
            raise forbidden("patients cannot enter meeting rooms")
        if wanted.space != claims.space:
            raise forbidden("this token is for another space")
    elif claims.role == GUEST:
        if wanted.space is not None and wanted.space != claims.space:
            raise forbidden("this invitation is for another consultation")
        if wanted.room is not None and wanted.room != claims.room:
            raise forbidden("this invitation is for another meeting room")
    elif claims.role not in (STAFF, ADMIN):  # pragma: no cover - verify_token refuses other roles
        raise forbidden(f"role {claims.role!r} may not join")
    return wanted, clinic_id


def require_member(claims: Claims, clinic_id: str) -> None:
    """Staff or admin of ``clinic_id`` (or an admin for ``*``), else 403."""
    if claims.role not in (STAFF, ADMIN):
        raise forbidden("only clinic staff may do this")
    if not claims.acts_on(clinic_id):
        raise forbidden("this token is not for that clinic")


def require_admin(claims: Claims, clinic_id: str) -> None:
    """An admin of ``clinic_id`` (or an admin for ``*``), else 403."""
    if claims.role != ADMIN:
        raise forbidden("only a clinic admin may do this")
    if not claims.acts_on(clinic_id):
        raise forbidden("this token is not for that clinic")
