from __future__ import annotations

import pytest

from sfu.config import (
    AuthConfig,
    ClinicConfig,
    Config,
    LimitsConfig,
    RoomConfig,
    WaitingAreaConfig,
)
from sfu.rooms import ClinicRegistry, DomainEvent

SECRET = "test-secret-0123456789abcdef-0123456789"
T0 = 1_700_000_000.0


def make_config(**waiting_area: float) -> Config:
    return Config(
        auth=AuthConfig(secret=SECRET),
        limits=LimitsConfig(max_participants=6, max_spaces_per_clinic=4),
        waiting_area=WaitingAreaConfig(
            reconnect_grace=waiting_area.get("reconnect_grace", 120.0),
            unconnected_expiry=waiting_area.get("unconnected_expiry", 900.0),
            entry_rate_limit=int(waiting_area.get("entry_rate_limit", 3)),
            entry_rate_window=waiting_area.get("entry_rate_window", 60.0),
        ),
        clinics=[
            ClinicConfig("c1", "Clinic one", rooms=[RoomConfig("team", "Team room")]),
            ClinicConfig("c2", "Clinic two", rooms=[RoomConfig("board", "Board room")]),
            ClinicConfig("shut", "Closed clinic", waiting_area_closed_message="Back on Monday."),
        ],
    )


@pytest.fixture
def events() -> list[DomainEvent]:
    return []


@pytest.fixture
def registry(events: list[DomainEvent]) -> ClinicRegistry:
    return ClinicRegistry(make_config(), on_event=events.append)
