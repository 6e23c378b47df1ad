"""The HTTP API of API.md (everything but ``/healthz``, ``/metrics`` and ``/v1/ws``).

Thin: each handler authenticates, reads a bounded JSON body, calls the clinic domain and turns
``ApiError`` into ``{"error": {"code", "message"}}``. Logs carry opaque ids only, never names.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from sfu.auth import ADMIN, ALL_CLINICS, GUEST, PATIENT, Claims, bearer_claims
from sfu.cluster.node import CLUSTER_HEADER, ClusterNode
from sfu.errors import (
    ApiError,
    bad_request,
    conflict,
    forbidden,
    not_found,
    too_large,
    unauthorized,
    unsupported_media_type,
)
from sfu.rooms import (
    ClinicRegistry,
    clean_message,
    clean_name,
    iso_time,
    require_admin,
    require_member,
)
from sfu.rooms.text import new_id, valid_id
from sfu.service.bodies import Entry, Error, ErrorDetail, Invite, WaitingAreaState
from sfu.service.clientaddr import ClientAddresses
from sfu.service.config import Config
from sfu.service.jsontext import parse_json
from sfu.service.openapi import build_openapi

logger = logging.getLogger("sfu.service.api")

MAX_BODY = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: ApiError) -> web.Response:
    """The contract's error body; 401 also carries ``WWW-Authenticate: Bearer``."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    body = Error(ErrorDetail(code=exc.code, message=exc.message))  # type: ignore[arg-type]
    return _json(body, status=exc.status, headers=headers)


def _json(body: msgspec.Struct, *, status: int = 200, headers: dict[str, str] | None = None
          ) -> web.Response:
    """A response whose body is one of the API's typed bodies (``sfu/service/bodies.py``)."""
    return web.json_response(msgspec.to_builtins(body), status=status, headers=headers)


def _guard(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)

    return wrapped


@web.middleware
async def api_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under ``/v1/``: unknown paths and methods answer in the contract's JSON error shape too."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPNotFound:
        if not request.path.startswith("/v1/"):
            raise
        return error_response(ApiError("not_found", f"no such call: {request.path}", 404))
    except web.HTTPMethodNotAllowed as exc:
        if not request.path.startswith("/v1/"):
            raise
        response = error_response(
            ApiError("method_not_allowed", f"{request.method} is not allowed here", 405)
        )
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return response


def refuse_revoked(claims: Claims, registry: ClinicRegistry) -> Claims:
    """A guest token of a revoked invite is not taken (401)."""
    if claims.role == GUEST:
        clinic = registry.find(claims.clinic)
        if clinic is not None and clinic.invite_revoked(claims.sub):
            raise unauthorized("this invite was revoked")
    return claims


async def read_json(request: web.BaseRequest, *, required: bool = True,
                    json_only: bool = False) -> dict[str, Any]:
    """The request's JSON object body: 413 over 64 KiB, 400 when malformed or not an object;
    with ``json_only``, 415 unless it is declared ``application/json`` (or ``+json``)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large(f"request body over {MAX_BODY} bytes")
    body = bytearray()
    while True:
        chunk = await request.content.read(MAX_BODY + 1 - len(body))
        if not chunk:
            break
        body += chunk
        if len(body) > MAX_BODY:
            raise too_large(f"request body over {MAX_BODY} bytes")
    if not body.strip():
        if required:
            raise bad_request("a JSON object body is required")
        return {}
    if json_only and not (request.content_type == "application/json"
                          or request.content_type.endswith("+json")):
        # a cross-origin form or text/plain POST needs no CORS preflight: any web page could
        # make its visitors' browsers enter the waiting area
        raise unsupported_media_type("the body must be sent as Content-Type: application/json")
    try:
        data = parse_json(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request("malformed JSON body") from exc
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


def client_addresses(config: Config) -> ClientAddresses:
    """How the configured server finds a request's client address (per-address budgets)."""
    return ClientAddresses.from_settings(config.server.trusted_proxies,
                                         config.server.forwarded_header, config.limits.ipv6_prefix)


