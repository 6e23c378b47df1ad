"""WebhookDispatcher against a real local HTTP receiver: signing, retries, drops, close."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, generate_latest

from sfu.service.settings import WebhooksSettings
from sfu.service.webhooks import EVENT_ID_HEADER, WebhookDispatcher, sign, verify_signature

from .conftest import eventually, free_port

SECRET = "hook-secret-0123456789"


def dispatcher(*urls: str, **kw: object) -> WebhookDispatcher:
    registry = kw.pop("registry", None)
    cfg = WebhooksSettings(urls=list(urls), secret=SECRET, **kw)  # type: ignore[arg-type]
    return WebhookDispatcher(cfg, registry=registry, backoff=0.05)  # type: ignore[arg-type]


# -- verify_signature: what a receiver runs -------------------------------------------------------
def test_verify_signature_accepts_a_fresh_correct_signature() -> None:
    body = b'{"id":"evt_1","type":"participant.joined"}'
    header = sign(SECRET, 1_700_000_000, body)
    assert header.startswith("sha256=")
    assert verify_signature(SECRET, "1700000000", body, header, now=1_700_000_100)
    assert verify_signature(SECRET, 1_700_000_000, body.decode(), header, now=1_700_000_000)


def test_verify_signature_rejects_tampering_wrong_secret_replays_and_garbage() -> None:
    body = b'{"id":"evt_1"}'
    header = sign(SECRET, 1000, body)
    assert not verify_signature(SECRET, "1000", b'{"id":"evt_2"}', header, now=1000)
    assert not verify_signature("another-secret", "1000", body, header, now=1000)
    assert not verify_signature(SECRET, "1001", body, header, now=1000)  # timestamp is signed
    assert not verify_signature(SECRET, "1000", body, header, now=1000 + 301)  # replay
    assert not verify_signature(SECRET, "1000", body, header, now=1000 - 301)  # from the future
    assert verify_signature(SECRET, "1000", body, header, now=1000 + 301, tolerance=600)
    assert not verify_signature(SECRET, "soon", body, header, now=1000)
    assert not verify_signature(SECRET, None, body, header, now=1000)
    assert not verify_signature(SECRET, "1000", body, None, now=1000)
    assert not verify_signature(SECRET, "1000", body, header.removeprefix("sha256="), now=1000)


# -- delivery -------------------------------------------------------------------------------------
async def test_events_arrive_signed_with_id_type_time_and_data(receivers) -> None:
    rx = await receivers()
    d = dispatcher(rx.url)
    await d.start()
    try:
        d("participant.joined", {"clinic": "c1", "room": "team", "participant": "p_1"})
        await rx.wait_for(lambda: d.delivered == 1)
    finally:
        await d.close()
    (req,) = rx.requests
    assert req.verifies(SECRET)
    assert req.headers["Content-Type"] == "application/json"
    event = req.event
    assert event["type"] == "participant.joined"
    assert event["data"] == {"clinic": "c1", "room": "team", "participant": "p_1"}
    assert event["id"].startswith("evt_") and req.headers[EVENT_ID_HEADER] == event["id"]
    assert event["time"].endswith("Z") and "T" in event["time"]
    assert (d.delivered, d.failed, d.dropped) == (1, 0, 0)


async def test_names_never_leave_the_server(receivers) -> None:
    rx = await receivers()
    d = dispatcher(rx.url)
    await d.start()
    try:
        d("participant.joined", {"participant": "p_1", "name": "Alice Patient",
                                 "participants": [{"id": "p_2", "name": "Dr Lee"}]})
        await rx.wait_for(lambda: d.delivered == 1)
    finally:
        await d.close()
    assert b"Alice" not in rx.requests[0].body and b"Dr Lee" not in rx.requests[0].body
    assert rx.events()[0]["data"] == {"participant": "p_1", "participants": [{"id": "p_2"}]}


async def test_a_500_is_retried_and_the_event_delivered(receivers) -> None:
    rx = await receivers(statuses=[500])
    d = dispatcher(rx.url, max_attempts=3)
    await d.start()
    try:
        d("consultation.started", {"clinic": "c1", "space": "s_1"})
        await rx.wait_for(lambda: d.delivered == 1)
    finally:
        await d.close()
    assert len(rx.requests) == 2
    first, second = rx.requests
    assert first.event == second.event  # the same event, the same id: receivers de-duplicate
    assert second.verifies(SECRET)
    assert (d.delivered, d.failed) == (1, 0)


async def test_a_4xx_is_final_and_not_retried(receivers) -> None:
    rx = await receivers(statuses=[400, 400, 400])
    d = dispatcher(rx.url, max_attempts=3)
    await d.start()
    try:
        d("participant.left", {"participant": "p_1"})
        await rx.wait_for(lambda: d.failed == 1)
        await asyncio.sleep(0.2)  # more than the backoff: no retry comes
    finally:
        await d.close()
    assert len(rx.requests) == 1
    assert (d.delivered, d.failed) == (0, 1)


async def test_an_unreachable_receiver_is_tried_max_attempts_times_then_counted_failed() -> None:
    d = dispatcher(f"http://127.0.0.1:{free_port()}/hook", max_attempts=3, timeout=1.0)
    await d.start()
    try:
        d("participant.left", {"participant": "p_1"})
        await eventually(lambda: d.failed == 1, within=5)
    finally:
        await d.close()
    assert (d.delivered, d.failed) == (0, 1)


async def test_a_full_queue_drops_and_counts(receivers) -> None:
    rx = await receivers()
    registry = CollectorRegistry()
    d = dispatcher(rx.url, queue_size=2, registry=registry)
    for i in range(5):  # not started yet: nothing drains the queue
        d("join.refused", {"code": "room_full", "n": i})
    assert d.dropped == 3 and d.queued == 2
    await d.start()
    try:
        await rx.wait_for(lambda: d.delivered == 2)
    finally:
        await d.close()
    assert [e["data"]["n"] for e in rx.events()] == [0, 1]
    text = generate_latest(registry).decode()
    assert "sfu_webhooks_dropped_total 3.0" in text
    assert "sfu_webhooks_delivered_total 2.0" in text
    assert "sfu_webhooks_failed_total 0.0" in text


async def test_a_slow_receiver_does_not_hold_back_another(receivers) -> None:
    slow = await receivers(hang=True)
    fast = await receivers()
    d = dispatcher(slow.url, fast.url, timeout=10.0)
    await d.start()
    try:
        start = time.monotonic()
        d("space.created", {"clinic": "c1", "space": "s_1"})
        d("space.created", {"clinic": "c1", "space": "s_2"})
        await fast.wait_for(lambda: len(fast.requests) == 2, within=2)
        assert time.monotonic() - start < 1.0
        assert len(slow.requests) == 1  # still stuck on the first
    finally:
        slow.release.set()
        await d.close()


async def test_calling_never_blocks_even_when_the_receiver_hangs(receivers) -> None:
    rx = await receivers(hang=True)
    d = dispatcher(rx.url, queue_size=100)
    await d.start()
    try:
        start = time.perf_counter()
        for i in range(1000):
            d("quality.changed", {"participant": "p_1", "n": i})
        assert time.perf_counter() - start < 0.5
        assert d.dropped >= 900
    finally:
        await d.close(flush_timeout=0)


def _dispatcher_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if not t.done()
            and "WebhookDispatcher" in getattr(t.get_coro(), "__qualname__", "")]


async def test_close_is_idempotent_and_leaves_no_tasks(receivers) -> None:
    stuck = await receivers(hang=True)
    idle = await receivers()
    d = dispatcher(stuck.url, idle.url)
    await d.start()
    assert len(_dispatcher_tasks()) == 2  # one worker per URL
    d("participant.joined", {"participant": "p_1"})
    await stuck.wait_for(lambda: len(stuck.requests) == 1)  # one worker is inside a request
    start = time.monotonic()
    await d.close(flush_timeout=0.2)
    await d.close()
    assert time.monotonic() - start < 2.0
    assert _dispatcher_tasks() == []
    assert d._session is None
    d("participant.left", {"participant": "p_1"})  # after close: ignored, no error
    assert d.queued == 0


async def test_without_urls_it_does_nothing() -> None:
    d = WebhookDispatcher(WebhooksSettings())
    await d.start()
    d("participant.joined", {"participant": "p_1"})
    assert not d.enabled and d.queued == 0
    await d.close()
