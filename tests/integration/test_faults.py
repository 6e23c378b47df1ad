"""Faults: each leaves the rest of the server unaffected and nothing behind.

Every test runs in ``fault_bed``: a server of its own with short timeouts and a bystander call
whose audio must arrive both ways in every one-second window throughout. Each ends with
``bed.settled()``: no call, session, endpoint, asyncio task or file descriptor above the
baseline, and nothing logged at ERROR or with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from tests.integration.faultbed import (
    FaultyClient,
    fault_bed,
    media_port,
    port_is_free,
)
from tests.integration.helpers import close_all, join_all, receives_everyone, wait_for
from tests.integration.test_bad_input import next_json, ws_plain
from tests.integration.test_waiting_area import enter

TEAM = {"room": "team"}


def call_of(server, venue: str):
    return next(c for k, c in server.calls.by_key.items() if k.id == venue)


def flowing(receiver, source, kind: str):
    """A predicate: ``receiver`` got more of ``source``'s ``kind`` than it had when asked."""
    track = receiver.received_from(source.participant, kind)
    before = 0 if track is None else track.packets

    def check() -> bool:
        now = receiver.received_from(source.participant, kind)
        return now is not None and now.packets > before + 10

    return check


async def media_both_ways(a, b, timeout: float = 10.0) -> None:
    checks = [flowing(x, y, kind) for x, y in ((a, b), (b, a)) for kind in ("audio", "video")]
    await wait_for(lambda: all(c() for c in checks), timeout=timeout)


async def test_the_bed_sees_what_is_left_open(token, clip):
    """Negative control: a client left in a call shows as a leak (call, session, tasks, fds)."""
    async with fault_bed(token, clip) as bed:
        (c,) = await join_all(bed.url, [token(sub="left-open")], clip, TEAM)
        await c.wait_message(lambda m: m["type"] == "offer")
        assert {"calls", "sessions", "tasks", "fds"} <= set(bed.leftovers()), bed.leftovers()
        await close_all([c])
        await bed.settled()


async def consultation(bed, token, clip, name: str, staff: str):
    """A patient entered over HTTP and a clinician in its space, media flowing: (the entry,
    the patient's FaultyClient, the clinician's client)."""
    entry = await enter(bed.server, name)
    patient = FaultyClient(bed.url, entry["token"], clip=clip)
    (clinician,) = await join_all(bed.url, [token(sub=staff)], clip, {"space": entry["space"]})
    await patient.join({"space": entry["space"]})
    await wait_for(receives_everyone([patient, clinician]), timeout=15)
    return entry, patient, clinician


# -- a. a peer that vanishes mid-handshake -----------------------------------------------------

async def test_a_peer_gone_after_the_offer_before_its_answer(token, clip):
    async with fault_bed(token, clip) as bed:
        session, sock = await ws_plain(bed.server)
        await sock.send_str(json.dumps({"type": "auth", "token": token(sub="gone")}))
        await sock.send_str(json.dumps({"type": "join", "target": TEAM}))
        while (msg := await next_json(sock))["type"] != "offer":
            pass
        port = media_port(msg["sdp"])
        assert not port_is_free(port)
        await session.close()  # WebSocket gone; its UDP never existed
        await bed.settled()
        assert port_is_free(port)


async def join_without_dtls(bed, tok: str, clip) -> tuple[FaultyClient, dict, float]:
    """A client in the team room whose ICE completes and whose DTLS never starts: (the client,
    the server's offer, when it came)."""
    c = FaultyClient(bed.url, tok, clip=clip)
    c.block_dtls = True
    await c.join(TEAM)
    offer = await c.wait_message(lambda m: m["type"] == "offer")
    offered = time.monotonic()
    await c.wait_until(lambda: c.ice_state() == "completed", timeout=5)
    return c, offer, offered


async def test_a_peer_gone_after_its_answer_before_dtls_completes(token, clip):
    async with fault_bed(token, clip) as bed:
        c, offer, _ = await join_without_dtls(bed, token(sub="gone"), clip)
        call = call_of(bed.server, "team")
        endpoint = next(iter(call.participants.values())).endpoint
        assert not endpoint.connected  # ICE is up, DTLS is not
        await c.close()  # WebSocket and UDP gone
        await bed.settled()
        assert port_is_free(media_port(offer["sdp"]))


# -- b. a peer that vanishes mid-call ------------------------------------------------------------