class _Api:
    def __init__(self, registry: ClinicRegistry, config: Config, clock: Callable[[], float],
                 addresses: ClientAddresses, cluster: ClusterNode | None = None) -> None:
        self.registry = registry
        self.config = config
        self.clock = clock
        self.addresses = addresses
        self.cluster = cluster
        self._openapi: bytes | None = None

    def from_node(self, request: web.Request) -> bool:
        """A request another node of this cluster sent (its ``X-SFU-Cluster`` token)."""
        token = request.headers.get(CLUSTER_HEADER)
        if self.cluster is None or not token:
            return False
        try:
            claims = self.config.auth.verify(token, now=self.clock())
        except ApiError:
            return False
        return claims.role == ADMIN and claims.clinic == ALL_CLINICS and claims.sub.startswith("node:")

    async def relay(self, request: web.Request, node: str, body: bytes = b"",
                    extra: dict[str, str] | None = None) -> web.Response:
        """Answer with what ``node`` (the host of the space) answers to the same request."""
        assert self.cluster is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "content-type")}
        status, data, content_type = await self.cluster.relay(
            node, request.method, request.path_qs, body, {**headers, **(extra or {})})
        return web.Response(status=status, body=data, content_type=content_type or None)

    async def remote_space(self, request: web.Request, clinic_id: str, space_id: str
                           ) -> tuple[bool, str]:
        """A space this node does not host: (it exists in the cluster, the node hosting it)."""
        if self.cluster is None or self.from_node(request):
            return False, ""
        record, host = await self.cluster.space_host(clinic_id, space_id)
        return record is not None, host

    def claims(self, request: web.Request) -> Claims:
        return refuse_revoked(bearer_claims(request, self.config.auth, now=self.clock()),
                              self.registry)

    def base_url(self, request: web.Request) -> str:
        return self.config.server.public_url.rstrip("/") or f"{request.scheme}://{request.host}"

    # -- clinics and meeting rooms (admin) -----------------------------------------------------

    async def put_clinic(self, request: web.Request) -> web.Response:
        clinic_id = request.match_info["clinic"]
        require_admin(self.claims(request), clinic_id)
        body = await read_json(request)
        clinic, created = self.registry.put_clinic(clinic_id, body.get("name"))
        logger.info("clinic %s %s", clinic.id, "created" if created else "renamed")
        return web.json_response(clinic.to_json(), status=201 if created else 200)

    async def get_clinic(self, request: web.Request) -> web.Response:
        clinic_id = request.match_info["clinic"]
        require_member(self.claims(request), clinic_id)
        body = self.registry.get(clinic_id).to_json()
        if self.cluster is not None:  # every node's spaces, not only this one's
            body["waiting_area"]["spaces"] = await self.cluster.count_spaces(clinic_id)
        return web.json_response(body)

    async def put_room(self, request: web.Request) -> web.Response:
        clinic_id, room_id = request.match_info["clinic"], request.match_info["room"]
        require_admin(self.claims(request), clinic_id)
        clinic = self.registry.get(clinic_id)
        body = await read_json(request)
        room, created = clinic.put_room(room_id, body.get("name"))
        logger.info("room %s/%s %s", clinic.id, room.id, "created" if created else "renamed")
        return web.json_response(room.to_json(), status=201 if created else 200)

    async def delete_room(self, request: web.Request) -> web.Response:
        clinic_id, room_id = request.match_info["clinic"], request.match_info["room"]
        require_admin(self.claims(request), clinic_id)
        room = self.registry.get(clinic_id).delete_room(room_id)
        logger.info("room %s/%s deleted (%d inside)", clinic_id, room.id, len(room.roster))
        return web.Response(status=204)

    # -- waiting area -----------------------------------------------------------------------------

    async def enter_waiting_area(self, request: web.Request) -> web.Response:
        clinic_id = request.match_info["clinic"]
        clinic = self.registry.get(clinic_id)
        body = await read_json(request, json_only=True)
        now = self.clock()
        address = self.addresses.key(request.remote, request.headers)
        placed: str | None = None  # the id the placing node chose (a relayed entry)
        if request.headers.get("X-SFU-Space") is not None:
            if not self.from_node(request):
                raise forbidden("X-SFU-Space is for the nodes of a cluster")
            placed = request.headers["X-SFU-Space"]
            if not placed.startswith("sp_") or not valid_id(placed):
                raise bad_request("bad X-SFU-Space")
        elif self.cluster is not None:
            # the space is placed now, on the least loaded node, which keeps the patient's name
            area = clinic.waiting_area
            if not area.closed:
                self.registry.check_entry_rate(address, now)
                if await self.cluster.count_spaces(clinic_id) >= area.max_spaces:
                    raise conflict("The waiting area is full at the moment. Please try again later.")
            placed = new_id("sp_")
            host = await self.cluster.place(clinic_id, "space", placed)
            if host != self.cluster.id:
                return await self.relay(request, host, json.dumps(body).encode(),
                                        {"Content-Type": "application/json", "X-SFU-Space": placed})
        space = self.registry.enter_waiting_area(clinic_id, body.get("name"), address, now,
                                                 space_id=placed, rate_checked=placed is not None)
        ttl = self.config.auth.patient_token_ttl
        token = self.config.auth.mint(
            sub=space.patient_sub,
            role=PATIENT,
            clinic=clinic_id,
            name=space.patient_name,
            space=space.id,
            ttl=ttl,
            now=now,
        )
        logger.info("space %s created in clinic %s", space.id, clinic_id)
        return _json(Entry(space=space.id, token=token, expires_at=iso_time(int(now) + ttl)), status=201)

    async def get_waiting_area(self, request: web.Request) -> web.Response:
        clinic_id = request.match_info["clinic"]
        require_member(self.claims(request), clinic_id)
        if self.cluster is not None:
            self.registry.get(clinic_id)
            return web.json_response(await self.cluster.waiting_list(clinic_id))
        return web.json_response(self.registry.get(clinic_id).waiting_area.to_json())

    async def node_spaces(self, request: web.Request) -> web.Response:
        """``GET /v1/cluster/clinics/{clinic}/spaces``: the spaces this node hosts, names
        included; for the other nodes of the cluster only."""
        if not self.from_node(request):
            raise forbidden("for the nodes of this cluster only")
        assert self.cluster is not None
        return web.json_response({"spaces": self.cluster.local_spaces(request.match_info["clinic"])})

    async def cluster_state(self, request: web.Request) -> web.Response:
        """``GET /v1/cluster``: the live nodes and their load (admins of every clinic)."""
        claims = self.claims(request)
        if claims.role != ADMIN or claims.clinic != ALL_CLINICS:
            raise forbidden("only an admin of every clinic may see the cluster")
        if self.cluster is None:
            raise not_found("this server is not part of a cluster")
        return web.json_response(self.cluster.nodes_json())

    async def put_waiting_area(self, request: web.Request) -> web.Response:
        clinic_id = request.match_info["clinic"]
        require_admin(self.claims(request), clinic_id)
        area = self.registry.get(clinic_id).waiting_area
        body = await read_json(request)
        closed = body.get("closed")
        if not isinstance(closed, bool):
            raise bad_request("'closed' is required and must be true or false")
        message = clean_message(body.get("message", ""))
        if closed:
            area.close(message)
        else:
            area.open()
        logger.info("waiting area of clinic %s %s", clinic_id, "closed" if closed else "opened")
        return _json(WaitingAreaState(closed=area.closed, message=area.closed_message))

    async def end_space(self, request: web.Request) -> web.Response:
        clinic_id, space_id = request.match_info["clinic"], request.match_info["space"]
        require_member(self.claims(request), clinic_id)
        area = self.registry.get(clinic_id).waiting_area
        if area.find(space_id) is None:
            exists, host = await self.remote_space(request, clinic_id, space_id)
            if host and self.cluster is not None and host != self.cluster.id:
                return await self.relay(request, host)
            if exists and not host and self.cluster is not None:
                await self.cluster.forget_space(clinic_id, space_id)  # no node hosts it now
                logger.info("space %s of clinic %s ended by staff (unhosted)", space_id, clinic_id)
                return web.Response(status=204)
        space = area.end(space_id)
        logger.info("space %s of clinic %s ended by staff", space.id, clinic_id)
        return web.Response(status=204)

    # -- invites ---------------------------------------------------------------------------------

    async def invite_to_space(self, request: web.Request) -> web.Response:
        clinic_id, space_id = request.match_info["clinic"], request.match_info["space"]
        require_member(self.claims(request), clinic_id)
        area = self.registry.get(clinic_id).waiting_area
        if area.find(space_id) is None:
            exists, host = await self.remote_space(request, clinic_id, space_id)
            if host and self.cluster is not None and host != self.cluster.id:
                return await self.relay(request, host, await request.read())
            if not exists:
                area.get(space_id)  # 404
        link = f"/c/{quote(clinic_id, safe='')}?space={quote(space_id, safe='')}"
        return await self._invite(request, clinic_id, link, space=space_id)

    async def invite_to_room(self, request: web.Request) -> web.Response:
        clinic_id, room_id = request.match_info["clinic"], request.match_info["room"]
        require_member(self.claims(request), clinic_id)
        room = self.registry.get(clinic_id).room(room_id)
        link = f"/c/{quote(clinic_id, safe='')}/rooms/{quote(room.id, safe='')}"
        return await self._invite(request, clinic_id, link, room=room.id)

    async def _invite(
        self,
        request: web.Request,
        clinic_id: str,
        link: str,
        *,
        space: str | None = None,
        room: str | None = None,
    ) -> web.Response:
        body = await read_json(request, required=False)
        name = clean_name(body["name"]) if body.get("name") is not None else ""
        max_ttl = self.config.auth.guest_token_ttl
        ttl = body.get("ttl", max_ttl)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= max_ttl:
            raise bad_request(f"'ttl' must be a whole number of seconds, 60-{max_ttl}")
        now = self.clock()
        invite = new_id("gu_")
        token = self.config.auth.mint(
            sub=invite,
            role=GUEST,
            clinic=clinic_id,
            name=name,
            space=space,
            room=room,
            ttl=ttl,
            now=now,
        )
        logger.info("guest invite for %s/%s", clinic_id, space or room)
        url = f"{self.base_url(request)}{link}#token={token}"
        return _json(Invite(token=token, url=url, expires_at=iso_time(int(now) + ttl),
                            invite=invite), status=201)

    async def revoke_invite(self, request: web.Request) -> web.Response:
        """No token of that invite is taken again; guests in a call with it are put out."""
        clinic_id, invite = request.match_info["clinic"], request.match_info["invite"]
        require_member(self.claims(request), clinic_id)
        clinic = self.registry.get(clinic_id)
        if not invite.startswith("gu_") or not valid_id(invite):
            raise not_found("no such invite")
        now = self.clock()
        clinic.revoke_invite(invite, now + self.config.auth.guest_token_ttl + 60, now)
        logger.info("guest invite %s of clinic %s revoked", invite, clinic_id)
        return web.Response(status=204)

    # -- the document ----------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            self._openapi = json.dumps(build_openapi(), indent=2).encode()
        return web.Response(body=self._openapi, content_type="application/json")


