"""Clinics from config and the admin API; meeting rooms."""

from __future__ import annotations

import pytest

from sfu.auth import PATIENT
from sfu.errors import ApiError
from sfu.rooms import (
    ClinicRegistry,
    ClinicUpdated,
    DomainEvent,
    RoomDeleted,
    RoomUpdated,
    Venue,
)
from sfu.rooms.settings import ClinicSettings, LimitsSettings, WaitingAreaSettings

from .conftest import T0


def test_built_from_config(registry: ClinicRegistry) -> None:
    assert [c.id for c in registry.clinics] == ["c1", "c2", "shut"]
    c1 = registry.get("c1")
    assert c1.name == "Clinic one"
    assert [r.id for r in c1.rooms] == ["team"]
    assert c1.waiting_area.clinic == "c1" and not c1.waiting_area.closed
    assert registry.get("shut").waiting_area.closed


def test_each_clinic_has_its_own_waiting_area(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    assert registry.find_space("c2", space.id) is None
    assert len(registry.get("c2").waiting_area) == 0


def test_put_clinic_creates_then_renames(registry: ClinicRegistry, events: list[DomainEvent]) -> None:
    clinic, created = registry.put_clinic("new", "New clinic")
    assert created and clinic.waiting_area is not None and clinic.rooms == []
    again, created = registry.put_clinic("new", "Renamed")
    assert again is clinic and not created and clinic.name == "Renamed"
    assert events == [ClinicUpdated("new", True), ClinicUpdated("new", False)]


@pytest.mark.parametrize("clinic_id", ["", "-x", "a b", "x" * 65, "*"])
def test_put_clinic_refuses_bad_ids(registry: ClinicRegistry, clinic_id: str) -> None:
    with pytest.raises(ApiError) as err:
        registry.put_clinic(clinic_id, "Name")
    assert err.value.status == 400


def test_put_clinic_refuses_bad_names(registry: ClinicRegistry) -> None:
    with pytest.raises(ApiError) as err:
        registry.put_clinic("new", "")
    assert err.value.status == 400
    assert registry.find("new") is None


def test_get_unknown_clinic_is_404(registry: ClinicRegistry) -> None:
    with pytest.raises(ApiError) as err:
        registry.get("nope")
    assert err.value.status == 404


def test_rooms_created_renamed_deleted(registry: ClinicRegistry, events: list[DomainEvent]) -> None:
    clinic = registry.get("c1")
    room, created = clinic.put_room("consult", "Consult room")
    assert created and room.to_json() == {
        "id": "consult", "clinic": "c1", "name": "Consult room", "participants": []
    }
    room2, created = clinic.put_room("consult", "Renamed")
    assert room2 is room and not created and room.name == "Renamed"
    room.participant_joined("s1", "Dr Lee", "staff", T0)
    assert room.in_use
    clinic.delete_room("consult")
    assert clinic.find_room("consult") is None and room.deleted
    assert events == [
        RoomUpdated("c1", "consult", True),
        RoomUpdated("c1", "consult", False),
        RoomDeleted("c1", "consult", ("s1",)),
    ]
    with pytest.raises(ApiError) as err:
        room.participant_joined("s2", "Dr Kim", "staff", T0)
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        clinic.delete_room("consult")
    assert err.value.status == 404


def test_room_in_use_may_be_entered(registry: ClinicRegistry) -> None:
    room = registry.get("c1").room("team")
    room.participant_joined("s1", "Dr Lee", "staff", T0)
    room.participant_joined("g1", "Guest", "guest", T0)
    assert [p["id"] for p in room.participants] == ["s1", "g1"]
    room.participant_left("s1", T0)
    assert room.participants == [{"id": "g1", "name": "Guest", "role": "guest"}]


def test_room_capacity(registry: ClinicRegistry) -> None:
    room = registry.get("c1").room("team")
    for i in range(6):
        room.participant_joined(f"s{i}", "S", "staff", T0)
    with pytest.raises(ApiError) as err:
        room.participant_joined("s6", "S", "staff", T0)
    assert err.value.code == "room_full"


def test_listeners_added_later_hear_events(registry: ClinicRegistry) -> None:
    heard: list[DomainEvent] = []
    registry.add_listener(heard.append)
    registry.put_clinic("x", "X")
    registry.remove_listener(heard.append)
    registry.put_clinic("y", "Y")
    assert heard == [ClinicUpdated("x", True)]


def test_spaces_and_rooms_are_venues(registry: ClinicRegistry) -> None:
    venues: list[Venue] = [
        registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0),
        registry.get("c1").room("team"),
    ]
    for venue in venues:
        assert venue.kind in ("space", "room") and venue.clinic == "c1" and not venue.closed
        venue.participant_joined("s1", "Dr Lee", "staff", T0)
        assert venue.participants == [{"id": "s1", "name": "Dr Lee", "role": "staff"}]
        assert venue.participant_left("s1", T0) is not None and not venue.is_full


def test_unconnected_spaces_have_a_budget_over_every_clinic(events: list[DomainEvent]) -> None:
    """Strangers from many addresses cannot fill every clinic's waiting list: beyond
    ``limits.unconnected_spaces_total`` spaces without their patient's media, entry is 503
    ``server_full``; a patient whose media connects frees a place in that budget."""
    registry = ClinicRegistry(
        [ClinicSettings("c1", "Clinic one"), ClinicSettings("c2", "Clinic two")],
        limits=LimitsSettings(max_spaces_per_clinic=10, unconnected_spaces_total=3),
        waiting_area=WaitingAreaSettings(entry_rate_limit=100), on_event=events.append)
    first = registry.enter_waiting_area("c1", "A", "198.51.100.1", T0)
    registry.enter_waiting_area("c2", "B", "198.51.100.2", T0)
    registry.enter_waiting_area("c1", "C", "198.51.100.3", T0)
    with pytest.raises(ApiError) as refused:
        registry.enter_waiting_area("c2", "D", "198.51.100.4", T0)
    assert (refused.value.code, refused.value.status) == ("server_full", 503)
    assert sum(len(registry.get(c).waiting_area.spaces) for c in ("c1", "c2")) == 3
    first.participant_joined("p1", "A", PATIENT, T0 + 1)
    first.media_connected("p1", T0 + 2)
    registry.enter_waiting_area("c2", "D", "198.51.100.4", T0 + 3)
