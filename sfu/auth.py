"""Tokens: HS256 JWTs signed with the server's API secret (API.md "Tokens").

``verify_token`` is the only way a token becomes ``Claims``; every failure is an ``ApiError``
``unauthorized`` (401) whose message says what is wrong with the token. The clock is passed in
(``now``) so expiry rules are tested deterministically; PyJWT checks only the signature and the
presence of the required claims, the time rules are checked here.

This module imports no HTTP library at run time: ``sfu/rooms`` may depend on ``Claims``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import jwt

from sfu.errors import unauthorized

if TYPE_CHECKING:
    from aiohttp import web

PATIENT: Final = "patient"
GUEST: Final = "guest"
STAFF: Final = "staff"
ADMIN: Final = "admin"
ROLES: Final = frozenset({PATIENT, GUEST, STAFF, ADMIN})
ALL_CLINICS: Final = "*"
"""The ``clinic`` claim of an ``admin`` token that acts on every clinic (the portal's backend)."""

ALGORITHM: Final = "HS256"
_REQUIRED: Final = ("sub", "role", "clinic", "exp")


@dataclass(frozen=True)
class AuthSettings:
    """The ``[auth]`` section of the configuration."""

    secret: str = ""
    patient_token_ttl: int = 4 * 3600
    guest_token_ttl: int = 4 * 3600  # a consultation's day part, not a day (revocable too)
    # accept the WebSocket token as ``?token=`` in the URL (older clients); URLs end up in proxy
    # logs, so an operator whose clients all send ``{"type":"auth"}`` turns it off
    url_token: bool = True
    # clocks differ: exp, nbf and iat are checked with this many seconds of tolerance
    leeway: float = 30.0
    # when set, every token must carry this ``aud`` (or list it) and this ``iss``, and the tokens
    # the server mints (patient entry, invites, ``sfu token``) carry them
    audience: str = ""
    issuer: str = ""

    def verify(self, token: str, now: float | None = None) -> Claims:
        """``verify_token`` with this section's secret, leeway, audience and issuer."""
        return verify_token(token, self.secret, now, self.leeway, audience=self.audience,
                            issuer=self.issuer)

    def mint(self, **claims: Any) -> str:
        """``mint_token`` with this section's secret, audience and issuer."""
        return mint_token(self.secret, audience=self.audience, issuer=self.issuer, **claims)


@dataclass(frozen=True)
class Claims:
    """The verified claims of a token."""

    sub: str
    role: str
    clinic: str
    exp: float
    name: str = ""
    space: str | None = None
    room: str | None = None
    nbf: float | None = None
    iat: float | None = None

    def acts_on(self, clinic: str) -> bool:
        """Whether this token's clinic scope covers ``clinic`` (role not considered)."""
        return self.clinic == clinic or (self.role == ADMIN and self.clinic == ALL_CLINICS)


def mint_token(
    secret: str,
    *,
    sub: str,
    role: str,
    clinic: str,
    name: str = "",
    space: str | None = None,
    room: str | None = None,
    ttl: float = 3600,
    now: float | None = None,
    audience: str = "",
    issuer: str = "",
) -> str:
    """Sign a token; ``exp`` is ``now + ttl`` (whole seconds)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "sub": sub,
        "role": role,
        "clinic": clinic,
        "iat": issued,
        "exp": issued + math.ceil(ttl),
    }
    if name:
        payload["name"] = name
    if space is not None:
        payload["space"] = space
    if room is not None:
        payload["room"] = room
    if audience:
        payload["aud"] = audience
    if issuer:
        payload["iss"] = issuer
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str, now: float | None = None, leeway: float = 0.0, *,
                 audience: str = "", issuer: str = "") -> Claims:
    """Check signature, time claims (with ``leeway`` seconds of tolerance) and required claims,
    and ``aud``/``iss`` when given; return the claims or raise 401."""
    if not isinstance(token, str) or not token:
        raise unauthorized("missing token")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": list(_REQUIRED),
            },
        )
    except jwt.MissingRequiredClaimError as exc:
        raise unauthorized(f"token lacks the required claim {exc.claim!r}") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise unauthorized(f"token must be signed with {ALGORITHM}") from exc
    except jwt.InvalidSignatureError as exc:
        raise unauthorized("token signature is not valid") from exc
    except jwt.PyJWTError as exc:
        raise unauthorized("token is malformed") from exc
    if audience:
        aud = payload.get("aud")
        if not (aud == audience or (isinstance(aud, list) and audience in aud)):
            raise unauthorized(f"token is not for this server (aud must be {audience!r})")
    if issuer and payload.get("iss") != issuer:
        raise unauthorized(f"token is not from the expected issuer (iss must be {issuer!r})")
    return _claims(payload, time.time() if now is None else now, leeway)


def _claims(payload: Mapping[str, Any], now: float, leeway: float) -> Claims:
    exp = _number(payload, "exp")
    nbf = _number(payload, "nbf") if "nbf" in payload else None
    iat = _number(payload, "iat") if "iat" in payload else None
    if now >= exp + leeway:
        raise unauthorized("token has expired")
    if nbf is not None and now < nbf - leeway:
        raise unauthorized("token is not valid yet (nbf)")
    if iat is not None and now < iat - leeway:
        raise unauthorized("token is issued in the future (iat)")
    sub = _text(payload, "sub", required=True)
    role = _text(payload, "role", required=True)
    clinic = _text(payload, "clinic", required=True)
    name = _text(payload, "name") or ""
    space = _text(payload, "space")
    room = _text(payload, "room")
    assert sub is not None and role is not None and clinic is not None
    if role not in ROLES:
        raise unauthorized(f"token has an unknown role {role!r}")
    if role == PATIENT and space is None:
        raise unauthorized("a patient token needs the claim 'space'")
    if role == GUEST and (space is None) == (room is None):
        raise unauthorized("a guest token needs exactly one of the claims 'space' or 'room'")
    if clinic == ALL_CLINICS and role != ADMIN:
        raise unauthorized("only an admin token may name every clinic ('*')")
    return Claims(
        sub=sub, role=role, clinic=clinic, exp=exp, name=name, space=space, room=room,
        nbf=nbf, iat=iat,
    )


def _number(payload: Mapping[str, Any], key: str) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise unauthorized(f"token claim {key!r} must be a number (seconds since the epoch)")
    return float(value)


def _text(payload: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise unauthorized(f"token claim {key!r} must be a non-empty string")
    return value


def bearer_token(request: web.BaseRequest) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if not header:
        raise unauthorized("missing Authorization: Bearer token")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def bearer_claims(request: web.BaseRequest, auth: str | AuthSettings,
                  now: float | None = None) -> Claims:
    """Verify the request's bearer token (401 ``ApiError`` when absent or invalid) against a
    secret, or an ``[auth]`` section (its leeway, audience and issuer too)."""
    if isinstance(auth, AuthSettings):
        return auth.verify(bearer_token(request), now)
    return verify_token(bearer_token(request), auth, now)


__all__ = [
    "ADMIN",
    "ALL_CLINICS",
    "GUEST",
    "PATIENT",
    "ROLES",
    "STAFF",
    "Claims",
    "bearer_claims",
    "bearer_token",
    "mint_token",
    "verify_token",
]
