"""The JSON bodies of the HTTP API (docs/API.md) as types: the OpenAPI schemas are generated from
them (``sfu/service/openapi.py``), and the handlers that build a body build it from them.

Response types forbid unknown fields, so their schemas say ``additionalProperties: false`` and a
test that validates real responses against the served document notices a field the types lack.
Request types do not: the server ignores fields it does not read.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from sfu.rooms.text import ID_PATTERN, MESSAGE_MAX, NAME_MAX

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, description="A clinic or meeting-room id.")]
DisplayName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=NAME_MAX,
        description=("NFC; invisible characters left out, white space collapsed; 1-64 "
                     "characters; control characters and bidirectional controls are refused."),
    ),
]
Timestamp = Annotated[
    str, msgspec.Meta(extra_json_schema={"format": "date-time", "example": "2024-05-01T09:30:00Z"})
]
ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "too_large",
    "rate_limited",
    "server_full",
    "method_not_allowed",
]
Role = Literal["patient", "guest", "staff", "admin"]
SpaceStatus = Literal["waiting", "in_consultation", "on_hold"]


class _Response(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


# -- requests ---------------------------------------------------------------------------------


class NameBody(msgspec.Struct, frozen=True):
    name: DisplayName


class InviteBody(msgspec.Struct, frozen=True):
    name: DisplayName | msgspec.UnsetType = msgspec.UNSET
    ttl: (
        Annotated[
            int,
            msgspec.Meta(
                ge=60,
                description="Token lifetime in seconds; at most auth.guest_token_ttl (default).",
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class WaitingAreaState(msgspec.Struct, frozen=True):
    """The body of PUT waiting-area, and its answer (which has both fields)."""

    closed: bool
    message: Annotated[str, msgspec.Meta(max_length=MESSAGE_MAX)] = ""


# -- responses --------------------------------------------------------------------------------


class ErrorDetail(_Response, frozen=True):
    code: ErrorCode
    message: str


class Error(_Response, frozen=True):
    error: ErrorDetail


class Participant(_Response, frozen=True):
    id: str
    name: str
    role: Role


class MeetingRoom(_Response, frozen=True):
    id: Id
    clinic: Id
    name: str
    participants: list[Participant]


class WaitingAreaSummary(_Response, frozen=True):
    closed: bool
    message: str
    spaces: Annotated[int, msgspec.Meta(description="How many spaces it holds.")]


class Clinic(_Response, frozen=True):
    id: Id
    name: str
    rooms: list[MeetingRoom]
    waiting_area: WaitingAreaSummary


class Patient(_Response, frozen=True):
    name: str


class Space(_Response, frozen=True):
    space: Annotated[str, msgspec.Meta(extra_json_schema={"example": "sp_3q2ZyX9kLm0aBcDe"})]
    status: SpaceStatus
    waiting_since: Timestamp
    patient: Patient
    participants: list[Participant]


class WaitingArea(_Response, frozen=True):
    spaces: Annotated[list[Space], msgspec.Meta(description="Longest waiting first.")]
    closed: bool
    message: Annotated[str, msgspec.Meta(description="The closed message; empty when open.")]


class Entry(_Response, frozen=True):
    space: str
    token: Annotated[str, msgspec.Meta(description="A patient token for this space.")]
    expires_at: Timestamp


class Invite(_Response, frozen=True):
    token: Annotated[str, msgspec.Meta(description="A guest token scoped to the space or room.")]
    url: Annotated[str, msgspec.Meta(extra_json_schema={"format": "uri"})]
    expires_at: Timestamp
    invite: Annotated[str, msgspec.Meta(
        description="Extension: the invite's id, to revoke it (DELETE .../invites/{invite}).")]


BODIES: tuple[type[msgspec.Struct], ...] = (
    Error,
    NameBody,
    Participant,
    MeetingRoom,
    Clinic,
    Space,
    WaitingArea,
    WaitingAreaState,
    Entry,
    InviteBody,
    Invite,
)
"""Every body type, each a schema of ``components.schemas`` under its class name."""
