"""Fuzzing the HTTP API's request bodies (sfu/service/api.py): every POST, PUT and DELETE call
with any bytes, any JSON and mutated valid bodies, any content type and token. The answer is a
2xx or a 4xx with the contract's JSON error, never a 500; a refused request changes nothing;
the server logs no traceback."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import quote

from hypothesis import example, given
from hypothesis import strategies as st

from sfu.auth import mint_token
from tests.conftest import SECRET
from tests.fuzz.budget import budget
from tests.fuzz.live import LiveServer

ROUTES = [
    ("PUT", "/v1/clinics/{clinic}"),
    ("PUT", "/v1/clinics/{clinic}/rooms/{room}"),
    ("DELETE", "/v1/clinics/{clinic}/rooms/{room}"),
    ("POST", "/v1/clinics/{clinic}/rooms/{room}/invites"),
    ("POST", "/v1/clinics/{clinic}/waiting-area"),
    ("PUT", "/v1/clinics/{clinic}/waiting-area"),
    ("POST", "/v1/clinics/{clinic}/waiting-area/{space}/end"),
    ("POST", "/v1/clinics/{clinic}/waiting-area/{space}/invites"),
    ("DELETE", "/v1/clinics/{clinic}/invites/{invite}"),
]
TOKENS = [
    None, "", "garbage", "Bearer", mint_token(SECRET, sub="ad", role="admin", clinic="demo"),
    mint_token(SECRET, sub="dr", role="staff", clinic="demo"),
    mint_token(SECRET, sub="pt", role="patient", clinic="demo", space="sp_x"),
    mint_token(SECRET, sub="ad", role="admin", clinic="north"),
]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=15)
fields = st.sampled_from(["name", "closed", "message", "ttl", "space", "room", "token"])
valid_ish = st.dictionaries(fields, st.one_of(
    json_values, st.sampled_from(["Ana", "", " ", "x" * 300, "\u202e", "\x00", True, 60, 3600,
                                  14400, 14401, 59, -1, 1e308])), max_size=4)


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    valid_ish.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 40_000).map(deep),
    st.sampled_from([b"", b"{}", b"null", b"NaN", b'{"name": NaN}', b"\xef\xbb\xbf{}",
                     b'"\\ud800"', b'{"name": "\\ud800"}', b"1" * 5000, deep(30_000)]),
)
content_types = st.sampled_from([None, "application/json", "text/plain", "application/x+json",
                                 "multipart/form-data; boundary=x", "application/json; charset=latin-1",
                                 "\u00e9"])
ids = st.one_of(st.sampled_from(["demo", "north", "team", "case-review", "sp_x", "gu_x", "nope"]),
                st.text(min_size=1, max_size=12))


LIVE_CONFIG = {"waiting_area": {"entry_rate_limit": 1e6}}  # the live fixture's server config


async def state(live: LiveServer) -> Any:
    registry = live.server.registry
    return json.dumps([(c.to_json(), c.waiting_area.to_json(), sorted(c._revoked) if hasattr(
        c, "_revoked") else None) for c in (registry.find(i) for i in ("demo", "north")) if c],
        sort_keys=True, default=str)


def request(live: LiveServer, method: str, path: str, body: bytes, content_type: str | None,
            token: str | None) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", live.server.port, timeout=10)
    try:
        headers = {"Content-Length": str(len(body))}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        connection.close()


@budget(60, fuzz=3000)
@given(st.sampled_from(ROUTES), ids, ids, bodies, content_types,
       st.one_of(st.sampled_from(TOKENS), st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                                  max_size=60)))
@example(ROUTES[4], "demo", "x", deep(30_000), "application/json", None)  # RecursionError: 500
@example(ROUTES[0], "demo", "x", deep(30_000), "application/json", TOKENS[4])
def test_every_call_answers_any_body_with_a_result_or_a_json_4xx(live, no_traceback_logged, route, clinic,
                                                                  other, body, content_type, token):
    method, template = route
    clinic, other = quote(clinic, safe=""), quote(other, safe="")
    path = template.format(clinic=clinic, room=other, space=other, invite=other)
    before = live.run(state(live))
    status, payload, kind = request(live, method, path, body, content_type, token)
    assert status < 500, (status, payload[:200])
    if status >= 400:
        assert kind.startswith("application/json"), (status, kind, payload[:200])
        error = json.loads(payload)["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
        assert live.run(state(live)) == before, (method, path, status)
    assert not no_traceback_logged.records and not live.loop_errors
