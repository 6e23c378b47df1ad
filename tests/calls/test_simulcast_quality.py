"""Simulcast in the quality controller, over fake endpoints: a weak receiver is given a lower
layer while the others keep the top one and nobody's publisher is capped for it; publishers are
told which layers anyone receives (dynacast); receivers are told which layer they get."""

from __future__ import annotations

from sfu.bandwidth import Receiver, Stream, allocate
from sfu.bandwidth.allocator import AllocationSmoother, Level, StreamAllocation
from sfu.calls.call import Participant
from sfu.calls.quality import MAX_SIMULCAST_KBPS
from tests.calls.conftest import World, make_world
from tests.calls.fakes import FakeProducer

LAYER_KBPS = (150.0, 500.0, 1500.0)
# seconds for the loss-based estimate (300 kbit/s at first, +8 %/s) to pass what B and C are sent
WARM_UP = 25


def room(world: World) -> tuple[Participant, Participant, Participant]:
    """A publishes simulcast video; B and C publish audio only."""
    a = world.join("staff", "dr-a", {"room": "team"})
    b = world.join("staff", "dr-b", {"room": "team"})
    c = world.join("staff", "dr-c", {"room": "team"})
    ea = world.endpoint(a)
    ea.producers["audio"] = FakeProducer(a.id, "audio")
    ea.producers["video"] = FakeProducer(a.id, "video", rids=("q", "h", "f"))
    ea.producers["video"].sizes = [(320, 240), (640, 480), (1280, 960)]
    ea.listener.producers_changed(ea)
    for p in (b, c):
        world.endpoint(p).publish("audio")
    return a, b, c


def tick(world: World, loss: dict[str, float], off: frozenset[int] = frozenset(),
         remb: dict[str, float] | None = None) -> None:
    """One second: layers send their rates (not those switched off), audio 40 kbit/s; each
    receiver is sent what it is subscribed to, reports ``loss`` and sends ``remb``."""
    now = world.mono()
    for endpoint in world.endpoints.made.values():
        for producer in endpoint.producers.values():
            if producer.rids:
                producer.send_layers([0.0 if i in off else k for i, k in enumerate(LAYER_KBPS)])
            else:
                producer.octets += 40 * 1000 // 8
        rates = {}
        for consumer in endpoint.consumers():
            producer = consumer.producer
            rates[producer.id] = (LAYER_KBPS[consumer.layer or 0] if producer.rids else 40.0)
        endpoint.send_media(rates)
        endpoint.report(loss.get(endpoint.id, 0.0), now)
        if remb and endpoint.id in remb:
            endpoint.remb(remb[endpoint.id], now)
    world.mono.advance(1.0)
    world.calls.tick()


async def test_a_weak_receiver_gets_a_lower_layer_and_nobody_else_pays_for_it() -> None:
    world = make_world()
    a, b, c = room(world)
    video = a.id + ":video"
    for _ in range(WARM_UP):
        tick(world, {})
    eb, ec = world.endpoint(b), world.endpoint(c)
    assert eb.consumer_of(video).target == 2 and ec.consumer_of(video).target == 2
    publisher = world.clients["dr-a"]
    assert publisher.last("publish_layers") == {"q": True, "h": False, "f": True}
    assert world.clients["dr-c"].last("video_layers") == {
        a.id: {"rid": "f", "width": 1280, "height": 960}}

    for _ in range(5):  # C's link is limited (loss, and its REMB says 800 kbit/s)
        tick(world, {c.id: 0.06}, remb={c.id: 800.0})
        if ec.consumer_of(video).target < 2:
            break
    weak = ec.consumer_of(video)
    assert weak.target == 1 and not weak.paused  # a smaller picture, not no picture
    assert eb.consumer_of(video).target == 2  # B keeps the top layer
    rembs = world.endpoint(a).producers["video"].rembs
    assert rembs and min(rembs) == MAX_SIMULCAST_KBPS  # A is never capped for C
    told = world.clients["dr-c"].last("video_layers")[a.id]
    assert told["rid"] == "qhf"[weak.target] and told["width"] == (320, 640)[weak.target]
    assert world.clients["dr-c"].last("quality").estimates["layers"][a.id]["rid"] == told["rid"]
    on = publisher.last("publish_layers")
    assert on["f"] and on["q"] and on["qhf"[weak.target]]  # what B and C receive stays on

    for _ in range(60):  # C's link recovers: back to the top layer
        tick(world, {})
        if ec.consumer_of(video).target == 2:
            break
    assert ec.consumer_of(video).target == 2
    assert world.clients["dr-c"].last("video_layers")[a.id]["rid"] == "f"
    await world.calls.close()


