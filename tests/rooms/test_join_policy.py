"""Who may enter what: each rule of issue 3 has its own test."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.auth import Claims
from sfu.errors import ApiError
from sfu.rooms import ClinicRegistry, JoinTarget, authorize_join, require_admin, require_member

from .conftest import T0

EXP = T0 + 3600


def claims(role: str, clinic: str = "c1", **kw: Any) -> Claims:
    return Claims(sub=f"{role}-1", role=role, clinic=clinic, exp=EXP, **kw)


def refused(c: Claims, registry: ClinicRegistry, target: dict[str, Any]) -> int:
    with pytest.raises(ApiError) as err:
        authorize_join(c, registry, target)
    return err.value.status


@pytest.fixture
def space_id(registry: ClinicRegistry) -> str:
    return registry.enter_waiting_area("c1", "Ada", "10.0.0.1", T0).id


@pytest.fixture
def other_space_id(registry: ClinicRegistry) -> str:
    return registry.enter_waiting_area("c1", "Bob", "10.0.0.2", T0).id


# -- patients ---------------------------------------------------------------------------------


def test_patient_enters_own_space(registry: ClinicRegistry, space_id: str) -> None:
    resolved = authorize_join(claims("patient", space=space_id), registry, {"space": space_id})
    assert resolved.space is registry.find_space("c1", space_id)
    assert resolved.venue is resolved.space and resolved.clinic.id == "c1"


def test_patient_never_enters_another_space(
    registry: ClinicRegistry, space_id: str, other_space_id: str
) -> None:
    assert refused(claims("patient", space=space_id), registry, {"space": other_space_id}) == 403


def test_patient_gets_403_not_404_for_an_unknown_space(registry: ClinicRegistry, space_id: str) -> None:
    # no probing: a patient cannot learn whether another space exists
    assert refused(claims("patient", space=space_id), registry, {"space": "sp_doesnotexist00"}) == 403


def test_patient_never_enters_a_meeting_room(registry: ClinicRegistry, space_id: str) -> None:
    with pytest.raises(ApiError) as err:
        authorize_join(claims("patient", space=space_id), registry, {"room": "team"})
    assert err.value.status == 403 and "meeting room" in err.value.message


def test_patient_of_an_ended_space_gets_404(registry: ClinicRegistry, space_id: str) -> None:
    registry.get("c1").waiting_area.end(space_id)
    assert refused(claims("patient", space=space_id), registry, {"space": space_id}) == 404


def test_patient_cannot_name_another_clinic(registry: ClinicRegistry, space_id: str) -> None:
    c = claims("patient", space=space_id)
    assert refused(c, registry, {"space": space_id, "clinic": "c2"}) == 403


# -- staff and admins -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_staff_enter_spaces_and_rooms_of_their_clinic(
    registry: ClinicRegistry, space_id: str, role: str
) -> None:
    assert authorize_join(claims(role), registry, {"space": space_id}).space is not None
    assert authorize_join(claims(role), registry, {"room": "team"}).room is not None


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_staff_of_clinic_a_cannot_act_in_clinic_b(registry: ClinicRegistry, role: str) -> None:
    c2_space = registry.enter_waiting_area("c2", "Ada", "10.0.0.9", T0).id
    assert refused(claims(role, clinic="c1"), registry, {"space": c2_space, "clinic": "c2"}) == 403
    assert refused(claims(role, clinic="c1"), registry, {"room": "board", "clinic": "c2"}) == 403
    # without naming the clinic, the token's own clinic is searched: not found there
    assert refused(claims(role, clinic="c1"), registry, {"space": c2_space}) == 404


def test_admin_for_every_clinic_enters_everywhere(registry: ClinicRegistry, space_id: str) -> None:
    c2_space = registry.enter_waiting_area("c2", "Ada", "10.0.0.9", T0).id
    admin = claims("admin", clinic="*")
    assert authorize_join(admin, registry, {"space": space_id, "clinic": "c1"}).space is not None
    assert authorize_join(admin, registry, {"space": c2_space, "clinic": "c2"}).space is not None
    assert authorize_join(admin, registry, {"room": "board", "clinic": "c2"}).room is not None
    assert refused(admin, registry, {"room": "board"}) == 400  # must name the clinic


def test_staff_get_404_for_unknown_targets(registry: ClinicRegistry) -> None:
    assert refused(claims("staff"), registry, {"space": "sp_nope"}) == 404
    assert refused(claims("staff"), registry, {"room": "nope"}) == 404
    assert refused(claims("admin", clinic="*"), registry, {"room": "x", "clinic": "nope"}) == 404


# -- guests -----------------------------------------------------------------------------------


def test_guest_enters_the_space_it_was_invited_to(registry: ClinicRegistry, space_id: str) -> None:
    assert authorize_join(claims("guest", space=space_id), registry, {"space": space_id}).space


def test_guest_scoped_to_space_x_cannot_enter_space_y(
    registry: ClinicRegistry, space_id: str, other_space_id: str
) -> None:
    assert refused(claims("guest", space=space_id), registry, {"space": other_space_id}) == 403


def test_guest_scoped_to_a_space_cannot_enter_a_room(registry: ClinicRegistry, space_id: str) -> None:
    assert refused(claims("guest", space=space_id), registry, {"room": "team"}) == 403


def test_guest_scoped_to_a_room(registry: ClinicRegistry, space_id: str) -> None:
    registry.get("c1").put_room("other", "Other")
    guest = claims("guest", room="team")
    assert authorize_join(guest, registry, {"room": "team"}).room is not None
    assert refused(guest, registry, {"room": "other"}) == 403
    assert refused(guest, registry, {"space": space_id}) == 403


def test_guest_of_another_clinic_is_refused(registry: ClinicRegistry) -> None:
    assert refused(claims("guest", room="team"), registry, {"room": "team", "clinic": "c2"}) == 403


# -- malformed targets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", [None, "team", [], {}, {"space": "a", "room": "b"}, {"room": 5}, {"room": ""}]
)
def test_malformed_targets_are_400(registry: ClinicRegistry, target: Any) -> None:
    assert refused(claims("staff"), registry, target) == 400


def test_target_round_trip() -> None:
    assert JoinTarget.parse({"room": "team"}).to_json() == {"room": "team"}
    assert JoinTarget.parse({"space": "s", "clinic": "c"}).to_json() == {"space": "s", "clinic": "c"}


# -- management -------------------------------------------------------------------------------


def test_require_member() -> None:
    require_member(claims("staff"), "c1")
    require_member(claims("admin", clinic="*"), "c2")
    for c, clinic in [
        (claims("staff"), "c2"),
        (claims("patient", space="s"), "c1"),
        (claims("guest", room="team"), "c1"),
    ]:
        with pytest.raises(ApiError) as err:
            require_member(c, clinic)
        assert err.value.status == 403


def test_require_admin() -> None:
    require_admin(claims("admin"), "c1")
    require_admin(claims("admin", clinic="*"), "anything")
    for c, clinic in [(claims("staff"), "c1"), (claims("admin"), "c2")]:
        with pytest.raises(ApiError) as err:
            require_admin(c, clinic)
        assert err.value.status == 403