def setup_api_routes(
    app: web.Application,
    registry: ClinicRegistry,
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    json_errors: bool = True,
    addresses: ClientAddresses | None = None,
    cluster: ClusterNode | None = None,
) -> None:
    """Register the HTTP calls of API.md on ``app`` (not /healthz, /metrics, /v1/ws).

    With ``json_errors`` (default) it also installs ``api_error_middleware``, so unknown ``/v1/``
    paths and methods answer in the contract's error shape. ``addresses``: how a request's
    client address is found (the server's; by default from ``config``).
    """
    api = _Api(registry, config, clock, addresses or client_addresses(config), cluster)
    routes: list[tuple[str, str, Handler]] = [
        ("PUT", "/v1/clinics/{clinic}", api.put_clinic),
        ("GET", "/v1/clinics/{clinic}", api.get_clinic),
        ("PUT", "/v1/clinics/{clinic}/rooms/{room}", api.put_room),
        ("DELETE", "/v1/clinics/{clinic}/rooms/{room}", api.delete_room),
        ("POST", "/v1/clinics/{clinic}/rooms/{room}/invites", api.invite_to_room),
        ("POST", "/v1/clinics/{clinic}/waiting-area", api.enter_waiting_area),
        ("GET", "/v1/clinics/{clinic}/waiting-area", api.get_waiting_area),
        ("PUT", "/v1/clinics/{clinic}/waiting-area", api.put_waiting_area),
        ("POST", "/v1/clinics/{clinic}/waiting-area/{space}/end", api.end_space),
        ("POST", "/v1/clinics/{clinic}/waiting-area/{space}/invites", api.invite_to_space),
        ("DELETE", "/v1/clinics/{clinic}/invites/{invite}", api.revoke_invite),
        ("GET", "/v1/openapi.json", api.openapi),
        ("GET", "/v1/cluster", api.cluster_state),
        ("GET", "/v1/cluster/clinics/{clinic}/spaces", api.node_spaces),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _guard(handler))
    if json_errors:
        app.middlewares.append(api_error_middleware)
