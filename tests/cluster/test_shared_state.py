"""Two or three in-process nodes on one real redis-server: what nodes share, and where calls go.

(The node processes, SIGKILL and the dashboard across nodes are tests/cluster/test_three_nodes.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from sfu.auth import mint_token
from sfu.client.client import Client, ClientError
from tests.cluster.nodes import node_config, redis_server
from tests.conftest import SECRET, running_server
from tests.integration.helpers import close_all, receives_everyone, wait_for

pytestmark = pytest.mark.timeout(90)


def admin() -> str:
    return mint_token(SECRET, sub="ops", role="admin", clinic="*", ttl=600)


def staff(sub: str = "dr-lee", **kw: Any) -> str:
    return mint_token(SECRET, sub=sub, role="staff", clinic="demo", ttl=600, **kw)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def nodes(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[list[Any]]:
    prefix = "t" + str(abs(hash(request.node.name)))[:10]  # each test its own keys
    servers: list[Any] = []
    stack = []
    try:
        for name in ("n1", "n2"):
            cm = running_server(node_config(redis_url, name, prefix))
            servers.append(await cm.__aenter__())
            stack.append(cm)
        await wait_for(lambda: all(len(s.cluster.live) == 2 for s in servers), timeout=5)
        yield servers
    finally:
        for cm in reversed(stack):
            await cm.__aexit__(None, None, None)
        r = aioredis.from_url(redis_url)
        leftover = [k async for k in r.scan_iter(f"{prefix}:*")]
        await r.aclose()
        request.node.leftover_keys = leftover


async def _json(http: aiohttp.ClientSession, method: str, url: str, token: str | None = None,
                body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as resp:
        text = await resp.text()
        return resp.status, (await resp.json()) if text and resp.content_type == "application/json" else text


async def test_a_clinic_and_room_made_on_one_node_are_on_every_node(nodes):
    n1, n2 = nodes
    async with aiohttp.ClientSession() as http:
        status, _ = await _json(http, "PUT", f"{n1.url}/v1/clinics/north", admin(), {"name": "North"})
        assert status == 201
        status, _ = await _json(http, "PUT", f"{n1.url}/v1/clinics/north/rooms/huddle", admin(),
                                {"name": "Huddle"})
        assert status == 201
        await wait_for(lambda: (c := n2.registry.find("north")) is not None
                       and c.find_room("huddle") is not None, timeout=5)
        status, body = await _json(http, "GET", f"{n2.url}/v1/clinics/north", admin())
        assert status == 200 and [r["id"] for r in body["rooms"]] == ["huddle"]
        # closing the waiting area on n2 closes it for entries through n1
        status, _ = await _json(http, "PUT", f"{n2.url}/v1/clinics/north/waiting-area", admin(),
                                {"closed": True, "message": "Back at nine."})
        assert status == 200
        await wait_for(lambda: n1.registry.get("north").waiting_area.closed, timeout=5)
        status, body = await _json(http, "POST", f"{n1.url}/v1/clinics/north/waiting-area",
                                   body={"name": "Pat"})
        assert status == 409 and body["error"]["message"] == "Back at nine."
        # deleting the room on n2 removes it on n1
        status, _ = await _json(http, "DELETE", f"{n2.url}/v1/clinics/north/rooms/huddle", admin())
        assert status == 204
        await wait_for(lambda: n1.registry.get("north").find_room("huddle") is None, timeout=5)


async def test_entries_are_spread_and_any_node_lists_ends_and_invites(nodes):
    n1, n2 = nodes
    async with aiohttp.ClientSession() as http:
        entries = []
        for i in range(4):
            status, body = await _json(http, "POST", f"{n1.url}/v1/clinics/demo/waiting-area",
                                       body={"name": f"Patient {i}"})
            assert status == 201, body
            entries.append(body)
        hosted = [len(n.registry.get("demo").waiting_area) for n in nodes]
        assert hosted == [2, 2]  # placed on the least loaded node, alternately
        for node in nodes:
            status, body = await _json(http, "GET", f"{node.url}/v1/clinics/demo/waiting-area",
                                       staff())
            assert status == 200
            assert [s["patient"]["name"] for s in body["spaces"]] == [f"Patient {i}" for i in range(4)]
        remote = next(e for e in entries
                      if n1.registry.get("demo").waiting_area.find(e["space"]) is None)
        # an invite and an end through the node that does not host the space
        status, body = await _json(http, "POST", f"{n1.url}/v1/clinics/demo/waiting-area/"
                                   f"{remote['space']}/invites", staff(), {})
        assert status == 201 and body["token"]
        status, _ = await _json(http, "POST", f"{n1.url}/v1/clinics/demo/waiting-area/"
                                f"{remote['space']}/end", staff())
        assert status == 204
        assert n2.registry.get("demo").waiting_area.find(remote["space"]) is None
        status, body = await _json(http, "POST", f"{n1.url}/v1/clinics/demo/waiting-area/"
                                   f"{remote['space']}/end", staff())
        assert status == 404
        status, body = await _json(http, "GET", f"{n1.url}/v1/clinics/demo/waiting-area", staff())
        assert remote["space"] not in [s["space"] for s in body["spaces"]]
        # a patient cannot see the list on any node; only nodes ask for the names
        status, _ = await _json(http, "GET", f"{n1.url}/v1/clinics/demo/waiting-area",
                                entries[0]["token"])
        assert status == 403
        status, _ = await _json(http, "GET", f"{n2.url}/v1/cluster/clinics/demo/spaces", admin())
        assert status == 403
        status, body = await _json(http, "GET", f"{n2.url}/v1/cluster", admin())
        assert status == 200 and [n["id"] for n in body["nodes"]] == ["n1", "n2"]


async def test_a_room_lives_on_one_node_whichever_node_people_join_through(nodes, clip,
                                                                           monkeypatch):
    monkeypatch.setattr("sfu.cluster.node.UNUSED_PLACEMENT", 1.0)
    n1, n2 = nodes
    clients = [Client(n.url, staff(sub=f"s{i}"), clip=clip) for i, n in enumerate([n1, n2, n2])]
    try:
        for client in clients:
            await client.join({"room": "team"})
        assert len({c.node_url for c in clients}) == 1
        await wait_for(receives_everyone(clients), timeout=20)
        host = next(n for n in nodes if n.url == clients[0].node_url)
        assert len(host.calls.by_key) == 1 and sum(len(n.calls.by_key) for n in nodes) == 1
    finally:
        await close_all(clients)
    # the emptied room is given back after a while (UNUSED_PLACEMENT); the next join may land
    # anywhere
    key = f"{n1.cluster.keys.call('demo', 'room', 'team')}"
    await wait_for(lambda: not host.calls.by_key, timeout=10)
    assert await n1.cluster.redis.get(key) == host.cluster.id
    for _ in range(100):
        if await n1.cluster.redis.get(key) is None:
            break
        await asyncio.sleep(0.1)
    assert await n1.cluster.redis.get(key) is None
    assert await n1.cluster.redis.zscore(n1.cluster.keys.load, host.cluster.id) == 0


async def test_a_revoked_invite_is_refused_and_put_out_on_every_node(nodes, clip):
    n1, n2 = nodes
    async with aiohttp.ClientSession() as http:
        status, invite = await _json(http, "POST", f"{n1.url}/v1/clinics/demo/rooms/team/invites",
                                     staff(), {"name": "Guest"})
        assert status == 201
        guest = Client(n2.url, invite["token"], clip=clip)
        host_client = Client(n1.url, staff(), clip=clip)
        try:
            await host_client.join({"room": "team"})
            await guest.join({"room": "team"})
            status, _ = await _json(http, "DELETE", f"{n2.url}/v1/clinics/demo/invites/"
                                    f"{invite['invite']}", staff())
            assert status == 204
            ended = await guest.wait_message(lambda m: m["type"] == "ended", timeout=5)
            assert ended["reason"] == "invite_revoked"
            for node in nodes:
                status, _ = await _json(http, "GET", f"{node.url}/v1/clinics/demo", invite["token"])
                assert status == 401
        finally:
            await close_all([guest, host_client])


async def test_a_join_with_a_bad_target_or_scope_is_refused_before_any_lookup(nodes, clip):
    n1, _ = nodes
    async with aiohttp.ClientSession() as http:
        status, entry = await _json(http, "POST", f"{n1.url}/v1/clinics/demo/waiting-area",
                                    body={"name": "Pat"})
    patient = Client(n1.url, entry["token"], clip=clip)
    try:
        with pytest.raises(ClientError) as refused:
            await patient.join({"room": "team"})
        assert refused.value.code == "forbidden"
        other = Client(n1.url, staff(), clip=clip)
        with pytest.raises(ClientError) as refused:
            await other.join({"space": "sp_doesnotexist00"})
        assert refused.value.code == "not_found"
    finally:
        await close_all([patient])


async def test_a_node_leaving_hands_its_spaces_back_and_they_are_rejoined_elsewhere(
        redis_url, tmp_path: Path, clip):
    cfgs = [node_config(redis_url, name, "leave") for name in ("m1", "m2")]
    async with running_server(cfgs[1]) as m2:
        m1_cm = running_server(cfgs[0])
        m1 = await m1_cm.__aenter__()
        try:
            await wait_for(lambda: len(m2.cluster.live) == 2, timeout=5)
            async with aiohttp.ClientSession() as http:
                entries = [(await _json(http, "POST", f"{m1.url}/v1/clinics/demo/waiting-area",
                                        body={"name": f"P{i}"}))[1] for i in range(2)]
            on_m1 = next(e for e in entries if m1.registry.get("demo").waiting_area.find(e["space"]))
            name = f"P{entries.index(on_m1)}"
            since = m1.registry.get("demo").waiting_area.find(on_m1["space"]).waiting_since
        finally:
            await m1_cm.__aexit__(None, None, None)
        body = await m2.cluster.waiting_list("demo")
        shown = next(s for s in body["spaces"] if s["space"] == on_m1["space"])
        assert shown["status"] == "waiting" and shown["reconnecting"] is True
        patient = Client(m2.url, on_m1["token"], clip=clip)
        try:
            await patient.join({"space": on_m1["space"]})
            space = m2.registry.get("demo").waiting_area.find(on_m1["space"])
            assert space is not None and space.waiting_since == since
            assert space.patient_name == name  # from the patient's token: Redis never had it
        finally:
            await close_all([patient])


async def test_draining_a_node_moves_its_calls_to_another_with_their_places_kept(
        redis_url, clip):
    cfgs = [node_config(redis_url, name, "drain") for name in ("d1", "d2")]
    async with running_server(cfgs[1]) as d2:
        d1_cm = running_server(cfgs[0])
        d1 = await d1_cm.__aenter__()
        clients: list[Client] = []
        try:
            await wait_for(lambda: len(d2.cluster.live) == 2 and len(d1.cluster.live) == 2, 5)
            async with aiohttp.ClientSession() as http:
                _, entry = await _json(http, "POST", f"{d1.url}/v1/clinics/demo/waiting-area",
                                       body={"name": "Grace"})
            assert d1.registry.get("demo").waiting_area.find(entry["space"]) is not None
            since = d1.registry.get("demo").waiting_area.find(entry["space"]).waiting_since
            patient = Client(d2.url, entry["token"], clip=clip)
            doctor = Client(d2.url, staff(name="Dr Who"), clip=clip)
            clients += [patient, doctor]
            for client in (patient, doctor):
                await client.join({"space": entry["space"]})
                assert client.node_url == d1.url  # redirected to the host
            await wait_for(receives_everyone([patient, doctor]), timeout=20)

            seen = [len(client.messages) for client in (patient, doctor)]
            await asyncio.wait_for(d1.drain(), timeout=10)  # SIGTERM's path
            urls = set()
            for client, since_index in zip((patient, doctor), seen, strict=True):
                moved = await client.wait_message(lambda m: m["type"] == "redirect", timeout=5,
                                                  since=since_index)
                urls.add(moved["url"])
            assert urls == {d2.url.replace("http://", "ws://") + "/v1/ws"}
            # their clients join again where they were sent, by themselves (as the web client)
            await wait_for(lambda: patient.moves == doctor.moves == 1, timeout=10)
            assert patient.node_url == doctor.node_url == d2.url
            assert patient.error is None and doctor.error is None
            await wait_for(receives_everyone([patient, doctor]), timeout=20)
            space = d2.registry.get("demo").waiting_area.find(entry["space"])
            assert space is not None and space.waiting_since == since
            assert space.patient_name == "Grace" and space.status == "in_consultation"
        finally:
            await close_all(clients)
            await d1_cm.__aexit__(None, None, None)


async def test_without_redis_calls_here_go_on_and_what_needs_it_answers_unavailable(
        tmp_path: Path, clip):
    with redis_server(tmp_path) as own_redis:
        cfg = node_config(own_redis, "solo")
        async with running_server(cfg) as node:
            clients = [Client(node.url, staff(sub=f"s{i}"), clip=clip) for i in range(2)]
            try:
                for client in clients:
                    await client.join({"room": "team"})
                await wait_for(receives_everyone(clients), timeout=20)
                r = aioredis.from_url(own_redis)
                await r.shutdown(nosave=True)  # Redis goes away under the node
                with contextlib.suppress(Exception):
                    await r.aclose()
                await wait_for(lambda: node.cluster.redis_errors > 0, timeout=5)
                before = [c.received_from(o.participant or "", "audio").packets
                          for c, o in ((clients[0], clients[1]), (clients[1], clients[0]))]
                await wait_for(lambda: all(
                    c.received_from(o.participant or "", "audio").packets > b + 50
                    for (c, o), b in zip(((clients[0], clients[1]), (clients[1], clients[0])),
                                         before, strict=True)), timeout=10)
                async with aiohttp.ClientSession() as http:
                    status, body = await _json(http, "GET",
                                               f"{node.url}/v1/clinics/demo/waiting-area", staff())
                    assert status == 503 and body["error"]["code"] == "unavailable"
                    status, body = await _json(http, "POST",
                                               f"{node.url}/v1/clinics/demo/waiting-area",
                                               body={"name": "Pat"})
                    assert status == 503 and body["error"]["code"] == "unavailable"
                    assert node.registry.get("demo").waiting_area.spaces == []
                # draining reports at once, in a task: its failure is logged, not left in it
                errors = node.cluster.redis_errors
                node.cluster.set_draining()
                await wait_for(lambda: node.cluster.redis_errors > errors, timeout=5)
            finally:
                await close_all(clients)
        metrics_text = node.metrics.render().decode()
        assert "sfu_cluster_redis_errors_total" in metrics_text


async def test_a_node_restarted_under_the_same_id_puts_its_old_calls_back_in_the_list(
        redis_url, clip):
    from sfu.cluster.store import Keys, SpaceRecord

    keys = Keys("restart")
    r = aioredis.from_url(redis_url, decode_responses=True)
    space = "sp_leftbehind0001"
    try:  # what a node "r1" that crashed a moment ago left in Redis
        record = SpaceRecord(status="in_consultation", waiting_since=1_700_000_000.0,
                             patient="pt_x", host="r1",
                             participants=[{"id": "p_1", "role": "patient"}])
        for left in (space, "sp_leftbehind0002"):
            await r.hset(keys.spaces("demo"), left, record.dumps())
            await r.set(keys.call("demo", "space", left), "r1")
            await r.sadd(keys.calls("r1"), keys.call("demo", "space", left))
    finally:
        await r.aclose()
    cfg = node_config(redis_url, "r1", "restart")
    async with running_server(cfg) as node:
        events: list[tuple[str, dict[str, Any]]] = []
        node.event_listeners.append(lambda name, payload: events.append((name, payload)))
        body = await node.cluster.waiting_list("demo")
        assert sorted(body["spaces"], key=lambda s: s["space"]) == [
            {"space": left, "status": "waiting", "waiting_since": "2023-11-14T22:13:20Z",
             "patient": {"name": ""}, "participants": [], "reconnecting": True}
            for left in (space, "sp_leftbehind0002")]
        async with aiohttp.ClientSession() as http:  # staff end one nobody hosts
            status, _ = await _json(http, "POST", f"{node.url}/v1/clinics/demo/waiting-area/"
                                    "sp_leftbehind0002/end", staff())
        assert status == 204
        assert ("consultation.ended", {"clinic": "demo", "space": "sp_leftbehind0002",
                                       "reason": "ended_by_staff"}) in events
        assert [s["space"] for s in (await node.cluster.waiting_list("demo"))["spaces"]] == [space]
        patient = Client(node.url, mint_token(SECRET, sub="pt_x", role="patient", clinic="demo",
                                              space=space, name="Back Again", ttl=600), clip=clip)
        try:
            await patient.join({"space": space})
            adopted = node.registry.get("demo").waiting_area.find(space)
            assert adopted is not None and adopted.waiting_since == 1_700_000_000.0
            assert adopted.patient_name == "Back Again"
        finally:
            await close_all([patient])


async def test_rooms_made_at_once_on_two_nodes_are_all_kept(nodes):
    """A whole clinic record written by two nodes at once kept only one node's rooms (3 of 8
    survived a load run's setup through the shared port); each room is its own field now."""
    n1, n2 = nodes
    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(
            _json(http, "PUT", f"{(n1, n2)[i % 2].url}/v1/clinics/demo/rooms/r{i}", admin(),
                  {"name": f"Room {i}"}) for i in range(8)))
        assert [status for status, _ in results] == [201] * 8
        wanted = {"team"} | {f"r{i}" for i in range(8)}
        try:
            await wait_for(lambda: all({r.id for r in n.registry.get("demo").rooms} == wanted
                                       for n in nodes), timeout=5)
        except AssertionError:
            raise AssertionError([sorted(r.id for r in n.registry.get("demo").rooms)
                                  for n in nodes]) from None
        await asyncio.gather(*(
            _json(http, "DELETE", f"{(n2, n1)[i % 2].url}/v1/clinics/demo/rooms/r{i}", admin())
            for i in range(8)))
        try:
            await wait_for(lambda: all({r.id for r in n.registry.get("demo").rooms} == {"team"}
                                       for n in nodes), timeout=5)
        except AssertionError:
            raise AssertionError([sorted(r.id for r in n.registry.get("demo").rooms)
                                  for n in nodes]) from None


async def test_a_node_whose_event_loop_stalls_past_the_ttl_is_not_taken_for_lost(nodes):
    """A join burst saturated a worker's loop: it reported every 3-5 s and another node took its
    live calls for lost. The report is kept alive by a thread of its own."""
    n1, n2 = nodes
    async with aiohttp.ClientSession() as http:
        status, entry = await _json(http, "POST", f"{n1.url}/v1/clinics/demo/waiting-area",
                                    body={"name": "Pat"})
    assert status == 201
    host = next(n for n in nodes if n.registry.get("demo").waiting_area.find(entry["space"]))
    time.sleep(3 * n1.config.cluster.ttl)  # noqa: ASYNC251 - both nodes' loops stall (one loop)
    await asyncio.sleep(3 * n1.config.cluster.heartbeat)  # their heartbeats look at each other
    assert all(len(n.cluster.live) == 2 for n in nodes)
    record, placed_on = await n1.cluster.space_host("demo", entry["space"])
    assert placed_on == host.cluster.id and record is not None and record.host == host.cluster.id