async def test_a_layer_only_dynacast_switched_off_can_still_be_chosen() -> None:
    """h is off because nobody took it; a receiver whose link carries h but not f gets h (its
    rate as it was when sent), and h is switched back on for it."""
    world = make_world()
    a, b, c = room(world)
    for second in range(WARM_UP):  # h is sent until A is told nobody receives it
        tick(world, {}, off=frozenset({1}) if second > 2 else frozenset())
    assert world.clients["dr-a"].last("publish_layers")["h"] is False
    ec = world.endpoint(c)
    video = a.id + ":video"
    tick(world, {c.id: 0.06}, off=frozenset({1}), remb={c.id: 800.0})
    assert ec.consumer_of(video).target == 1
    assert world.clients["dr-a"].last("publish_layers")["h"] is True
    await world.calls.close()


def test_the_allocator_gives_whole_layers_and_pauses_only_below_the_lowest() -> None:
    layers = ((0, 150.0), (1, 500.0), (2, 1500.0))
    streams = [Stream("a:audio", "a", "audio", 40, 20), Stream("a:video", "a", "video", 1500, 150,
                                                                layers=layers)]
    subs = {"r": ["a:audio", "a:video"]}
    for budget, want in ((None, (Level.FULL, 2)), (2000, (Level.FULL, 2)),
                         (1000, (Level.CAPPED, 1)), (300, (Level.CAPPED, 0)),
                         (100, (Level.PAUSED, None))):
        got = allocate([Receiver("r", budget)], streams, subs).get("r", "a:video")
        assert (got.level, got.layer) == want, budget
        if got.level is not Level.PAUSED:
            assert got.kbps == dict(layers)[got.layer]  # a layer's rate, not a slice of budget


def test_the_smoother_holds_a_layer_upgrade_and_applies_a_downgrade_at_once() -> None:
    smoother = AllocationSmoother(upgrade_hold_s=5.0)
    stream = Stream("a:video", "a", "video", 1500, 150, layers=((0, 150.0), (1, 500.0), (2, 1500.0)))

    def proposal(layer: int) -> object:
        from sfu.bandwidth.allocator import Allocation
        level = Level.FULL if layer == 2 else Level.CAPPED
        return Allocation(streams={("r", "a:video"): StreamAllocation(level, 100.0 * layer, layer)},
                          receiver_levels={"r": None})  # type: ignore[dict-item]

    assert smoother.update(0.0, proposal(1), [stream]).allocation.get("r", "a:video").layer == 1
    assert smoother.update(1.0, proposal(0), [stream]).allocation.get("r", "a:video").layer == 0
    assert smoother.update(2.0, proposal(1), [stream]).allocation.get("r", "a:video").layer == 0
    held = smoother.update(9.0, proposal(1), [stream])
    assert held.allocation.get("r", "a:video").layer == 1 and held.changes


async def test_a_feedback_reporting_heavy_loss_reallocates_at_once_not_at_the_next_tick() -> None:
    """A link that drops under the top layer must not wait up to a second (and the keyframe
    after it) with its video frozen: the reallocation runs as soon as the loss is reported."""
    import asyncio

    world = make_world()
    a, b, c = room(world)
    video = a.id + ":video"
    for _ in range(WARM_UP):
        tick(world, {})
    ec = world.endpoint(c)
    assert ec.consumer_of(video).target == 2
    # C's downlink falls: its REMB says 400 kbit/s (not yet used: the next tick is a second
    # away), and a transport feedback reports a fifth of 50 packets lost
    world.mono.advance(0.5)
    now = world.mono()
    ec.remb(400.0, now)
    lost = [(i, now - 0.1, 1200, None if i % 5 == 0 else now) for i in range(50)]
    for listener in list(ec._feedback):
        listener(lost, now)
    await asyncio.sleep(0)  # the reallocation runs off the packet path, at once
    await asyncio.sleep(0)
    assert ec.consumer_of(video).target < 2
    await world.calls.close()
