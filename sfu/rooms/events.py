"""What the clinic domain tells its owner (the server) after a state change.

Listeners are called synchronously, after the change, in the order the changes happened; they must
not raise and should only queue work (tell sockets, close peers, send webhooks, update metrics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ClinicUpdated:
    """A clinic was created (``created``) or renamed by the admin API."""

    clinic: str
    created: bool


@dataclass(frozen=True)
class RoomUpdated:
    """A meeting room was created (``created``) or renamed."""

    clinic: str
    room: str
    created: bool


@dataclass(frozen=True)
class RoomDeleted:
    """A meeting room is gone: tell ``participants`` (ids) ``ended`` / ``room_deleted`` and disconnect them."""

    clinic: str
    room: str
    participants: tuple[str, ...]


@dataclass(frozen=True)
class SpaceCreated:
    """A patient entered the waiting area: a new private space."""

    clinic: str
    space: str


@dataclass(frozen=True)
class SpaceEnded:
    """A space is gone: tell ``participants`` (ids) ``ended`` with ``reason`` and disconnect them.

    Reasons: ``ended_by_staff``, ``expired`` (the patient never connected), ``patient_left`` (the
    patient's reconnect grace ran out), or what the server passed to ``WaitingArea.end``.
    """

    clinic: str
    space: str
    reason: str
    participants: tuple[str, ...]


@dataclass(frozen=True)
class SpaceStatusChanged:
    """A space's status (``waiting``, ``in_consultation``, ``on_hold``) changed from ``previous``.

    Emitted once per change, just before the ``WaitingAreaChanged`` that the same join or leave
    causes; never for a space that has ended.
    """

    clinic: str
    space: str
    status: str
    previous: str


@dataclass(frozen=True)
class InviteRevoked:
    """A guest invite was revoked: put out every guest of ``clinic`` who joined with it
    (``sub``, the invite's id) with ``invite_revoked``."""

    clinic: str
    sub: str


@dataclass(frozen=True)
class WaitingAreaChanged:
    """The clinic's waiting list changed (a space came or went, someone joined or left, a status
    changed, the area was closed or opened): send watchers ``{"type":"waiting_area", ...}``."""

    clinic: str


DomainEvent = (
    ClinicUpdated
    | InviteRevoked
    | RoomUpdated
    | RoomDeleted
    | SpaceCreated
    | SpaceEnded
    | SpaceStatusChanged
    | WaitingAreaChanged
)
Listener = Callable[[DomainEvent], None]
