"""The OpenAPI 3.1 document served at ``GET /v1/openapi.json`` (docs/API.md is its prose twin)."""

from __future__ import annotations

import copy
from typing import Any

from sfu import __version__


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
        429: "RateLimited",
    }
    return {str(status): _error(names[status]) for status in statuses}


_SCHEMAS: dict[str, Any] = {
    "Id": {
        "type": "string",
        "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        "description": "A clinic or meeting-room id.",
    },
    "DisplayName": {
        "type": "string",
        "minLength": 1,
        "maxLength": 80,
        "description": "Trimmed; 1-80 characters; control characters are refused.",
    },
    "Timestamp": {"type": "string", "format": "date-time", "example": "2024-05-01T09:30:00Z"},
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "enum": [
                            "bad_request",
                            "unauthorized",
                            "forbidden",
                            "not_found",
                            "conflict",
                            "too_large",
                            "rate_limited",
                            "method_not_allowed",
                        ],
                    },
                    "message": {"type": "string"},
                },
            }
        },
    },
    "NameBody": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": _ref("DisplayName")},
    },
    "Participant": {
        "type": "object",
        "required": ["id", "name", "role"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "role": {"type": "string", "enum": ["patient", "guest", "staff", "admin"]},
        },
    },
    "MeetingRoom": {
        "type": "object",
        "required": ["id", "clinic", "name", "participants"],
        "properties": {
            "id": _ref("Id"),
            "clinic": _ref("Id"),
            "name": {"type": "string"},
            "participants": {"type": "array", "items": _ref("Participant")},
        },
    },
    "Clinic": {
        "type": "object",
        "required": ["id", "name", "rooms", "waiting_area"],
        "properties": {
            "id": _ref("Id"),
            "name": {"type": "string"},
            "rooms": {"type": "array", "items": _ref("MeetingRoom")},
            "waiting_area": {
                "type": "object",
                "required": ["closed", "message", "spaces"],
                "properties": {
                    "closed": {"type": "boolean"},
                    "message": {"type": "string"},
                    "spaces": {"type": "integer", "description": "How many spaces it holds."},
                },
            },
        },
    },
    "Space": {
        "type": "object",
        "required": ["space", "status", "waiting_since", "patient", "participants"],
        "properties": {
            "space": {"type": "string", "example": "sp_3q2ZyX9kLm0aBcDe"},
            "status": {"type": "string", "enum": ["waiting", "in_consultation", "on_hold"]},
            "waiting_since": _ref("Timestamp"),
            "patient": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
            },
            "participants": {"type": "array", "items": _ref("Participant")},
        },
    },
    "WaitingArea": {
        "type": "object",
        "required": ["spaces", "closed", "message"],
        "properties": {
            "spaces": {
                "type": "array",
                "items": _ref("Space"),
                "description": "Longest waiting first.",
            },
            "closed": {"type": "boolean"},
            "message": {"type": "string", "description": "The closed message; empty when open."},
        },
    },
    "WaitingAreaState": {
        "type": "object",
        "required": ["closed"],
        "properties": {
            "closed": {"type": "boolean"},
            "message": {"type": "string", "maxLength": 500},
        },
    },
    "Entry": {
        "type": "object",
        "required": ["space", "token", "expires_at"],
        "properties": {
            "space": {"type": "string"},
            "token": {"type": "string", "description": "A patient token for this space."},
            "expires_at": _ref("Timestamp"),
        },
    },
    "InviteBody": {
        "type": "object",
        "properties": {
            "name": _ref("DisplayName"),
            "ttl": {
                "type": "integer",
                "minimum": 60,
                "description": "Token lifetime in seconds; at most auth.guest_token_ttl (default).",
            },
        },
    },
    "Invite": {
        "type": "object",
        "required": ["token", "url", "expires_at"],
        "properties": {
            "token": {"type": "string", "description": "A guest token scoped to the space or room."},
            "url": {"type": "string", "format": "uri"},
            "expires_at": _ref("Timestamp"),
        },
    },
}

_RESPONSES: dict[str, Any] = {
    name: _json(_ref("Error"), text)
    for name, text in [
        ("BadRequest", "bad_request: malformed JSON, missing or invalid field"),
        ("Unauthorized", "unauthorized: missing, malformed, badly signed, expired or not yet valid token"),
        ("Forbidden", "forbidden: the token's role or scope does not allow this"),
        ("NotFound", "not_found: no such clinic, room or space"),
        ("Conflict", "conflict: e.g. the waiting area is closed (message says why) or full"),
        ("TooLarge", "too_large: request body over 64 KiB"),
        ("RateLimited", "rate_limited: too many waiting-area entries from this address"),
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
                "responses": {"101": {"description": "Switching protocols."}, **_errors(401)},
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
                    **_errors(400, 404, 409, 413, 429),
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
            "schemas": copy.deepcopy(_SCHEMAS),
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
