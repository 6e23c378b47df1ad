from __future__ import annotations

import pytest

from sfu.rooms import ClinicRegistry, DomainEvent, Listener
from sfu.rooms.settings import ClinicSettings, LimitsSettings, RoomSettings, WaitingAreaSettings

T0 = 1_700_000_000.0


def make_registry(on_event: Listener, **waiting_area: float) -> ClinicRegistry:
    return ClinicRegistry(
        [
            ClinicSettings("c1", "Clinic one", rooms=[RoomSettings("team", "Team room")]),
            ClinicSettings("c2", "Clinic two", rooms=[RoomSettings("board", "Board room")]),
            ClinicSettings("shut", "Closed clinic", waiting_area_closed_message="Back on Monday."),
        ],
        limits=LimitsSettings(max_participants=6, max_spaces_per_clinic=4),
        waiting_area=WaitingAreaSettings(
            reconnect_grace=waiting_area.get("reconnect_grace", 120.0),
            unconnected_expiry=waiting_area.get("unconnected_expiry", 900.0),
            entry_rate_limit=int(waiting_area.get("entry_rate_limit", 3)),
            entry_rate_window=waiting_area.get("entry_rate_window", 60.0),
        ),
        on_event=on_event,
    )


@pytest.fixture
def events() -> list[DomainEvent]:
    return []


@pytest.fixture
def registry(events: list[DomainEvent]) -> ClinicRegistry:
    return make_registry(events.append)