async def test_a_patient_gone_mid_call_without_a_leave(token, clip):
    """UDP stops and the signaling connection is cut (no leave, no WebSocket close)."""
    async with fault_bed(token, clip) as bed:
        entry, patient, staff = await consultation(bed, token, clip, "Pat Gone", "dr-b")
        patient.silence_media()
        patient.drop_socket()
        left = await staff.wait_message(lambda m: m["type"] == "participant_left", timeout=5)
        assert left["participant"]["id"] == patient.participant
        space = bed.server.registry.find_space("demo", entry["space"])
        assert space is not None and not space.patient_present  # kept for the reconnect grace
        assert space.status == "in_consultation"
        await patient.close()
        await close_all([staff])
        await bed.settled()
        assert space.status == "on_hold"


async def test_a_peer_whose_udp_stops_while_its_websocket_stays_is_removed_at_inactivity_timeout(
        token, clip):
    async with fault_bed(token, clip, media={"inactivity_timeout": 2.0}) as bed:
        a = FaultyClient(bed.url, token(sub="a"), clip=clip)
        (b,) = await join_all(bed.url, [token(sub="b")], clip, TEAM)
        await a.join(TEAM)
        await wait_for(receives_everyone([a, b]), timeout=15)
        a.silence_media()
        silenced = time.monotonic()
        told = await a.wait_message(lambda m: m["type"] == "error", timeout=6)
        took = time.monotonic() - silenced
        assert told["code"] == "media_failed" and "no media" in told["message"], told
        assert 2.0 <= took <= 4.0, took
        await b.wait_message(lambda m: m["type"] == "participant_left", timeout=2)
        await close_all([a, b])
        await bed.settled()


# -- c. a peer that vanishes mid-renegotiation ------------------------------------------------

async def test_a_peer_gone_before_answering_a_new_offer(token, clip):
    async with fault_bed(token, clip) as bed:
        x = FaultyClient(bed.url, token(sub="x"), clip=clip)
        y = FaultyClient(bed.url, token(sub="y"), clip=clip)
        await x.join(TEAM)
        await y.join(TEAM)
        await wait_for(receives_everyone([x, y]), timeout=15)
        y.hold_offers = True
        offers = y.offers
        (z,) = await join_all(bed.url, [token(sub="z")], clip, TEAM)  # x and y get a new offer
        await y.wait_until(lambda: y.offers > offers, timeout=5)
        await y.vanish()  # its offer never answered
        await x.wait_message(lambda m: m["type"] == "participant_left"
                             and m["participant"]["id"] == y.participant, timeout=5)
        await wait_for(receives_everyone([x, z]), timeout=15)
        await media_both_ways(x, z)
        call = call_of(bed.server, "team")
        assert sorted(call.participants) == sorted([x.participant, z.participant])
        await close_all([x, z])
        await bed.settled()


# -- d. DTLS that never completes ---------------------------------------------------------------

async def test_dtls_that_never_completes_is_removed_at_the_connect_timeout(token, clip):
    async with fault_bed(token, clip) as bed:
        c, offer, offered = await join_without_dtls(bed, token(sub="no-dtls"), clip)
        port = media_port(offer["sdp"])
        told = await c.wait_message(lambda m: m["type"] == "error", timeout=6)
        took = time.monotonic() - offered
        assert told["code"] == "media_failed" and "connect timeout" in told["message"], told
        assert 2.8 <= took <= 5.0, took
        await wait_for(lambda: port_is_free(port), timeout=3)
        await c.close()
        await bed.settled()


# -- e. a dropped WebSocket and the same token back within the grace --------------------------

async def waiting_area(server) -> list[dict]:
    return server.registry.get("demo").waiting_area.to_json()["spaces"]


async def test_a_patient_back_within_the_grace_keeps_space_and_place(token, clip):
    async with fault_bed(token, clip, waiting_area={"reconnect_grace": 30.0}) as bed:
        before_me = await enter(bed.server, "First")
        entry, patient, staff = await consultation(bed, token, clip, "Pat Back", "dr-e")
        after_me = await enter(bed.server, "Last")
        view = await waiting_area(bed.server)
        patient.silence_media()
        patient.drop_socket()
        await staff.wait_message(lambda m: m["type"] == "participant_left", timeout=5)
        again = FaultyClient(bed.url, entry["token"], clip=clip)
        await again.join({"space": entry["space"]})
        await wait_for(receives_everyone([again, staff]), timeout=15)
        await media_both_ways(again, staff)
        after = await waiting_area(bed.server)
        assert [s["space"] for s in after] == [before_me["space"], entry["space"], after_me["space"]]
        mine = next(s for s in after if s["space"] == entry["space"])
        was = next(s for s in view if s["space"] == entry["space"])
        assert mine["waiting_since"] == was["waiting_since"]
        assert mine["status"] == "in_consultation"
        assert sorted(p["role"] for p in mine["participants"]) == ["patient", "staff"]
        call = call_of(bed.server, entry["space"])
        assert sorted(call.participants) == sorted([again.participant, staff.participant])
        await close_all([patient, again, staff])
        await bed.settled()


