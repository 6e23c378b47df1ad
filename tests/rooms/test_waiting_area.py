"""The waiting area: closing, capacity, expiry, reconnect grace, rate limiting, names."""

from __future__ import annotations

import pytest

from sfu.errors import ApiError
from sfu.rooms import ClinicRegistry, DomainEvent, SpaceEnded, WaitingAreaChanged

from .conftest import T0, make_registry


def status(fn: object, *args: object) -> int:
    with pytest.raises(ApiError) as err:
        fn(*args)  # type: ignore[operator]
    return err.value.status


# -- closing ----------------------------------------------------------------------------------


def test_closed_by_config_refuses_entry_with_its_message(registry: ClinicRegistry) -> None:
    with pytest.raises(ApiError) as err:
        registry.enter_waiting_area("shut", "Ada", "10.0.0.1", T0)
    assert (err.value.status, err.value.code, err.value.message) == (409, "conflict", "Back on Monday.")
    assert len(registry.get("shut").waiting_area) == 0


def test_close_and_reopen(registry: ClinicRegistry, events: list[DomainEvent]) -> None:
    area = registry.get("c1").waiting_area
    area.close("Closed for lunch")
    assert events[-1] == WaitingAreaChanged("c1")
    with pytest.raises(ApiError) as err:
        registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    assert err.value.status == 409 and err.value.message == "Closed for lunch"
    area.open()
    assert registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0).status == "waiting"


def test_close_without_message_uses_a_default(registry: ClinicRegistry) -> None:
    area = registry.get("c1").waiting_area
    area.close("")
    assert area.closed and area.closed_message


def test_closing_keeps_spaces_already_there(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    registry.get("c1").waiting_area.close("Closed")
    assert registry.find_space("c1", space.id) is space


def test_full_waiting_area_refuses_entry(registry: ClinicRegistry) -> None:
    for i in range(4):  # limits.max_spaces_per_clinic = 4
        registry.enter_waiting_area("c1", "P", f"10.0.0.{i}", T0)
    assert status(registry.enter_waiting_area, "c1", "P", "10.0.1.1", T0) == 409


def test_unknown_clinic_is_404(registry: ClinicRegistry) -> None:
    assert status(registry.enter_waiting_area, "nope", "Ada", "10.0.0.1", T0) == 404


# -- rate limit -------------------------------------------------------------------------------


def test_entries_per_address_are_rate_limited(registry: ClinicRegistry) -> None:
    for _ in range(3):  # entry_rate_limit = 3 per 60 s
        registry.enter_waiting_area("c1", "P", "10.0.0.1", T0)
    with pytest.raises(ApiError) as err:
        registry.enter_waiting_area("c1", "P", "10.0.0.1", T0 + 59)
    assert (err.value.status, err.value.code) == (429, "rate_limited")
    assert len(registry.get("c1").waiting_area) == 3
    # another address is not affected; the same address may enter again after the window
    registry.enter_waiting_area("c1", "P", "10.0.0.2", T0 + 59)
    registry.get("c1").waiting_area.end(registry.get("c1").waiting_area.spaces[0].id)
    registry.enter_waiting_area("c1", "P", "10.0.0.1", T0 + 60)


def test_rate_limit_spans_clinics(registry: ClinicRegistry) -> None:
    for clinic in ("c1", "c2", "c1"):
        registry.enter_waiting_area(clinic, "P", "10.0.0.1", T0)
    assert status(registry.enter_waiting_area, "c2", "P", "10.0.0.1", T0) == 429


def test_rate_limiter_forgets_quiet_addresses(registry: ClinicRegistry) -> None:
    registry.enter_waiting_area("c1", "P", "10.0.0.1", T0)
    assert len(registry._limiter) == 1
    registry.expire(T0 + 61)
    assert len(registry._limiter) == 0


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [None, 42, "", "   ", "x" * 65, "Ada\x00", "Ada\nBob", "Ada\u202eevil", "\x1b[31mAda",
             "Ada\u2066evil\u2069", "\u200b\u200b", "\u3164", "\ufeff \u2800", "Ada\ud800"]
)
def test_bad_display_names_are_refused(registry: ClinicRegistry, name: object) -> None:
    assert status(registry.enter_waiting_area, "c1", name, "10.0.0.1", T0) == 400
    assert len(registry.get("c1").waiting_area) == 0


@pytest.mark.parametrize("name", ["A", "x" * 64, "José Núñez", "李小龍", "👩‍👩‍👧 family"])
def test_good_display_names_are_kept(registry: ClinicRegistry, name: str) -> None:
    assert registry.enter_waiting_area("c1", f" {name} ", "10.0.0.1", T0).patient_name == name


