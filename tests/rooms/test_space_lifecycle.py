"""A space: waiting -> in_consultation -> on_hold (same waiting_since) -> ended."""

from __future__ import annotations

import pytest

from sfu.errors import ApiError
from sfu.rooms import (
    IN_CONSULTATION,
    ON_HOLD,
    WAITING,
    ClinicRegistry,
    DomainEvent,
    SpaceCreated,
    SpaceEnded,
    WaitingAreaChanged,
)

from .conftest import T0


def test_entry_creates_a_waiting_space_with_an_opaque_id(
    registry: ClinicRegistry, events: list[DomainEvent]
) -> None:
    space = registry.enter_waiting_area("c1", "  Ada Lovelace ", "10.0.0.1", T0)
    assert space.id.startswith("sp_") and len(space.id) == 3 + 16
    assert "Ada" not in space.id
    assert space.patient_name == "Ada Lovelace"
    assert space.status == WAITING
    assert space.waiting_since == T0
    assert events == [SpaceCreated("c1", space.id), WaitingAreaChanged("c1")]


def test_space_ids_are_unique(registry: ClinicRegistry) -> None:
    ids = {registry.enter_waiting_area("c1", "P", f"10.0.0.{i}", T0).id for i in range(4)}
    assert len(ids) == 4


def test_status_follows_who_is_inside(registry: ClinicRegistry, events: list[DomainEvent]) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0 + 5)
    assert space.status == WAITING
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 60)
    assert space.status == IN_CONSULTATION
    assert space.participants == [
        {"id": "p1", "name": "Ada", "role": "patient"},
        {"id": "s1", "name": "Dr Lee", "role": "staff"},
    ]
    space.participant_left("s1", T0 + 120)
    assert space.status == ON_HOLD
    assert space.waiting_since == T0  # keeps the original wait time
    space.participant_joined("s2", "Dr Kim", "admin", T0 + 200)
    assert space.status == IN_CONSULTATION
    assert events.count(WaitingAreaChanged("c1")) == 1 + 4  # entry + every join/leave


def test_a_guest_alone_with_the_patient_does_not_make_a_consultation(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0)
    space.participant_joined("g1", "Interpreter", "guest", T0)
    assert space.status == WAITING


def test_end_removes_the_space_and_names_who_was_inside(
    registry: ClinicRegistry, events: list[DomainEvent]
) -> None:
    area = registry.get("c1").waiting_area
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0)
    space.participant_joined("s1", "Dr Lee", "staff", T0)
    events.clear()
    area.end(space.id)
    assert area.find(space.id) is None
    assert space.closed and space.end_reason == "ended_by_staff"
    assert events == [SpaceEnded("c1", space.id, "ended_by_staff", ("p1", "s1")), WaitingAreaChanged("c1")]
    with pytest.raises(ApiError) as err:
        area.end(space.id)
    assert err.value.status == 404


def test_no_join_after_end(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    registry.get("c1").waiting_area.end(space.id)
    with pytest.raises(ApiError) as err:
        space.participant_joined("p1", "Ada", "patient", T0)
    assert err.value.status == 404


def test_leaving_twice_is_harmless(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0)
    assert space.participant_left("p1", T0) is not None
    assert space.participant_left("p1", T0) is None


def test_rejoin_with_the_same_id_replaces_the_entry(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0)
    space.participant_joined("p1", "Ada", "patient", T0 + 1)
    assert len(space.participants) == 1


def test_capacity_is_max_participants(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    for i in range(6):
        space.participant_joined(f"x{i}", "X", "guest", T0)
    assert space.is_full
    with pytest.raises(ApiError) as err:
        space.participant_joined("x6", "X", "staff", T0)
    assert err.value.code == "room_full"
    assert len(space.participants) == 6


def test_json_is_the_dashboard_object(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0)
    assert space.to_json() == {
        "space": space.id,
        "status": "waiting",
        "waiting_since": "2023-11-14T22:13:20Z",
        "patient": {"name": "Ada"},
        "participants": [{"id": "p1", "name": "Ada", "role": "patient"}],
    }
