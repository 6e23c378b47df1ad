"""The clinic domain: clinics, their waiting area of private spaces, meeting rooms, participants
and who may enter what. Pure: no asyncio, no HTTP; the clock is passed in as ``now``."""

from sfu.rooms.clinic import Clinic, ClinicRegistry
from sfu.rooms.events import (
    ClinicUpdated,
    DomainEvent,
    Listener,
    RoomDeleted,
    RoomUpdated,
    SpaceCreated,
    SpaceEnded,
    SpaceStatusChanged,
    WaitingAreaChanged,
)
from sfu.rooms.meeting_room import MeetingRoom
from sfu.rooms.policy import (
    JoinTarget,
    ResolvedTarget,
    authorize_join,
    require_admin,
    require_member,
)
from sfu.rooms.roster import Roster, Seat, Venue
from sfu.rooms.space import (
    ENDED_BY_STAFF,
    EXPIRED,
    IN_CONSULTATION,
    ON_HOLD,
    PATIENT_LEFT,
    WAITING,
    Space,
)
from sfu.rooms.text import clean_message, clean_name, iso_time
from sfu.rooms.waiting_area import WaitingArea

__all__ = [
    "ENDED_BY_STAFF",
    "EXPIRED",
    "IN_CONSULTATION",
    "ON_HOLD",
    "PATIENT_LEFT",
    "WAITING",
    "Clinic",
    "ClinicRegistry",
    "ClinicUpdated",
    "DomainEvent",
    "JoinTarget",
    "Listener",
    "MeetingRoom",
    "Seat",
    "ResolvedTarget",
    "RoomDeleted",
    "RoomUpdated",
    "Roster",
    "Space",
    "SpaceCreated",
    "SpaceEnded",
    "SpaceStatusChanged",
    "Venue",
    "WaitingArea",
    "WaitingAreaChanged",
    "authorize_join",
    "clean_message",
    "clean_name",
    "iso_time",
    "require_admin",
    "require_member",
]
