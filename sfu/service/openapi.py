"""The OpenAPI 3.1 document served at ``GET /v1/openapi.json`` (docs/API.md is its prose twin).

The schemas of the bodies are generated from their types in ``sfu/service/bodies.py``; the paths,
parameters and error responses are written here."""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from sfu import __version__
from sfu.service import bodies


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{description}"}


_CLINIC = {"name": "clinic", "in": "path", "required": True, "schema": _ref("Id")}
_ROOM = {"name": "room", "in": "path", "required": True, "schema": _ref("Id")}
_SPACE = {"name": "space", "in": "path", "required": True, "schema": {"type": "string"}}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        413: "TooLarge",
        415: "UnsupportedMediaType",
        429: "RateLimited",
        503: "ServerFull",
    }
    return {str(status): _error(names[status]) for status in statuses}


def _schemas() -> dict[str, Any]:
    """``components.schemas``: generated from the body types, so they cannot drift from the code."""
    _, components = msgspec.json.schema_components(
        bodies.BODIES, ref_template="#/components/schemas/{name}"
    )
    named = {
        name: msgspec.json.schema(tp)
        for name, tp in [
            ("Id", bodies.Id),
            ("DisplayName", bodies.DisplayName),
            ("Timestamp", bodies.Timestamp),
        ]
    }
    return {**named, **components}


_RESPONSES: dict[str, Any] = {
    name: _json(_ref("Error"), text)
    for name, text in [
        ("BadRequest", "bad_request: malformed JSON, missing or invalid field"),
        ("Unauthorized", "unauthorized: missing, malformed, badly signed, expired or not yet valid token"),
        ("Forbidden", "forbidden: the token's role or scope does not allow this"),
        ("NotFound", "not_found: no such clinic, room or space"),
        ("Conflict", "conflict: e.g. the waiting area is closed (message says why) or full"),
        ("TooLarge", "too_large: request body over 64 KiB"),
        ("UnsupportedMediaType",
         "unsupported_media_type: the body is not sent as Content-Type: application/json"),
        ("RateLimited", "rate_limited: too many waiting-area entries, or open WebSockets, from "
                        "this client address"),
        ("ServerFull", "server_full: the server holds its most open WebSockets "
                       "(limits.sockets_total), or, for patient entry, its most waiting-area "
                       "spaces without their patient's media (limits.unconnected_spaces_total)"),
    ]
}


