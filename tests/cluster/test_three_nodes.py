"""Three node processes and a real redis-server on loopback (issue 13's "done when").

A patient enters through node A; the clinician's dashboard on node B shows them by name (the
name stays in the memory of the node hosting the space); the clinician joins through node C;
both are redirected to the hosting node and media flows. Then the hosting node is killed with
SIGKILL: the dashboard sees the space back in the waiting list with its original wait time, and
the patient, rejoining with the same token through a live node, is in a call on a live node
within 10 s; the clinician rejoins and media flows again. Redis never holds the name.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from sfu.auth import mint_token
from sfu.client.client import Client, ClientError
from tests.cluster.nodes import Node, redis_server, start_node, stop_node
from tests.conftest import SECRET
from tests.integration.helpers import close_all, receives_everyone, wait_for

pytestmark = pytest.mark.timeout(120)

PATIENT_NAME = "Ada Lovelace-Patient"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, Node]]]:
    with redis_server(tmp_path) as redis_url:
        nodes: dict[str, Node] = {}
        try:
            for name in ("a", "b", "c"):
                nodes[name] = start_node(name, redis_url, tmp_path)
            yield redis_url, nodes
        except BaseException:
            for node in nodes.values():
                print(node.log_tail())
            raise
        finally:
            codes = {n.name: stop_node(n) for n in nodes.values()}
            for name, code in codes.items():
                if nodes[name].proc.returncode != -9:  # the one the test killed
                    assert code == 0, nodes[name].log_tail()


class Dashboard:
    """A staff dashboard's WebSocket watching the waiting area, keeping every list it got."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.lists: list[dict[str, Any]] = []
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, node: Node, token: str) -> Dashboard:
        ws = await http.ws_connect(node.ws)
        await ws.send_json({"type": "auth", "token": token})
        assert (await ws.receive_json(timeout=5))["type"] == "authenticated"
        await ws.send_json({"type": "watch", "waiting_area": True})
        return cls(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = msg.json()
                if data.get("type") == "waiting_area":
                    self.lists.append(data)

    def space(self, space_id: str) -> dict[str, Any] | None:
        if not self.lists:
            return None
        return next((s for s in self.lists[-1]["spaces"] if s["space"] == space_id), None)

    async def wait(self, space_id: str, check: Callable[[dict[str, Any]], bool],
                   timeout: float = 10.0) -> dict[str, Any]:
        await wait_for(lambda: (s := self.space(space_id)) is not None and check(s), timeout)
        found = self.space(space_id)
        assert found is not None
        return found

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_enter_on_a_dashboard_on_b_join_on_c_then_the_host_is_killed(cluster, clip):
    redis_url, nodes = cluster
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    staff = mint_token(SECRET, sub="dr-lee", role="staff", clinic="demo", name="Dr Lee", ttl=600)
    clients: list[Client] = []
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{a.url}/v1/clinics/demo/waiting-area",
                             json={"name": PATIENT_NAME}) as resp:
            assert resp.status == 201, await resp.text()
            entry = await resp.json()
        space = entry["space"]

        dashboard = await Dashboard.open(http, b, staff)
        shown = await dashboard.wait(space, lambda s: s["patient"]["name"] == PATIENT_NAME)
        assert shown["status"] == "waiting"
        waiting_since = shown["waiting_since"]

        patient = Client(a.url, entry["token"], clip=clip)
        doctor = Client(c.url, staff, clip=clip)
        clients += [patient, doctor]
        await patient.join({"space": space})
        await doctor.join({"space": space})
        host = next(n for n in nodes.values() if n.url == patient.node_url)
        assert doctor.node_url == host.url  # one call, one node, whichever node they came by
        await wait_for(receives_everyone([patient, doctor]), timeout=20)
        await dashboard.wait(space, lambda s: s["status"] == "in_consultation"
                             and {p["name"] for p in s["participants"]} == {PATIENT_NAME, "Dr Lee"})

        # Redis holds the space, who is in it and where it lives, but never the name
        r = aioredis.from_url(redis_url, decode_responses=True)
        try:
            dump = [await r.hgetall(k) for k in await r.keys("*") if await r.type(k) == "hash"]
            dump += [await r.get(k) for k in await r.keys("*") if await r.type(k) == "string"]
            assert space in str(dump) and PATIENT_NAME not in str(dump)
        finally:
            await r.aclose()

        # the hosting node dies
        if dashboard_on_host := (host is b):
            await dashboard.close()
        host.proc.kill()
        killed = time.monotonic()
        live = [n for n in (a, b, c) if n is not host]
        if dashboard_on_host:
            dashboard = await Dashboard.open(http, live[0], staff)
        # dashboards see it: the space is back in the list, waiting, in its original place
        back = await dashboard.wait(space, lambda s: s["status"] == "waiting"
                                    and not s["participants"], timeout=8)
        assert back["waiting_since"] == waiting_since

        rejoined = Client((a if a is not host else live[0]).url, entry["token"], clip=clip)
        clients.append(rejoined)
        while True:  # the first tries may still be sent to the dead node
            try:
                await rejoined.join({"space": space}, timeout=5)
                break
            except (ClientError, aiohttp.ClientError, OSError):
                assert time.monotonic() - killed < 10, "not back in a call within 10 s"
                await rejoined.close()
                rejoined = Client((a if a is not host else live[0]).url, entry["token"], clip=clip)
                clients.append(rejoined)
                await asyncio.sleep(0.3)
        in_call_after = time.monotonic() - killed
        print(f"cluster: the patient is in a call on a live node {in_call_after:.1f} s after "
              f"SIGKILL of its host")
        assert in_call_after < 10
        assert rejoined.node_url in {n.url for n in live}
        shown = await dashboard.wait(space, lambda s: s["patient"]["name"] == PATIENT_NAME
                                     and len(s["participants"]) == 1)
        assert shown["waiting_since"] == waiting_since and shown["status"] == "waiting"
        assert not shown.get("reconnecting")

        doctor2 = Client(c.url if c is not host else live[0].url, staff, clip=clip)
        clients.append(doctor2)
        await doctor2.join({"space": space})
        assert doctor2.node_url == rejoined.node_url
        await wait_for(receives_everyone([rejoined, doctor2]), timeout=20)
        await dashboard.wait(space, lambda s: s["status"] == "in_consultation")
        await dashboard.close()
        await close_all(clients)
