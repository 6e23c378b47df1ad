"""The configuration sections the clinic domain reads: ``[limits]``, ``[waiting_area]`` and the
clinics defined at start-up (``[[clinics]]`` with their ``[[clinics.rooms]]``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LimitsSettings:
    max_participants: int = 6
    max_spaces_per_clinic: int = 500
    # media connections (a call's or a pre-call test's: a UDP port each) at once, per token
    # identity and per client address; over it a join or pre-call gets ``rate_limited``
    media_per_token: int = 3
    media_per_address: int = 50
    # ... and in total on this server (each holds a UDP port); over it ``server_full``
    media_total: int = 600
    # pre-call tests running at once on this server (each sends padding to measure a link);
    # over it ``server_full``
    precall_total: int = 20
    # open WebSockets per client address and in total; over them the upgrade is refused (HTTP
    # 429 ``rate_limited`` / 503 ``server_full``)
    sockets_per_address: int = 100
    sockets_total: int = 5000
    # waiting-area spaces, over every clinic, whose patient has no media connection (entered and
    # not yet connected, or dropped); over it patient entry gets 503 ``server_full``: strangers
    # from many addresses cannot fill every clinic's waiting list at once
    unconnected_spaces_total: int = 1000
    # an IPv6 client counts as its whole /ipv6_prefix network for every per-address budget
    # (one line usually holds a /64 or more)
    ipv6_prefix: int = 64


@dataclass(frozen=True)
class WaitingAreaSettings:
    reconnect_grace: float = 120.0
    unconnected_expiry: float = 900.0
    entry_rate_limit: int = 10  # entries per client address ...
    entry_rate_window: float = 60.0  # ... per this many seconds


@dataclass(frozen=True)
class RoomSettings:
    id: str
    name: str


@dataclass(frozen=True)
class ClinicSettings:
    id: str
    name: str
    waiting_area_closed_message: str = ""  # non-empty: the waiting area is closed with it
    rooms: list[RoomSettings] = field(default_factory=list)