def _paths() -> dict[str, Any]:
    no_content = {"description": "Done."}
    return {
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"status": {"const": "ok"}}}, "Up."
                    )
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/v1/ws": {
            "get": {
                "summary": "Signaling WebSocket (see docs/API.md for the messages)",
                "operationId": "websocket",
                "parameters": [
                    {"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"101": {"description": "Switching protocols."},
                              **_errors(401, 429, 503)},
            }
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
            }
        },
        "/v1/clinics/{clinic}": {
            "parameters": [_CLINIC],
            "put": {
                "summary": "Create or rename a clinic (admin)",
                "operationId": "putClinic",
                "security": _BEARER,
                "requestBody": _body(_ref("NameBody")),
                "responses": {
                    "200": _json(_ref("Clinic"), "Renamed."),
                    "201": _json(_ref("Clinic"), "Created."),
                    **_errors(400, 401, 403, 413),
                },
            },
            "get": {
                "summary": "A clinic with its meeting rooms (staff, admin)",
                "operationId": "getClinic",
                "security": _BEARER,
                "responses": {"200": _json(_ref("Clinic"), "The clinic."), **_errors(401, 403, 404)},
            },
        },
        "/v1/clinics/{clinic}/rooms/{room}": {
            "parameters": [_CLINIC, _ROOM],
            "put": {
                "summary": "Create or rename a meeting room (admin)",
                "operationId": "putRoom",
                "security": _BEARER,
                "requestBody": _body(_ref("NameBody")),
                "responses": {
                    "200": _json(_ref("MeetingRoom"), "Renamed."),
                    "201": _json(_ref("MeetingRoom"), "Created."),
                    **_errors(400, 401, 403, 404, 413),
                },
            },
            "delete": {
                "summary": "Delete a meeting room; people inside get `ended` and are disconnected (admin)",
                "operationId": "deleteRoom",
                "security": _BEARER,
                "responses": {"204": no_content, **_errors(401, 403, 404)},
            },
        },
        "/v1/clinics/{clinic}/rooms/{room}/invites": {
            "parameters": [_CLINIC, _ROOM],
            "post": {
                "summary": "A guest link for a meeting room (staff, admin)",
                "operationId": "inviteToRoom",
                "security": _BEARER,
                "requestBody": _body(_ref("InviteBody"), required=False),
                "responses": {
                    "201": _json(_ref("Invite"), "Guest token and link."),
                    **_errors(400, 401, 403, 404, 413),
                },
            },
        },
        "/v1/clinics/{clinic}/waiting-area": {
            "parameters": [_CLINIC],
            "post": {
                "summary": "A patient enters: a new private space and a patient token (anyone)",
                "operationId": "enterWaitingArea",
                "requestBody": _body(_ref("NameBody")),
                "responses": {
                    "201": _json(_ref("Entry"), "The new space."),
                    **_errors(400, 404, 409, 413, 415, 429, 503),
                },
            },
            "get": {
                "summary": "The waiting list (staff, admin of that clinic)",
                "operationId": "getWaitingArea",
                "security": _BEARER,
                "responses": {
                    "200": _json(_ref("WaitingArea"), "The spaces."),
                    **_errors(401, 403, 404),
                },
            },
            "put": {
                "summary": "Close (with a message) or open the waiting area (admin; extension)",
                "operationId": "putWaitingArea",
                "security": _BEARER,
                "requestBody": _body(_ref("WaitingAreaState")),
                "responses": {
                    "200": _json(_ref("WaitingAreaState"), "The new state."),
                    **_errors(400, 401, 403, 404, 413),
                },
            },
        },
        "/v1/clinics/{clinic}/waiting-area/{space}/end": {
            "parameters": [_CLINIC, _SPACE],
            "post": {
                "summary": "End a consultation for everyone; the space is gone (staff, admin)",
                "operationId": "endSpace",
                "security": _BEARER,
                "responses": {"204": no_content, **_errors(401, 403, 404)},
            },
        },
        "/v1/clinics/{clinic}/invites/{invite}": {
            "parameters": [_CLINIC, {"name": "invite", "in": "path", "required": True,
                                     "schema": {"type": "string"},
                                     "description": "The invite's id (the 'invite' of its creation)."}],
            "delete": {
                "summary": "Revoke a guest invite: its token is refused from now on, and guests in "
                           "a call with it are put out (ended: invite_revoked) (staff, admin)",
                "operationId": "revokeInvite",
                "security": _BEARER,
                "responses": {
                    "204": {"description": "Revoked (also when already revoked)."},
                    **_errors(401, 403, 404),
                },
            },
        },
        "/v1/cluster": {
            "get": {
                "summary": "In a cluster: the live nodes with their load (admin of every clinic)",
                "operationId": "getCluster",
                "security": _BEARER,
                "responses": {
                    "200": _json({"type": "object", "required": ["node", "nodes"], "properties": {
                        "node": {"type": "string", "description": "The node that answered."},
                        "nodes": {"type": "array", "items": {"type": "object"}}}},
                        "Nodes: id, url, participants, calls, cpu (percent of a core), "
                        "draining, started."),
                    **_errors(401, 403, 404),
                },
            },
        },
        "/v1/cluster/clinics/{clinic}/spaces": {
            "parameters": [_CLINIC],
            "get": {
                "summary": "In a cluster, between nodes only (X-SFU-Cluster token): the spaces "
                           "this node hosts, with their names",
                "operationId": "getNodeSpaces",
                "responses": {
                    "200": _json({"type": "object", "properties": {
                        "spaces": {"type": "array", "items": {"type": "object"}}}},
                        "The spaces hosted here."),
                    **_errors(403),
                },
            },
        },
        "/v1/clinics/{clinic}/waiting-area/{space}/invites": {
            "parameters": [_CLINIC, _SPACE],
            "post": {
                "summary": "A guest token and link for that consultation (staff, admin)",
                "operationId": "inviteToSpace",
                "security": _BEARER,
                "requestBody": _body(_ref("InviteBody"), required=False),
                "responses": {
                    "201": _json(_ref("Invite"), "Guest token and link."),
                    **_errors(400, 401, 403, 404, 413),
                },
            },
        },
    }


def build_openapi() -> dict[str, Any]:
    """A fresh copy of the document (callers may modify it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Telehealth SFU API",
            "version": __version__,
            "description": "HTTP API of the telehealth SFU. Prose and the WebSocket protocol: docs/API.md.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": copy.deepcopy(_RESPONSES),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 JWT signed with auth.secret (claims in docs/API.md).",
                }
            },
        },
    }
