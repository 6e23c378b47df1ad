"""The clinic over the wire: patients in private spaces, staff joining, ending, inviting."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from sfu.client.client import Client, ClientError
from tests.conftest import make_config
from tests.integration.helpers import close_all, receives_everyone, wait_for


async def enter(server, name: str) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/v1/clinics/demo/waiting-area", json={"name": name}) as r:
            assert r.status == 201, await r.text()
            return await r.json()


async def post(server, path: str, tok: str, body: dict | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}{path}", json=body or {},
                             headers={"Authorization": f"Bearer {tok}"}) as r:
            return r.status, (await r.json() if r.content_length else {})


def statuses(msg: dict) -> dict[str, str]:
    return {s["space"]: s["status"] for s in msg["spaces"]}


async def test_a_whole_consultation(server, token, clip):
    entry = await enter(server, "Ada Patient")
    space = entry["space"]
    staff_token = token(sub="dr-lee", name="Dr Lee")
    watcher = Client(server.url, staff_token, clip=clip)
    patient = Client(server.url, entry["token"], clip=clip)
    staff = Client(server.url, staff_token, clip=clip)
    try:
        await watcher.connect()
        await watcher.send({"type": "watch", "waiting_area": True})
        first = await watcher.wait_message(lambda m: m["type"] == "waiting_area")
        assert statuses(first) == {space: "waiting"}
        assert first["spaces"][0]["patient"] == {"name": "Ada Patient"}
        await patient.join({"space": space})
        await staff.join({"space": space})
        await watcher.wait_message(lambda m: m["type"] == "waiting_area"
                                   and statuses(m).get(space) == "in_consultation")
        await wait_for(receives_everyone([patient, staff]), timeout=15)
        await staff.leave()
        await watcher.wait_message(lambda m: m["type"] == "waiting_area"
                                   and statuses(m).get(space) == "on_hold")
        status, _ = await post(server, f"/v1/clinics/demo/waiting-area/{space}/end", staff_token)
        assert status == 204
        ended = await patient.wait_message(lambda m: m["type"] == "ended")
        assert ended["reason"] == "ended_by_staff"
        await watcher.wait_message(lambda m: m["type"] == "waiting_area" and space not in statuses(m))
        await wait_for(lambda: not server.calls.by_key, timeout=5)
    finally:
        await close_all([watcher, patient, staff])


async def test_patients_never_see_hear_or_learn_of_each_other(server, token, clip):
    a, b = await enter(server, "Patient A"), await enter(server, "Patient B")
    pa, pb = Client(server.url, a["token"], clip=clip), Client(server.url, b["token"], clip=clip)
    try:
        ja = await pa.join({"space": a["space"]})
        jb = await pb.join({"space": b["space"]})
        assert ja["participants"] == [] and jb["participants"] == []
        await asyncio.sleep(1.5)
        for c in (pa, pb):
            assert not [m for m in c.messages if m["type"] in ("participant_joined", "waiting_area")]
            assert not [t for t in c.tracks.values() if t.packets]
        with pytest.raises(ClientError) as refused:
            await Client(server.url, a["token"], clip=clip).join({"space": b["space"]})
        assert refused.value.code == "forbidden"
        with pytest.raises(ClientError) as refused:
            await Client(server.url, a["token"], clip=clip).join({"room": "team"})
        assert refused.value.code == "forbidden"
        watcher = Client(server.url, a["token"], clip=clip)
        await watcher.connect()
        await watcher.send({"type": "watch", "waiting_area": True})
        msg = await watcher.wait_message(lambda m: m["type"] in ("error", "waiting_area"))
        assert msg == {"type": "error", "code": "forbidden", "message": msg["message"]}
        await watcher.close()
    finally:
        await close_all([pa, pb])


async def test_invited_guest_enters_only_that_consultation(server, token, clip):
    entry, other = await enter(server, "Pat"), await enter(server, "Other")
    staff_token = token(sub="dr-lee")
    status, invite = await post(server, f"/v1/clinics/demo/waiting-area/{entry['space']}/invites",
                                staff_token, {"name": "Interpreter"})
    assert status == 201 and invite["token"] and entry["space"] in invite["url"]
    patient = Client(server.url, entry["token"], clip=clip)
    guest = Client(server.url, invite["token"], clip=clip)
    try:
        await patient.join({"space": entry["space"]})
        with pytest.raises(ClientError) as refused:
            await Client(server.url, invite["token"], clip=clip).join({"space": other["space"]})
        assert refused.value.code == "forbidden"
        joined = await guest.join({"space": entry["space"]})
        assert [p["role"] for p in joined["participants"]] == ["patient"]
        await wait_for(receives_everyone([patient, guest]), timeout=15)
    finally:
        await close_all([patient, guest])


async def test_deleting_a_room_tells_and_disconnects_whoever_is_inside(server, token, clip):
    staff = Client(server.url, token(sub="s1"), clip=clip)
    try:
        await staff.join({"room": "team"})
        admin = token(role="admin", sub="root")
        async with aiohttp.ClientSession() as http:
            async with http.delete(f"{server.url}/v1/clinics/demo/rooms/team",
                                   headers={"Authorization": f"Bearer {admin}"}) as r:
                assert r.status == 204
        ended = await staff.wait_message(lambda m: m["type"] == "ended")
        assert ended["reason"] == "room_deleted"
        await wait_for(lambda: not server.calls.by_key, timeout=5)
    finally:
        await close_all([staff])


@pytest.fixture
async def quick_server():
    from sfu.service.server import Server

    srv = Server(make_config(waiting_area={"reconnect_grace": 1.5}))
    await srv.start("127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{srv.port}"
    yield srv
    await srv.close()


async def test_a_dropped_patient_can_return_within_the_grace_and_not_after(quick_server, token, clip):
    server = quick_server
    entry = await enter(server, "Pat")
    staff = Client(server.url, token(sub="dr"), clip=clip)
    patient = Client(server.url, entry["token"], clip=clip)
    again = Client(server.url, entry["token"], clip=clip)
    try:
        await patient.join({"space": entry["space"]})
        await staff.join({"space": entry["space"]})
        await patient.vanish()
        await staff.wait_message(lambda m: m["type"] == "participant_left")
        await again.join({"space": entry["space"]})  # back within the grace: same space
        await wait_for(receives_everyone([again, staff]), timeout=15)
        await again.vanish()
        ended = await staff.wait_message(lambda m: m["type"] == "ended", timeout=10)
        assert ended["reason"] == "patient_left"
        assert server.registry.find_space("demo", entry["space"]) is None
    finally:
        await close_all([staff, patient, again])


async def test_the_server_log_never_holds_a_patient_name(server, token, clip, caplog):
    caplog.set_level(logging.DEBUG)
    name = "Zebediah Quartermaine"
    entry = await enter(server, name)
    patient = Client(server.url, entry["token"], clip=clip)
    staff = Client(server.url, token(sub="dr"), clip=clip)
    try:
        await patient.join({"space": entry["space"]})
        await staff.join({"space": entry["space"]})
        await wait_for(receives_everyone([patient, staff]), timeout=15)
        await post(server, f"/v1/clinics/demo/waiting-area/{entry['space']}/end", token(sub="dr"))
        await patient.wait_message(lambda m: m["type"] == "ended")
    finally:
        await close_all([patient, staff])
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.client"))
    assert len(caplog.records) > 10
    assert "Zebediah" not in text and "Quartermaine" not in text
    metrics = server.metrics.render().decode()
    assert "Zebediah" not in metrics


async def test_a_revoked_invite_puts_its_guest_out_and_is_refused_from_then_on(server, token, clip):
    """Guest invites could not be revoked: a link sent to the wrong person stayed good for 24 h."""
    entry = await enter(server, "Pat")
    staff_token = token(sub="dr-lee")
    status, invite = await post(server, f"/v1/clinics/demo/waiting-area/{entry['space']}/invites",
                                staff_token, {"name": "Interpreter"})
    assert status == 201 and invite["invite"].startswith("gu_")
    patient = Client(server.url, entry["token"], clip=clip)
    guest = Client(server.url, invite["token"], clip=clip)
    try:
        await patient.join({"space": entry["space"]})
        await guest.join({"space": entry["space"]})
        await wait_for(receives_everyone([patient, guest]), timeout=15)
        async with aiohttp.ClientSession() as http:
            async with http.delete(f"{server.url}/v1/clinics/demo/invites/{invite['invite']}",
                                   headers={"Authorization": f"Bearer {staff_token}"}) as r:
                assert r.status == 204
            # a patient may not revoke anything
            async with http.delete(f"{server.url}/v1/clinics/demo/invites/{invite['invite']}",
                                   headers={"Authorization": f"Bearer {entry['token']}"}) as r:
                assert r.status == 403
        ended = await guest.wait_message(lambda m: m["type"] == "ended")
        assert ended["reason"] == "invite_revoked"
        with pytest.raises(ClientError) as refused:
            await Client(server.url, invite["token"], clip=clip).join({"space": entry["space"]})
        assert refused.value.code == "unauthorized"
        # the patient's consultation goes on
        assert not [m for m in patient.messages if m["type"] == "ended"]
    finally:
        await close_all([patient, guest])
