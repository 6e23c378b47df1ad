"""A space tells its status transitions itself: ``SpaceStatusChanged``, once per change, just
before the ``WaitingAreaChanged`` of the same join or leave; never for an ended space."""

from __future__ import annotations

from sfu.rooms import (
    IN_CONSULTATION,
    ON_HOLD,
    WAITING,
    ClinicRegistry,
    DomainEvent,
    Space,
    SpaceEnded,
    SpaceStatusChanged,
    WaitingAreaChanged,
)

from .conftest import T0


def status_changes(events: list[DomainEvent]) -> list[tuple[str, str]]:
    return [(e.previous, e.status) for e in events if isinstance(e, SpaceStatusChanged)]


def patient_waiting(registry: ClinicRegistry, events: list[DomainEvent]) -> Space:
    space = registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0)
    space.participant_joined("p1", "Ada", "patient", T0 + 1)
    events.clear()
    return space


def test_staff_joining_starts_the_consultation(
    registry: ClinicRegistry, events: list[DomainEvent]
) -> None:
    space = patient_waiting(registry, events)
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 60)
    assert events == [
        SpaceStatusChanged("c1", space.id, IN_CONSULTATION, WAITING),
        WaitingAreaChanged("c1"),
    ]


def test_an_admin_counts_as_staff(registry: ClinicRegistry, events: list[DomainEvent]) -> None:
    space = patient_waiting(registry, events)
    space.participant_joined("a1", "Admin", "admin", T0 + 60)
    assert status_changes(events) == [(WAITING, IN_CONSULTATION)]


def test_the_last_staff_member_leaving_puts_it_on_hold(
    registry: ClinicRegistry, events: list[DomainEvent]
) -> None:
    space = patient_waiting(registry, events)
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 60)
    space.participant_joined("s2", "Nurse Kim", "staff", T0 + 61)
    events.clear()
    space.participant_left("s1", T0 + 100)
    assert events == [WaitingAreaChanged("c1")]  # s2 is still with the patient
    space.participant_left("s2", T0 + 120)
    assert events == [
        WaitingAreaChanged("c1"),
        SpaceStatusChanged("c1", space.id, ON_HOLD, IN_CONSULTATION),
        WaitingAreaChanged("c1"),
    ]


def test_staff_coming_back_resumes_the_consultation(
    registry: ClinicRegistry, events: list[DomainEvent]
) -> None:
    space = patient_waiting(registry, events)
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 60)
    space.participant_left("s1", T0 + 120)
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 180)
    assert events[-2:] == [
        SpaceStatusChanged("c1", space.id, IN_CONSULTATION, ON_HOLD),
        WaitingAreaChanged("c1"),
    ]
    assert status_changes(events) == [
        (WAITING, IN_CONSULTATION),
        (IN_CONSULTATION, ON_HOLD),
        (ON_HOLD, IN_CONSULTATION),
    ]


def test_a_second_staff_member_joining_changes_nothing(
    registry: ClinicRegistry, events: list[DomainEvent]
) -> None:
    space = patient_waiting(registry, events)
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 60)
    events.clear()
    space.participant_joined("s2", "Nurse Kim", "staff", T0 + 61)
    assert events == [WaitingAreaChanged("c1")]


def test_a_patient_reconnecting_changes_nothing(
    registry: ClinicRegistry, events: list[DomainEvent]
) -> None:
    space = patient_waiting(registry, events)
    space.participant_left("p1", T0 + 10)
    space.participant_joined("p1", "Ada", "patient", T0 + 20)  # still waiting
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 60)
    events.clear()
    space.participant_left("p1", T0 + 100)
    space.participant_joined("p1", "Ada", "patient", T0 + 110)  # still in consultation
    assert events == [WaitingAreaChanged("c1"), WaitingAreaChanged("c1")]
    assert space.status == IN_CONSULTATION


def test_a_guest_or_an_unknown_leave_changes_nothing(
    registry: ClinicRegistry, events: list[DomainEvent]
) -> None:
    space = patient_waiting(registry, events)
    space.participant_joined("g1", "Interpreter", "guest", T0 + 5)
    space.participant_left("nobody", T0 + 6)
    assert status_changes(events) == []


def test_nothing_after_the_space_ended(registry: ClinicRegistry, events: list[DomainEvent]) -> None:
    space = patient_waiting(registry, events)
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 60)
    area = registry.get("c1").waiting_area
    events.clear()
    area.end(space.id)
    space.participant_left("s1", T0 + 61)  # the last staff member's socket closes afterwards
    space.participant_left("p1", T0 + 62)
    assert events == [
        SpaceEnded("c1", space.id, "ended_by_staff", ("p1", "s1")),
        WaitingAreaChanged("c1"),
    ]
    assert status_changes(events) == []


def test_nothing_after_the_space_expired(registry: ClinicRegistry, events: list[DomainEvent]) -> None:
    space = patient_waiting(registry, events)
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 60)
    space.participant_left("p1", T0 + 100)
    assert registry.expire(T0 + 100 + 120) == [space]  # reconnect grace 120 s
    events.clear()
    space.participant_left("s1", T0 + 300)
    assert events == []
