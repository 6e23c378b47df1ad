"""allocate() and AllocationSmoother: a capacity sweep, priorities, and no flapping."""

from __future__ import annotations

import pytest

from sfu.bandwidth.allocator import (
    Allocation,
    AllocationSmoother,
    Level,
    Receiver,
    ReceiverLevel,
    Stream,
    StreamAllocation,
    allocate,
)

PEOPLE = [f"p{i}" for i in range(6)]
PRIORITY = {"p0": 10, "p1": 5}  # p0 the patient, p1 the active speaker


def call_streams(full_video: float = 1500.0) -> list[Stream]:
    streams = []
    for p in PEOPLE:
        prio = PRIORITY.get(p, 0)
        streams.append(Stream(f"{p}/a", p, "audio", 40.0, 40.0, prio))
        streams.append(Stream(f"{p}/v", p, "video", full_video, 150.0, prio))
    return streams


def everyone_else(streams: list[Stream]) -> dict[str, list[str]]:
    return {p: [s.id for s in streams if s.publisher != p] for p in PEOPLE}


def run(capacity: float | None, shared: bool = False) -> Allocation:
    streams = call_streams()
    receivers = [Receiver(p, capacity) for p in PEOPLE]
    return allocate(receivers, streams, everyone_else(streams), shared_encoding=shared)


@pytest.mark.parametrize("shared", [False, True])
def test_capacity_sweep_six_person_call(shared: bool) -> None:
    audio_floor = 5 * 40.0
    previous = 0.0
    for capacity in range(100, 5001, 10):
        alloc = run(float(capacity), shared)
        for p in PEOPLE:
            mine = alloc.for_receiver(p)
            total = alloc.total_kbps(p)
            audio = [a for sid, a in mine.items() if sid.endswith("/a")]
            assert len(audio) == 5 and all(a.level is not Level.PAUSED for a in audio)
            assert all(a.kbps >= 40.0 for a in audio)
            if capacity >= audio_floor:
                assert total <= capacity + 1e-9
                assert p not in alloc.over_budget
            else:  # not even the audio fits: audio is kept, video all paused
                assert total == audio_floor and p in alloc.over_budget
                assert alloc.receiver_levels[p] is ReceiverLevel.AUDIO_ONLY
        total_p5 = alloc.total_kbps("p5")
        assert total_p5 >= previous - 1e-9
        previous = total_p5
    assert alloc.receiver_levels["p5"] is ReceiverLevel.DEGRADED  # 5 x 1500 > 5000


def test_sweep_of_one_constrained_receiver() -> None:
    streams = call_streams()
    previous_total, previous_forwarded = 0.0, 0
    for capacity in range(100, 5001, 10):
        receivers = [Receiver(p, None if p != "p5" else float(capacity)) for p in PEOPLE]
        alloc = allocate(receivers, streams, everyone_else(streams))
        mine = alloc.for_receiver("p5")
        forwarded = sum(1 for a in mine.values() if a.level is not Level.PAUSED)
        assert alloc.total_kbps("p5") >= previous_total - 1e-9
        assert forwarded >= previous_forwarded  # once a video fits it stays forwarded
        previous_total, previous_forwarded = alloc.total_kbps("p5"), forwarded
        assert alloc.receiver_levels["p0"] is ReceiverLevel.GOOD
        assert alloc.publisher_cap_kbps["p0/v"] == 1500.0  # the most any receiver takes


def test_priorities_patient_then_speaker_then_others() -> None:
    alloc = run(200 + 3 * 150 + 100)  # room for three video minimums and 100 more
    p5 = alloc.for_receiver("p5")
    assert p5["p0/v"] == StreamAllocation(Level.CAPPED, 250.0)
    assert p5["p1/v"].level is Level.CAPPED and p5["p1/v"].kbps == 150.0
    assert p5["p2/v"].level is Level.CAPPED  # ties broken by id
    assert p5["p3/v"].level is Level.PAUSED and p5["p4/v"].level is Level.PAUSED
    alloc = run(200 + 5 * 150 + 1350)  # every minimum, then the patient raised to full
    p5 = alloc.for_receiver("p5")
    assert p5["p0/v"].level is Level.FULL and p5["p1/v"].kbps == 150.0
    # A receiver never gets a lower-priority video while a higher one is paused (equal minimums).
    for capacity in range(100, 5001, 50):
        mine = run(float(capacity)).for_receiver("p5")
        ordered = [mine[f"{p}/v"].kbps for p in ["p0", "p1", "p2", "p3", "p4"]]
        assert ordered == sorted(ordered, reverse=True)


def test_unknown_downlink_is_unconstrained() -> None:
    alloc = run(None)
    assert all(a.level is Level.FULL for a in alloc.streams.values())
    assert set(alloc.receiver_levels.values()) == {ReceiverLevel.GOOD}


def test_audio_is_capped_to_its_minimum_before_video_is_considered() -> None:
    streams = [
        Stream("a1", "x", "audio", 64.0, 32.0),
        Stream("a2", "y", "audio", 64.0, 32.0),
        Stream("v1", "x", "video", 1000.0, 150.0),
    ]
    alloc = allocate([Receiver("r", 100.0)], streams, {"r": ["a1", "a2", "v1"]})
    assert alloc.get("r", "a1").level is Level.CAPPED and alloc.get("r", "a1").kbps == 32.0
    assert alloc.get("r", "v1").level is Level.PAUSED
    assert alloc.receiver_levels["r"] is ReceiverLevel.AUDIO_ONLY
    assert alloc.publisher_cap_kbps["v1"] == 150.0  # nobody takes it: its minimum


