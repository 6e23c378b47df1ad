"""The HTTP API of API.md, against a real aiohttp server on loopback."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sfu.auth import AuthSettings, mint_token, verify_token
from sfu.rooms import ClinicRegistry, DomainEvent, RoomDeleted, SpaceEnded
from sfu.rooms.settings import ClinicSettings, RoomSettings, WaitingAreaSettings
from sfu.service.api import MAX_BODY, setup_api_routes
from sfu.service.config import Config
from sfu.service.settings import ServerSettings

SECRET = "test-secret-0123456789abcdef-0123456789"
T0 = 1_700_000_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    client: TestClient[web.Request, web.Application]
    registry: ClinicRegistry
    clock: Clock
    events: list[DomainEvent] = field(default_factory=list)


def make_config(public_url: str = "") -> Config:
    return Config(
        server=ServerSettings(public_url=public_url),
        auth=AuthSettings(secret=SECRET, patient_token_ttl=4 * 3600, guest_token_ttl=24 * 3600),
        waiting_area=WaitingAreaSettings(entry_rate_limit=5, entry_rate_window=60.0),
        clinics=[
            ClinicSettings("c1", "Clinic one", rooms=[RoomSettings("team", "Team room")]),
            ClinicSettings("c2", "Clinic two"),
            ClinicSettings("shut", "Closed clinic", waiting_area_closed_message="Back on Monday."),
        ],
    )


async def start(config: Config) -> AsyncIterator[Env]:
    events: list[DomainEvent] = []
    registry = ClinicRegistry(
        config.clinics, limits=config.limits, waiting_area=config.waiting_area, on_event=events.append
    )
    clock = Clock()
    app = web.Application()
    setup_api_routes(app, registry, config, clock=clock)
    async with TestClient(TestServer(app)) as client:
        yield Env(client, registry, clock, events)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async for e in start(make_config()):
        yield e


def token(role: str, clinic: str = "c1", **kw: Any) -> dict[str, str]:
    t = mint_token(SECRET, sub=f"{role}-1", role=role, clinic=clinic, now=T0, **kw)
    return {"Authorization": f"Bearer {t}"}


STAFF = token("staff")
ADMIN = token("admin")
ROOT = token("admin", clinic="*")


async def error(resp: Any, status: int, code: str) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


async def enter(env: Env, clinic: str = "c1", name: str = "Ada Lovelace") -> dict[str, Any]:
    resp = await env.client.post(f"/v1/clinics/{clinic}/waiting-area", json={"name": name})
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


# -- clinics ----------------------------------------------------------------------------------


async def test_put_clinic_creates_201_then_renames_200(env: Env) -> None:
    resp = await env.client.put("/v1/clinics/new", json={"name": "New"}, headers=ROOT)
    assert resp.status == 201
    assert await resp.json() == {
        "id": "new", "name": "New", "rooms": [],
        "waiting_area": {"closed": False, "message": "", "spaces": 0},
    }
    resp = await env.client.put("/v1/clinics/new", json={"name": "Renamed"}, headers=ROOT)
    assert resp.status == 200 and (await resp.json())["name"] == "Renamed"


async def test_put_clinic_rules(env: Env) -> None:
    c = env.client
    await error(await c.put("/v1/clinics/c1", json={"name": "X"}), 401, "unauthorized")
    await error(await c.put("/v1/clinics/c1", json={"name": "X"}, headers=STAFF), 403, "forbidden")
    await error(await c.put("/v1/clinics/c2", json={"name": "X"}, headers=ADMIN), 403, "forbidden")
    await error(await c.put("/v1/clinics/c1", json={"name": ""}, headers=ADMIN), 400, "bad_request")
    await error(await c.put("/v1/clinics/c1", json={}, headers=ADMIN), 400, "bad_request")
    assert env.registry.get("c1").name == "Clinic one"
    resp = await c.put("/v1/clinics/c1", json={"name": "Own clinic"}, headers=ADMIN)
    assert resp.status == 200


async def test_get_clinic(env: Env) -> None:
    resp = await env.client.get("/v1/clinics/c1", headers=STAFF)
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == "c1" and [r["id"] for r in body["rooms"]] == ["team"]
    assert (await env.client.get("/v1/clinics/c2", headers=ROOT)).status == 200


async def test_get_clinic_rules(env: Env) -> None:
    c = env.client
    await error(await c.get("/v1/clinics/c1"), 401, "unauthorized")
    await error(await c.get("/v1/clinics/c2", headers=STAFF), 403, "forbidden")
    await error(await c.get("/v1/clinics/c1", headers=token("guest", room="team")), 403, "forbidden")
    await error(await c.get("/v1/clinics/nope", headers=ROOT), 404, "not_found")


# -- meeting rooms ----------------------------------------------------------------------------


async def test_put_room(env: Env) -> None:
    c = env.client
    resp = await c.put("/v1/clinics/c1/rooms/consult", json={"name": "Consult"}, headers=ADMIN)
    assert resp.status == 201
    assert await resp.json() == {"id": "consult", "clinic": "c1", "name": "Consult", "participants": []}
    resp = await c.put("/v1/clinics/c1/rooms/consult", json={"name": "Renamed"}, headers=ADMIN)
    assert resp.status == 200 and (await resp.json())["name"] == "Renamed"


async def test_put_room_rules(env: Env) -> None:
    c = env.client
    url = "/v1/clinics/c1/rooms/x"
    await error(await c.put(url, json={"name": "X"}), 401, "unauthorized")
    await error(await c.put(url, json={"name": "X"}, headers=STAFF), 403, "forbidden")
    await error(await c.put("/v1/clinics/c2/rooms/x", json={"name": "X"}, headers=ADMIN), 403, "forbidden")
    await error(await c.put("/v1/clinics/nope/rooms/x", json={"name": "X"}, headers=ROOT), 404, "not_found")
    await error(await c.put("/v1/clinics/c1/rooms/a%20b", json={"name": "X"}, headers=ADMIN), 400, "bad_request")
    await error(await c.put(url, json={"name": "\x07"}, headers=ADMIN), 400, "bad_request")
    assert env.registry.get("c1").find_room("x") is None


async def test_delete_room(env: Env) -> None:
    env.registry.get("c1").room("team").participant_joined("s1", "Dr Lee", "staff", T0)
    resp = await env.client.delete("/v1/clinics/c1/rooms/team", headers=ADMIN)
    assert resp.status == 204
    assert env.registry.get("c1").find_room("team") is None
    assert RoomDeleted("c1", "team", ("s1",)) in env.events
    await error(await env.client.delete("/v1/clinics/c1/rooms/team", headers=ADMIN), 404, "not_found")


async def test_delete_room_rules(env: Env) -> None:
    c = env.client
    await error(await c.delete("/v1/clinics/c1/rooms/team"), 401, "unauthorized")
    await error(await c.delete("/v1/clinics/c1/rooms/team", headers=STAFF), 403, "forbidden")
    await error(await c.delete("/v1/clinics/c1/rooms/team", headers=token("admin", "c2")), 403, "forbidden")
    assert env.registry.get("c1").find_room("team") is not None


# -- waiting area: entry ----------------------------------------------------------------------


async def test_enter_returns_a_space_and_a_patient_token(env: Env) -> None:
    body = await enter(env)
    assert set(body) == {"space", "token", "expires_at"}
    assert body["space"].startswith("sp_")
    claims = verify_token(body["token"], SECRET, now=T0)
    assert (claims.role, claims.clinic, claims.space) == ("patient", "c1", body["space"])
    assert claims.exp == T0 + 4 * 3600
    assert body["expires_at"] == "2023-11-15T02:13:20Z"
    assert env.registry.find_space("c1", body["space"]) is not None


async def test_enter_needs_no_token_and_ignores_one(env: Env) -> None:
    resp = await env.client.post("/v1/clinics/c1/waiting-area", json={"name": "A"}, headers=STAFF)
    assert resp.status == 201


async def test_enter_errors(env: Env) -> None:
    c = env.client
    await error(await c.post("/v1/clinics/nope/waiting-area", json={"name": "A"}), 404, "not_found")
    await error(await c.post("/v1/clinics/c1/waiting-area", json={"name": " "}), 400, "bad_request")
    await error(await c.post("/v1/clinics/c1/waiting-area", json={"name": "x" * 81}), 400, "bad_request")
    await error(await c.post("/v1/clinics/c1/waiting-area", json={"name": "A\x00"}), 400, "bad_request")
    await error(await c.post("/v1/clinics/c1/waiting-area", json={}), 400, "bad_request")
    await error(await c.post("/v1/clinics/c1/waiting-area"), 400, "bad_request")
    assert len(env.registry.get("c1").waiting_area) == 0


async def test_malformed_json_is_400_and_changes_nothing(env: Env) -> None:
    c = env.client
    for data in [b"{", b"not json", b"\xff\xfe", b"[1,2]", b'"name"', b"null"]:
        resp = await c.post("/v1/clinics/c1/waiting-area", data=data,
                            headers={"Content-Type": "application/json"})
        await error(resp, 400, "bad_request")
    resp = await c.put("/v1/clinics/c1/rooms/x", data=b"{oops", headers=ADMIN)
    await error(resp, 400, "bad_request")
    assert len(env.registry.get("c1").waiting_area) == 0
    assert env.registry.get("c1").find_room("x") is None


async def test_bodies_over_64_kib_are_413(env: Env) -> None:
    big = json.dumps({"name": "A", "pad": "x" * MAX_BODY}).encode()
    await error(await env.client.post("/v1/clinics/c1/waiting-area", data=big), 413, "too_large")
    await error(await env.client.put("/v1/clinics/c1", data=big, headers=ADMIN), 413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    await error(await env.client.post("/v1/clinics/c1/waiting-area", data=chunks()), 413, "too_large")
    assert len(env.registry.get("c1").waiting_area) == 0
    ok = json.dumps({"name": "A", "pad": "x" * (MAX_BODY - 100)}).encode()
    assert (await env.client.post("/v1/clinics/c1/waiting-area", data=ok,
                                  headers={"Content-Type": "application/json"})).status == 201


async def test_entry_is_rate_limited_per_address(env: Env) -> None:
    for _ in range(5):
        await enter(env)
    resp = await env.client.post("/v1/clinics/c1/waiting-area", json={"name": "A"})
    await error(resp, 429, "rate_limited")
    assert len(env.registry.get("c1").waiting_area) == 5
    env.clock.now += 60
    await enter(env)


async def test_closed_waiting_area_is_409_with_its_message(env: Env) -> None:
    resp = await env.client.post("/v1/clinics/shut/waiting-area", json={"name": "A"})
    assert await error(resp, 409, "conflict") == "Back on Monday."


# -- waiting area: admin open/close (extension) -----------------------------------------------


async def test_close_and_open_the_waiting_area(env: Env) -> None:
    c = env.client
    url = "/v1/clinics/c1/waiting-area"
    resp = await c.put(url, json={"closed": True, "message": "Closed for lunch"}, headers=ADMIN)
    assert resp.status == 200 and await resp.json() == {"closed": True, "message": "Closed for lunch"}
    assert await error(await c.post(url, json={"name": "A"}), 409, "conflict") == "Closed for lunch"
    listing = await (await c.get(url, headers=STAFF)).json()
    assert listing["closed"] is True and listing["message"] == "Closed for lunch"
    resp = await c.put(url, json={"closed": False}, headers=ADMIN)
    assert await resp.json() == {"closed": False, "message": ""}
    await enter(env)


async def test_close_rules(env: Env) -> None:
    c = env.client
    url = "/v1/clinics/c1/waiting-area"
    await error(await c.put(url, json={"closed": True}), 401, "unauthorized")
    await error(await c.put(url, json={"closed": True}, headers=STAFF), 403, "forbidden")
    await error(await c.put("/v1/clinics/c2/waiting-area", json={"closed": True}, headers=ADMIN), 403, "forbidden")
    await error(await c.put(url, json={"closed": "yes"}, headers=ADMIN), 400, "bad_request")
    await error(await c.put(url, json={"closed": True, "message": 5}, headers=ADMIN), 400, "bad_request")
    await error(await c.put("/v1/clinics/nope/waiting-area", json={"closed": True}, headers=ROOT), 404, "not_found")
    assert not env.registry.get("c1").waiting_area.closed


# -- waiting area: listing ----------------------------------------------------------------------


async def test_list_spaces(env: Env) -> None:
    first = await enter(env, name="Ada")
    env.clock.now += 30
    second = await enter(env, name="Bob")
    space = env.registry.get("c1").waiting_area.get(first["space"])
    space.participant_joined("p1", "Ada", "patient", T0)
    space.participant_joined("s1", "Dr Lee", "staff", T0 + 40)
    resp = await env.client.get("/v1/clinics/c1/waiting-area", headers=STAFF)
    assert resp.status == 200
    assert await resp.json() == {
        "spaces": [
            {
                "space": first["space"],
                "status": "in_consultation",
                "waiting_since": "2023-11-14T22:13:20Z",
                "patient": {"name": "Ada"},
                "participants": [
                    {"id": "p1", "name": "Ada", "role": "patient"},
                    {"id": "s1", "name": "Dr Lee", "role": "staff"},
                ],
            },
            {
                "space": second["space"],
                "status": "waiting",
                "waiting_since": "2023-11-14T22:13:50Z",
                "patient": {"name": "Bob"},
                "participants": [],
            },
        ],
        "closed": False,
        "message": "",
    }


async def test_list_rules(env: Env) -> None:
    entry = await enter(env)
    c = env.client
    url = "/v1/clinics/c1/waiting-area"
    patient = {"Authorization": f"Bearer {entry['token']}"}
    await error(await c.get(url), 401, "unauthorized")
    await error(await c.get(url, headers=patient), 403, "forbidden")  # patients never list others
    await error(await c.get(url, headers=token("guest", space=entry["space"])), 403, "forbidden")
    await error(await c.get("/v1/clinics/c2/waiting-area", headers=STAFF), 403, "forbidden")
    assert (await c.get(url, headers=ROOT)).status == 200
    await error(await c.get("/v1/clinics/nope/waiting-area", headers=ROOT), 404, "not_found")


async def test_bad_tokens_are_401(env: Env) -> None:
    url = "/v1/clinics/c1/waiting-area"
    expired = mint_token(SECRET, sub="s", role="staff", clinic="c1", ttl=60, now=T0 - 120)
    forged = mint_token("another-secret-0123456789-0123456789", sub="s", role="staff", clinic="c1", now=T0)
    for value in [f"Bearer {expired}", f"Bearer {forged}", "Bearer junk", "Basic abc", ""]:
        resp = await env.client.get(url, headers={"Authorization": value})
        await error(resp, 401, "unauthorized")
        assert resp.headers["WWW-Authenticate"] == "Bearer"


# -- end --------------------------------------------------------------------------------------


async def test_end_space(env: Env) -> None:
    entry = await enter(env)
    space = env.registry.get("c1").waiting_area.get(entry["space"])
    space.participant_joined("p1", "Ada", "patient", T0)
    url = f"/v1/clinics/c1/waiting-area/{entry['space']}/end"
    resp = await env.client.post(url, headers=STAFF)
    assert resp.status == 204
    assert env.registry.find_space("c1", entry["space"]) is None
    assert SpaceEnded("c1", entry["space"], "ended_by_staff", ("p1",)) in env.events
    await error(await env.client.post(url, headers=STAFF), 404, "not_found")


async def test_end_rules(env: Env) -> None:
    entry = await enter(env)
    c = env.client
    url = f"/v1/clinics/c1/waiting-area/{entry['space']}/end"
    await error(await c.post(url), 401, "unauthorized")
    await error(await c.post(url, headers={"Authorization": f"Bearer {entry['token']}"}), 403, "forbidden")
    await error(await c.post(url, headers=token("guest", space=entry["space"])), 403, "forbidden")
    await error(await c.post(url, headers=token("staff", "c2")), 403, "forbidden")
    await error(await c.post(f"/v1/clinics/c2/waiting-area/{entry['space']}/end", headers=ROOT), 404, "not_found")
    assert env.registry.find_space("c1", entry["space"]) is not None


# -- invites ----------------------------------------------------------------------------------


async def test_invite_to_space(env: Env) -> None:
    entry = await enter(env)
    url = f"/v1/clinics/c1/waiting-area/{entry['space']}/invites"
    resp = await env.client.post(url, headers=STAFF, json={"name": "Interpreter"})
    assert resp.status == 201
    body = await resp.json()
    claims = verify_token(body["token"], SECRET, now=T0)
    assert (claims.role, claims.clinic, claims.space, claims.room) == ("guest", "c1", entry["space"], None)
    assert claims.name == "Interpreter" and claims.exp == T0 + 24 * 3600
    host = f"http://{env.client.host}:{env.client.port}"
    assert body["url"] == f"{host}/c/c1?space={entry['space']}#token={body['token']}"


async def test_invite_to_room_uses_public_url(env: Env) -> None:
    async for e in start(make_config(public_url="https://sfu.example.org/")):
        resp = await e.client.post("/v1/clinics/c1/rooms/team/invites", headers=STAFF)
        assert resp.status == 201
        body = await resp.json()
        claims = verify_token(body["token"], SECRET, now=T0)
        assert (claims.role, claims.room, claims.space) == ("guest", "team", None)
        assert body["url"] == f"https://sfu.example.org/c/c1/rooms/team#token={body['token']}"


async def test_invite_ttl(env: Env) -> None:
    resp = await env.client.post("/v1/clinics/c1/rooms/team/invites", headers=STAFF, json={"ttl": 600})
    claims = verify_token((await resp.json())["token"], SECRET, now=T0)
    assert claims.exp == T0 + 600
    for ttl in [0, 59, 24 * 3600 + 1, "600", True]:
        resp = await env.client.post("/v1/clinics/c1/rooms/team/invites", headers=STAFF, json={"ttl": ttl})
        await error(resp, 400, "bad_request")


async def test_invite_rules(env: Env) -> None:
    entry = await enter(env)
    c = env.client
    space_url = f"/v1/clinics/c1/waiting-area/{entry['space']}/invites"
    room_url = "/v1/clinics/c1/rooms/team/invites"
    for url in (space_url, room_url):
        await error(await c.post(url), 401, "unauthorized")
        await error(await c.post(url, headers={"Authorization": f"Bearer {entry['token']}"}), 403, "forbidden")
        await error(await c.post(url, headers=token("guest", room="team")), 403, "forbidden")
        await error(await c.post(url, headers=token("staff", "c2")), 403, "forbidden")
        await error(await c.post(url, headers=STAFF, json={"name": ""}), 400, "bad_request")
    await error(await c.post("/v1/clinics/c1/waiting-area/sp_nope/invites", headers=STAFF), 404, "not_found")
    await error(await c.post("/v1/clinics/c1/rooms/nope/invites", headers=STAFF), 404, "not_found")


# -- the document, unknown calls, privacy -------------------------------------------------------


async def test_openapi_document_covers_every_call(env: Env) -> None:
    resp = await env.client.get("/v1/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    for route in env.client.app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical  # type: ignore[union-attr]
        assert route.method.lower() in doc["paths"][path], (route.method, path)
    for path in ("/healthz", "/metrics", "/v1/ws"):
        assert "get" in doc["paths"][path]
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)


async def test_unknown_v1_calls_answer_json(env: Env) -> None:
    await error(await env.client.get("/v1/nothing"), 404, "not_found")
    resp = await env.client.patch("/v1/clinics/c1", headers=ADMIN)
    await error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]


async def test_no_patient_name_in_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    entry = await enter(env, name="Zebedee Quux")
    await env.client.get("/v1/clinics/c1/waiting-area", headers=STAFF)
    await env.client.post(f"/v1/clinics/c1/waiting-area/{entry['space']}/invites", headers=STAFF,
                          json={"name": "Yolanda Interp"})
    await env.client.post(f"/v1/clinics/c1/waiting-area/{entry['space']}/end", headers=STAFF)
    assert entry["space"] in caplog.text  # ids are logged...
    assert "Zebedee" not in caplog.text and "Yolanda" not in caplog.text  # ...names never


async def conforms(env: Env, resp: Any, status: int, schema: str) -> dict[str, Any]:
    """``resp`` has ``status`` and a body valid against ``components.schemas[schema]`` of the
    served document (response schemas forbid fields they do not list)."""
    jsonschema = pytest.importorskip("jsonschema")
    assert resp.status == status, await resp.text()
    body: dict[str, Any] = await resp.json()
    doc = await (await env.client.get("/v1/openapi.json")).json()
    root = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
    jsonschema.Draft202012Validator(root).validate(body)
    return body


async def test_responses_match_the_schemas_the_document_serves(env: Env) -> None:
    entry = await conforms(env, await env.client.post(
        "/v1/clinics/c1/waiting-area", json={"name": "Ada Patient"}), 201, "Entry")
    space = env.registry.get("c1").waiting_area.get(entry["space"])
    space.participant_joined("pt-1", "Ada Patient", "patient", T0)
    space.participant_joined("staff-1", "Dr Lee", "staff", T0)
    env.registry.get("c1").room("team").participant_joined("guest-1", "Bo Guest", "guest", T0)
    area = await conforms(env, await env.client.get("/v1/clinics/c1/waiting-area", headers=STAFF),
                          200, "WaitingArea")
    assert [p["role"] for p in area["spaces"][0]["participants"]] == ["patient", "staff"]
    clinic = await conforms(env, await env.client.get("/v1/clinics/c1", headers=STAFF), 200, "Clinic")
    assert clinic["rooms"][0]["participants"][0]["name"] == "Bo Guest"
    await conforms(env, await env.client.put("/v1/clinics/c1/rooms/board", headers=ADMIN,
                                             json={"name": "Board room"}), 201, "MeetingRoom")
    await conforms(env, await env.client.post(f"/v1/clinics/c1/waiting-area/{entry['space']}/invites",
                                              headers=STAFF, json={"ttl": 600}), 201, "Invite")
    await conforms(env, await env.client.put("/v1/clinics/c1/waiting-area", headers=ADMIN,
                                             json={"closed": True, "message": "Lunch."}),
                   200, "WaitingAreaState")
    await conforms(env, await env.client.get("/v1/clinics/nope", headers=ROOT), 404, "Error")


async def test_a_field_the_types_do_not_list_fails_the_served_schema(env: Env) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = await (await env.client.get("/v1/openapi.json")).json()
    root = {"$ref": "#/components/schemas/Entry", "components": doc["components"]}
    body = {"space": "sp_x", "token": "t", "expires_at": "2024-05-01T09:30:00Z"}
    jsonschema.Draft202012Validator(root).validate(body)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(root).validate({**body, "patient_name": "Ada"})


async def test_patient_entry_takes_only_a_body_declared_json(env: Env) -> None:
    """A cross-origin text/plain or form POST needs no CORS preflight: any web page could have
    made its visitors' browsers create spaces. Entry answers 415 and creates nothing."""
    c = env.client
    body = json.dumps({"name": "Ann"}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        resp = await c.post("/v1/clinics/c1/waiting-area", data=body,
                            headers={"Content-Type": content_type})
        await error(resp, 415, "unsupported_media_type")
    assert len(env.registry.get("c1").waiting_area) == 0
    for content_type in ("application/json", "application/json; charset=utf-8"):
        resp = await c.post("/v1/clinics/c1/waiting-area", data=body,
                            headers={"Content-Type": content_type})
        assert resp.status == 201, await resp.text()
