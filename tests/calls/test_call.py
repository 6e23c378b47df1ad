"""A call over fake endpoints: who is wired to whom, who is told what, leave and replace.

No sockets: the endpoints are fakes of the media seam, the clock is a fake.
"""

from __future__ import annotations

import asyncio

import pytest

from sfu.errors import ApiError
from tests.calls.conftest import World, make_world

ROOM = {"room": "team"}


def test_everyone_admitted_receives_everyone_elses_tracks(world: World) -> None:
    a = world.join("staff", "dr-a", ROOM)
    world.endpoint(a).publish("audio", "video")
    b = world.join("staff", "dr-b", ROOM)
    world.endpoint(b).publish("audio", "video")
    c = world.join("guest", "gu-c", ROOM, room="team")

    assert world.endpoint(a).receives() == {"" + b.id + ":audio", b.id + ":video"}
    assert world.endpoint(b).receives() == {a.id + ":audio", a.id + ":video"}
    assert world.endpoint(c).receives() == {a.id + ":audio", a.id + ":video",
                                            b.id + ":audio", b.id + ":video"}
    # nobody receives their own tracks; every admitted endpoint was started and offered
    assert all(world.endpoint(p).started for p in (a, b, c))
    me, key, others = world.clients["gu-c"].last("joined")
    assert (me.id, key.target(), [o.id for o in others]) == (c.id, ROOM, [a.id, b.id])
    assert [m.id for m in (world.clients["dr-a"].last("member_joined"),)] == [c.id]
    assert world.events.names().count("joined") == 3
    assert [p.name for p in world.registry.get("c1").room("team").roster] == ["Dr-A", "Dr-B", "Gu-C"]


def test_a_track_published_or_withdrawn_later_is_rewired(world: World) -> None:
    a = world.join("staff", "dr-a", ROOM)
    b = world.join("staff", "dr-b", ROOM)
    assert world.endpoint(b).receives() == set()
    world.endpoint(a).publish("video")
    assert world.endpoint(b).receives() == {a.id + ":video"}
    world.endpoint(a).unpublish("video")
    assert world.endpoint(b).receives() == set()


async def test_leaving_unwires_tells_the_others_gives_the_seat_back_and_closes(world: World) -> None:
    a = world.join("staff", "dr-a", ROOM)
    b = world.join("staff", "dr-b", ROOM)
    world.endpoint(a).publish("audio", "video")
    world.endpoint(b).publish("audio", "video")
    await a.close("left")
    await a.close("left")  # idempotent

    assert world.endpoint(a).closed
    assert world.endpoint(b).receives() == set()
    assert world.clients["dr-b"].last("member_left").id == a.id
    assert ("left", (a.id, "left")) in world.events.seen
    assert [p.id for p in world.registry.get("c1").room("team").roster] == [b.id]
    await b.close("left")
    assert world.calls.by_key == {}  # the empty call is forgotten
    assert world.registry.get("c1").room("team").roster.ids() == ()


async def test_the_same_person_joining_again_replaces_the_old_connection(world: World) -> None:
    first = world.join("staff", "dr-a", ROOM)
    world.clients["first"] = world.clients["dr-a"]
    other = world.join("staff", "dr-b", ROOM)
    second = world.join("staff", "dr-a", ROOM)
    await asyncio.sleep(0)  # the old endpoint closes in the background
    await asyncio.sleep(0)

    assert world.clients["first"].last("ended") == "replaced"
    assert world.endpoint(first).closed and not world.endpoint(second).closed
    (call,) = world.calls.by_key.values()
    assert list(call.participants) == [other.id, second.id]
    assert world.registry.get("c1").room("team").roster.ids() == (other.id, second.id)
    await world.calls.close()


def test_a_full_call_refuses_and_nothing_changes() -> None:
    world = make_world(max_participants=2)
    world.join("staff", "dr-a", ROOM)
    world.join("staff", "dr-b", ROOM)
    before = world.registry.get("c1").room("team").roster.ids()
    with pytest.raises(ApiError) as refused:
        world.join("staff", "dr-c", ROOM)
    assert refused.value.code == "room_full"
    assert world.registry.get("c1").room("team").roster.ids() == before
    assert ("refused", ("staff", "room_full", {"clinic": "c1", "room": "team"})) in world.events.seen
    assert len(world.endpoints.made) == 2  # no endpoint was made for the refused join


def test_policy_and_draining_refusals_are_reported(world: World) -> None:
    space = world.enter()
    with pytest.raises(ApiError) as refused:
        world.join("patient", "pt-1", ROOM, space=space)
    assert refused.value.code == "forbidden"
    world.calls.end_all("server_shutdown")
    with pytest.raises(ApiError) as draining:
        world.join("staff", "dr-a", ROOM)
    assert draining.value.code == "draining"
    assert [details[1] for name, details in world.events.seen if name == "refused"] == [
        "forbidden", "draining"]


async def test_ending_a_space_puts_everyone_out_with_the_reason(world: World) -> None:
    space = world.enter("Pat")
    patient = world.join("patient", "pt-1", {"space": space}, space=space, name="")
    world.wall.advance(42)
    staff = world.join("staff", "dr-a", {"space": space})
    assert patient.name == "Pat"  # the name the patient entered with
    assert ("patient_waited", 42.0) in world.events.seen
    (call,) = world.calls.by_key.values()
    world.calls.end_call(call.key, "ended_by_staff")
    assert world.clients["pt-1"].last("ended") == "ended_by_staff"
    assert world.clients["dr-a"].last("ended") == "ended_by_staff"
    assert world.calls.by_key == {}
    await world.calls.close()
    assert world.endpoint(patient).closed and world.endpoint(staff).closed


async def test_media_failure_puts_the_participant_out_with_an_error(world: World) -> None:
    a = world.join("staff", "dr-a", ROOM)
    b = world.join("staff", "dr-b", ROOM)
    world.endpoint(a).listener.failed(world.endpoint(a), "connect timeout")
    assert world.clients["dr-a"].last("failed")[0] == "media_failed"
    assert world.clients["dr-b"].last("member_left").id == a.id
    await world.calls.close()
    assert world.endpoint(a).closed and world.endpoint(b).closed
    assert not world.calls._tasks


async def test_close_closes_every_endpoint_and_task(world: World) -> None:
    for i in range(4):
        world.join("staff", f"dr-{i}", ROOM)
    await world.calls.close()
    assert all(e.closed for e in world.endpoints.made.values())
    assert world.calls.by_key == {}