def test_shared_encoding_forwards_the_least_rate_to_everyone() -> None:
    streams = call_streams()
    receivers = [Receiver(p, 900.0 if p == "p5" else None) for p in PEOPLE]
    alloc = allocate(receivers, streams, everyone_else(streams), shared_encoding=True)
    p0_video = {alloc.get(p, "p0/v").kbps for p in PEOPLE if p != "p0"}
    assert len(p0_video) == 1 and alloc.publisher_cap_kbps["p0/v"] == p0_video.pop()
    assert alloc.total_kbps("p5") <= 900.0
    assert alloc.receiver_levels["p1"] is ReceiverLevel.DEGRADED


def test_smoother_downgrades_at_once_and_upgrades_after_the_hold() -> None:
    streams = call_streams()
    subs = everyone_else(streams)
    smoother = AllocationSmoother(upgrade_hold_s=5.0)

    def step(now: float, capacity: float) -> list[tuple[str, Level | None, Level, bool]]:
        proposed = allocate([Receiver("p5", capacity)], streams, {"p5": subs["p5"]})
        update = smoother.update(now, proposed, streams)
        assert update.allocation.total_kbps("p5") <= proposed.total_kbps("p5") + 1e-9
        return [(c.stream_id, c.previous, c.level, c.keyframe) for c in update.changes]

    first = step(0.0, 10000.0)
    assert len(first) == 10 and all(prev is None for _, prev, _, _ in first)
    down = step(1.0, 300.0)
    assert ("p4/v", Level.FULL, Level.PAUSED, False) in down
    assert step(2.0, 10000.0) == []
    assert step(5.9, 10000.0) == []
    up = step(7.0, 10000.0)
    assert ("p4/v", Level.PAUSED, Level.FULL, True) in up  # resumed: keyframe
    assert smoother.update(8.0, allocate([], streams, {}), streams).changes == []


def test_smoother_does_not_flap_on_an_oscillating_link() -> None:
    streams = call_streams()
    subs = everyone_else(streams)
    smoother = AllocationSmoother(upgrade_hold_s=5.0)
    raw_changes = smoothed_changes = receiver_changes = 0
    last_raw: Allocation | None = None
    for tick in range(120):  # the link swings every second for two minutes
        capacity = 4000.0 if tick % 2 == 0 else 400.0
        proposed = allocate([Receiver("p5", capacity)], streams, {"p5": subs["p5"]})
        if last_raw is not None:
            raw_changes += sum(
                1 for k, a in proposed.streams.items() if a.level is not last_raw.streams[k].level
            )
        last_raw = proposed
        update = smoother.update(float(tick), proposed, streams)
        if tick > 0:
            smoothed_changes += len(update.changes)
            receiver_changes += len(update.receiver_changes)
    assert raw_changes > 300
    assert smoothed_changes <= 5  # one downgrade, never re-upgraded while it keeps swinging
    assert receiver_changes <= 1


def test_smoother_backs_off_after_a_failed_upgrade() -> None:
    streams = [Stream("v", "x", "video", 1000.0, 150.0)]
    smoother = AllocationSmoother(upgrade_hold_s=2.0, max_hold_s=8.0)

    def level(now: float, capacity: float) -> Level:
        proposed = allocate([Receiver("r", capacity)], streams, {"r": ["v"]})
        return smoother.update(now, proposed, streams).allocation.get("r", "v").level

    assert level(0.0, 100.0) is Level.PAUSED
    assert level(1.0, 2000.0) is Level.PAUSED
    assert level(3.0, 2000.0) is Level.FULL  # held 2 s
    assert level(4.0, 100.0) is Level.PAUSED  # failed 1 s after upgrading: hold doubles
    assert level(5.0, 2000.0) is Level.PAUSED
    assert level(8.0, 2000.0) is Level.PAUSED
    assert level(9.0, 2000.0) is Level.FULL


def test_a_probe_confirmation_skips_the_hold_for_a_few_seconds_and_forgives_failures() -> None:
    streams = [Stream("v", "x", "video", 1000.0, 150.0)]
    smoother = AllocationSmoother(upgrade_hold_s=2.0, max_hold_s=8.0)

    def level(now: float, capacity: float) -> Level:
        proposed = allocate([Receiver("r", capacity)], streams, {"r": ["v"]})
        return smoother.update(now, proposed, streams).allocation.get("r", "v").level

    assert level(0.0, 100.0) is Level.PAUSED
    assert level(2.0, 2000.0) is Level.PAUSED
    assert level(4.0, 2000.0) is Level.FULL
    assert level(5.0, 100.0) is Level.PAUSED  # failed soon after: the hold is now 4 s
    smoother.confirm("r", 6.0)  # a probe proved the link
    assert level(6.0, 100.0) is Level.PAUSED  # the proposal is not better yet (publisher lag)
    assert level(7.0, 2000.0) is Level.FULL  # within the window: no hold
    assert level(8.0, 100.0) is Level.PAUSED
    assert level(10.0, 2000.0) is Level.PAUSED  # the window is over: held again