@pytest.mark.parametrize(("name", "shown"), [
    ("Jose\u0301", "José"),  # NFC: one character, as staff search and compare it
    ("Ada\u200b \u200cLove\u00adlace\ufeff", "Ada Lovelace"),  # zero-width, soft hyphen, BOM
    ("  Ada \t\u00a0\u3000 Lovelace  ", "Ada Lovelace"),  # any run of white space: one space
    ("Ada\u3164\u2800", "Ada"),  # blank letters: an attacker's "empty" name
    ("Z" + "\u0336" * 40 + "oe", "Z\u0336\u0336\u0336oe"),  # combining marks drawn over other rows
    ("a\u200db", "ab"),  # a joiner between letters draws nothing
    ("x" * 60 + "\u200b" * 30, "x" * 60),  # the bound counts what is shown
])
def test_names_shown_to_staff_are_normalized(registry: ClinicRegistry, name: str, shown: str) -> None:
    """Attacker-chosen names show on every dashboard of the clinic: what staff read is what is
    stored, without invisible characters, piles of combining marks or padding."""
    assert registry.enter_waiting_area("c1", name, "10.0.0.1", T0).patient_name == shown


# -- expiry -----------------------------------------------------------------------------------


def test_a_space_whose_patient_never_connects_expires(events: list[DomainEvent]) -> None:
    registry = make_registry(events.append, unconnected_expiry=900)
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    assert registry.expire(T0 + 899) == []
    assert registry.expire(T0 + 900) == [space]
    assert space.end_reason == "expired"
    assert registry.find_space("c1", space.id) is None
    assert SpaceEnded("c1", space.id, "expired", ()) in events


def test_connected_patient_keeps_the_space(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0 + 1)
    space.media_connected("p1", T0 + 2)
    assert registry.expire(T0 + 10_000) == []


def test_a_joined_patient_without_media_does_not_hold_the_space(events: list[DomainEvent]) -> None:
    """A socket that joins and never connects media (and joins again when let go) held its
    space for ever: a seat is not a media connection."""
    registry = make_registry(events.append, unconnected_expiry=900)
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0 + 1)
    space.participant_left("p1", T0 + 30)  # the connect timeout let it go; it joins again
    space.participant_joined("p2", "Ada", "patient", T0 + 31)
    assert registry.expire(T0 + 899) == []
    assert registry.expire(T0 + 900) == [space]
    assert SpaceEnded("c1", space.id, "expired", ("p2",)) in events


def test_the_expiry_counts_from_when_the_patient_lost_media(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0)
    space.media_connected("p1", T0 + 1)
    space.participant_left("p1", T0 + 5000)  # dropped; comes back, but no media again
    space.participant_joined("p2", "Ada", "patient", T0 + 5001)
    assert registry.expire(T0 + 5899) == []
    assert registry.expire(T0 + 5900) == [space]
    assert space.end_reason == "expired"


def test_media_of_someone_else_than_the_patient_does_not_count(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.media_connected("nobody", T0)  # not seated
    space.participant_joined("g1", "Guest", "guest", T0)
    space.media_connected("g1", T0)
    space.participant_left("g1", T0 + 1)
    assert registry.expire(T0 + 900) == [space]


def test_staff_waiting_for_a_patient_who_never_came_keeps_the_space(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 1)
    assert registry.expire(T0 + 1000) == []
    space.participant_left("s1", T0 + 1000)
    assert registry.expire(T0 + 1000) == [space]


def test_a_dropped_patient_may_come_back_within_the_grace(registry: ClinicRegistry) -> None:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0)
    space.participant_joined("s1", "Dr Lee", "staff", T0)
    space.participant_left("p1", T0 + 100)
    assert registry.expire(T0 + 219) == []  # grace 120 s
    space.participant_joined("p1", "Ada", "patient", T0 + 219)  # restored
    assert space.status == "in_consultation"
    assert registry.expire(T0 + 10_000) == []


def test_after_the_grace_the_space_is_removed(events: list[DomainEvent]) -> None:
    registry = make_registry(events.append, reconnect_grace=120)
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0)
    space.participant_joined("s1", "Dr Lee", "staff", T0)
    space.participant_left("p1", T0 + 100)
    assert registry.expire(T0 + 220) == [space]
    assert SpaceEnded("c1", space.id, "patient_left", ("s1",)) in events
    assert space.end_reason == "patient_left"


def test_end_all(registry: ClinicRegistry) -> None:
    a = registry.enter_waiting_area("c1", "A", "10.0.0.1", T0)
    b = registry.enter_waiting_area("c2", "B", "10.0.0.2", T0)
    assert set(registry.end_all("server_shutdown")) == {a, b}
    assert a.end_reason == b.end_reason == "server_shutdown"


def test_list_is_longest_waiting_first(registry: ClinicRegistry) -> None:
    late = registry.enter_waiting_area("c1", "Late", "10.0.0.1", T0 + 50)
    early = registry.enter_waiting_area("c1", "Early", "10.0.0.2", T0)
    out = registry.get("c1").waiting_area.to_json()
    assert [s["space"] for s in out["spaces"]] == [early.id, late.id]
    assert out["closed"] is False and out["message"] == ""