async def test_a_patient_back_before_the_server_noticed_the_drop_replaces_the_old_connection(
        token, clip):
    """The old socket is still open (a half-open TCP connection the server has not noticed):
    the new one replaces it, nobody is in the call twice."""
    async with fault_bed(token, clip, waiting_area={"reconnect_grace": 30.0}) as bed:
        entry, old, staff = await consultation(bed, token, clip, "Pat Twice", "dr-e2")
        old.silence_media()
        again = FaultyClient(bed.url, entry["token"], clip=clip)
        await again.join({"space": entry["space"]})
        ended = await old.wait_message(lambda m: m["type"] == "ended", timeout=5)
        assert ended["reason"] == "replaced"
        await wait_for(receives_everyone([again, staff]), timeout=15)
        await media_both_ways(again, staff)
        space = bed.server.registry.find_space("demo", entry["space"])
        assert [p["role"] for p in space.participants].count("patient") == 1
        call = call_of(bed.server, entry["space"])
        assert sorted(call.participants) == sorted([again.participant, staff.participant])
        await close_all([old, again, staff])
        await bed.settled()


# -- f. an event-loop stall of 2 s ---------------------------------------------------------------

async def test_a_two_second_stall_of_the_event_loop_removes_nobody(token, clip):
    """Timeouts shorter than the stall: a timer that counts the server's own stall against its
    peers would put them out (inactivity), or a joining one (connect)."""
    async with fault_bed(token, clip, media={"inactivity_timeout": 1.5, "connect_timeout": 2.0}) as bed:
        a, b = await join_all(bed.url, [token(sub="a"), token(sub="b")], clip, TEAM)
        await wait_for(receives_everyone([a, b]), timeout=15)
        joining = FaultyClient(bed.url, token(sub="joining"), clip=clip)
        await joining.join(TEAM)
        time.sleep(2.0)  # noqa: ASYNC251 - the stall under test: server and clients share this loop
        await wait_for(receives_everyone([a, b, joining]), timeout=15)
        await media_both_ways(a, b)
        await bed.watch.wait_windows(3)  # past every shortened timer after the stall
        for c in (a, b, joining, *bed.bystanders):
            assert not [m for m in c.messages if m["type"] in ("error", "ended")], c.messages[-3:]
        assert len(call_of(bed.server, "team").participants) == 3
        await close_all([a, b, joining])
        await bed.settled()


# -- g. a webhook receiver that hangs ------------------------------------------------------------

class HangingReceiver:
    """Accepts TCP connections, reads what comes and never answers; notes when each came. It
    closes its end only once the sender gave up on the connection."""

    def __init__(self) -> None:
        self.accepted: list[float] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_a_webhook_receiver_that_hangs_delays_nothing(token, clip):
    rx = HangingReceiver()
    url = await rx.start()
    hooks = {"urls": [url], "secret": "hook-secret-0123456789", "timeout": 0.5,
             "max_attempts": 2, "queue_size": 3}
    drain_timeout = 3.0
    try:
        async with fault_bed(token, clip, webhooks=hooks,
                             server={"drain_timeout": drain_timeout}) as bed:
            dispatcher = bed.server.webhooks
            # the API and joins answer at once while the first deliveries hang
            async with aiohttp.ClientSession() as http:
                for i in range(8):
                    started = time.monotonic()
                    async with http.post(f"{bed.url}/v1/clinics/demo/waiting-area",
                                         json={"name": f"P{i}"}) as r:
                        assert r.status == 201
                    assert time.monotonic() - started < 0.5
            a, b = await join_all(bed.url, [token(sub="a"), token(sub="b")], clip, TEAM)
            await wait_for(receives_everyone([a, b]), timeout=15)
            # bounded: the queue holds at most queue_size, the rest is dropped and counted
            assert dispatcher.queued <= hooks["queue_size"] and dispatcher.dropped > 0
            # each event: max_attempts connections, each given up after timeout, then failed
            await wait_for(lambda: dispatcher.failed >= 1, timeout=5)
            first, second = rx.accepted[:2]  # the first event: timeout, back-off 0.5 s, again
            assert 0.9 <= second - first <= 1.6, rx.accepted
            assert dispatcher.delivered == 0
            await close_all([a, b])
            await bed.settled()
            # shutdown as `sfu serve` does it on SIGTERM: drain, then close, within drain_timeout
            started = time.monotonic()
            await asyncio.wait_for(bed.server.drain(), timeout=drain_timeout)
            await bed.server.close()
            assert time.monotonic() - started < drain_timeout
    finally:
        await rx.close()
