"""The admission probe and the quality controller over fake endpoints and fake clocks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from sfu.bandwidth.probe import ProbeSettings
from sfu.calls.call import Participant
from tests.calls.conftest import World, make_world
from tests.calls.fakes import FakeEndpoint


@pytest.fixture(autouse=True)
def fast_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sfu.calls.probe.POLL_SECONDS", 0.001)


async def until(predicate: object, what: str) -> None:
    for _ in range(2000):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"not met: {what}")


def consultation(world: World) -> tuple[str, Participant, Participant]:
    space = world.enter("Pat")
    patient = world.join("patient", "pt-1", {"space": space}, space=space)
    world.endpoint(patient).publish("audio", "video")
    staff = world.join("staff", "dr-a", {"space": space})
    world.endpoint(staff).publish("audio", "video")
    return space, patient, staff


def told_joined(world: World, sub: str) -> list[str]:
    return [m.id for kind, m in world.clients[sub].messages if kind == "member_joined"]


def tick(world: World, *, loss: dict[str, float], kbps: float = 500.0) -> None:
    """One second of media: publishers send ``kbps`` of video (or less when the server's REMB
    asks for less, as a browser's encoder follows it) and 40 of audio; every receiver reports
    the loss given for it (0 when not named); then the manager ticks."""
    now = world.mono()

    def rate(producer: Any) -> float:
        if producer.kind == "audio":
            return 40.0
        return min(kbps, producer.rembs[-1]) if producer.rembs else kbps

    for endpoint in world.endpoints.made.values():
        if endpoint.closed:
            continue
        for producer in endpoint.producers.values():
            producer.octets += int(rate(producer) * 1000 / 8)
        rates = {p.id: rate(p) for p in endpoint.subscribed()}
        endpoint.send_media(rates)
        endpoint.report(loss.get(endpoint.id, 0.0), now)
    world.mono.advance(1.0)
    world.calls.tick()


async def test_the_join_that_fills_a_call_is_probed_unseen_then_admitted() -> None:
    world = make_world(max_participants=3, probe_seconds=3)
    _, patient, staff = consultation(world)
    guest = world.join("guest", "gu-1", {"space": patient.venue.id}, space=patient.venue.id)
    endpoint: FakeEndpoint = world.endpoint(guest)

    assert guest.probing and endpoint.started
    # everyone's audio, and one video: the patient's
    assert endpoint.receives() == {patient.id + ":audio", patient.id + ":video", staff.id + ":audio"}
    assert guest.id not in told_joined(world, "pt-1")
    assert "joined" not in world.clients["gu-1"].kinds()
    endpoint.publish("audio", "video")
    assert world.endpoint(patient).receives() == {staff.id + ":audio", staff.id + ":video"}

    endpoint.got_media = True
    for _ in range(4):
        tick(world, loss={})
        await asyncio.sleep(0.01)
    await until(lambda: "joined" in world.clients["gu-1"].kinds(), "the newcomer is admitted")
    assert world.clients["pt-1"].last("member_joined").id == guest.id
    assert guest.id + ":video" in world.endpoint(patient).receives()
    assert endpoint.receives() >= {patient.id + ":video", staff.id + ":video"}
    await world.calls.close()


async def test_a_newcomer_whose_downlink_cannot_carry_the_call_is_refused_and_nothing_changes(
) -> None:
    world = make_world(max_participants=3, probe_seconds=3)
    space, patient, staff = consultation(world)
    guest = world.join("guest", "gu-1", {"space": space}, space=space)
    world.endpoint(guest).got_media = True
    for _ in range(4):
        tick(world, loss={guest.id: 0.7}, kbps=150)
        await asyncio.sleep(0.01)
    await until(lambda: "failed" in world.clients["gu-1"].kinds(), "the newcomer is refused")

    code, message = world.clients["gu-1"].last("failed")
    assert code == "insufficient_bandwidth" and "kbit/s" in message
    assert ("refused", ("guest", "insufficient_bandwidth", {"clinic": "c1", "space": space})) \
        in world.events.seen
    (call,) = world.calls.by_key.values()
    assert list(call.participants) == [patient.id, staff.id] and not call.probing
    assert world.registry.get("c1").waiting_area.get(space).roster.ids() == (patient.id, staff.id)
    assert guest.id not in told_joined(world, "pt-1")
    await until(lambda: world.endpoint(guest).closed, "the refused newcomer's endpoint closes")
    await world.calls.close()


async def test_a_lossy_downlink_loses_video_never_audio_and_gets_it_back_on_recovery(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sfu.calls.quality")
    world = make_world()
    _, patient, staff = consultation(world)
    receiver = world.endpoint(staff)
    client = world.clients["dr-a"]
    for _ in range(3):
        tick(world, loss={})
    assert receiver.receives() == {patient.id + ":audio", patient.id + ":video"}

    for _ in range(6):
        tick(world, loss={staff.id: 0.8})
    assert receiver.receives() == {patient.id + ":audio"}  # video paused, audio kept
    notice = client.last("quality")
    assert notice.level == "audio_only" and "cannot carry video" in notice.reason
    assert notice.estimates["paused"] == [patient.id]
    assert ("quality", (staff.id, "audio_only")) in world.events.seen
    assert world.endpoint(patient).receives() == {staff.id + ":audio", staff.id + ":video"}

    for _ in range(60):
        tick(world, loss={})
        if patient.id + ":video" in receiver.receives():
            break
    assert receiver.receives() == {patient.id + ":audio", patient.id + ":video"}
    for _ in range(60):  # capped at first, then back in full
        tick(world, loss={})
        if client.last("quality").level == "good":
            break
    assert client.last("quality").level == "good"
    assert client.last("quality").reason == "link recovered"
    # each change told is logged once, with ids and figures, never a name
    told = [m.level for kind, m in client.messages if kind == "quality"]
    logged = [r for r in caplog.records if r.getMessage().startswith(f"quality of {staff.id}:")]
    assert [r.getMessage().split(": ")[1].split(" ")[0] for r in logged] == told
    assert "audio_only (downlink about" in logged[0].getMessage()
    assert all(getattr(r, "participant", None) == staff.id for r in logged)
    assert not any("Pat" in r.getMessage() or "dr-a" in r.getMessage() for r in caplog.records)
    await world.calls.close()


async def test_audio_reported_only_every_few_seconds_is_not_loss() -> None:
    """Chromium reports on a video stream about every second but on an audio stream only about
    every 5 s. A lossless link reported on at that pace keeps its video."""
    world = make_world()
    _, patient, staff = consultation(world)
    for second in range(30):
        now = world.mono()
        for endpoint in world.endpoints.made.values():
            for producer in endpoint.producers.values():
                producer.octets += int((500 if producer.kind == "video" else 40) * 1000 / 8)
            endpoint.send_media({p.id: (500 if p.kind == "video" else 40)
                                 for p in endpoint.subscribed()})
            endpoint.report(0.0, now, kinds=("audio", "video") if second % 5 == 0 else ("video",))
        world.mono.advance(1.0)
        world.calls.tick()
    for p, other in ((patient, staff), (staff, patient)):
        assert world.endpoint(p).receives() == {other.id + ":audio", other.id + ":video"}
        assert p.link.loss == 0.0
        assert [m for k, m in world.clients[p.identity].messages if k == "quality"] == []
    await world.calls.close()


async def test_the_loudest_participant_becomes_the_speaker(world: World) -> None:
    _, patient, staff = consultation(world)
    world.endpoint(staff).producers["audio"].levels.extend([90, 100])
    world.endpoint(patient).producers["audio"].levels.extend([50])
    tick(world, loss={})
    (call,) = world.calls.by_key.values()
    assert call.quality.speaker == staff.id  # type: ignore[union-attr]
    await world.calls.close()


async def test_a_paused_downlink_is_probed_and_video_comes_back_within_seconds() -> None:
    """Once the loss is over, the server probes the paused downlink with padding; a clean probe
    proves the rate and the video resumes without waiting for 8 %/s growth or the hold."""
    world = make_world()
    _, patient, staff = consultation(world)
    receiver = world.endpoint(staff)
    for _ in range(3):
        tick(world, loss={})
    for _ in range(6):
        tick(world, loss={staff.id: 0.8})
    assert receiver.receives() == {patient.id + ":audio"}
    assert not receiver.paddings, "a lossy link is not probed"
    back_after = None
    for second in range(1, 30):
        tick(world, loss={})
        if patient.id + ":video" in receiver.receives():
            back_after = second
            break
    assert receiver.paddings, "the paused downlink is probed once its loss is over"
    kbps, seconds = receiver.paddings[0]
    assert kbps > 0 and seconds == ProbeSettings().duration_s
    assert back_after is not None and back_after <= 6, back_after
    await world.calls.close()


async def test_the_quality_controller_forgets_whoever_left_a_long_call(world: World) -> None:
    """A meeting room can stay open all day while people come and go: what the controller keeps
    per receiver and per published stream (probes, the level last told, caps) is only for who is
    still there. It kept an entry for everyone who had ever joined, for the life of the call."""
    stayer = world.join("staff", "dr-stays", {"room": "team"})
    world.endpoint(stayer).publish("audio", "video")
    for i in range(12):
        visitor = world.join("staff", f"dr-{i}", {"room": "team"})
        world.endpoint(visitor).publish("audio", "video")
        for _ in range(3):
            tick(world, loss={world.endpoint(visitor).id: 0.2 if i % 2 else 0.0})
        await visitor.close("left")
    tick(world, loss={})
    quality = stayer.call.quality
    assert quality is not None
    present = {stayer.id} | {p.id for p in world.endpoint(stayer).producers.values()}
    assert quality.remembered() <= present
    assert stayer.id in quality.remembered()  # what it keeps for who stays, it keeps
