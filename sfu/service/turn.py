"""The ``ice_servers`` a participant is handed in ``joined``, with its own TURN credential.

A TURN server configured with an ``auth_secret`` gets coturn's shared-secret scheme (the
"TURN REST API" convention; coturn's ``use-auth-secret`` + ``static-auth-secret``):

    username   = "<expiry, unix time>:<participant id>"
    credential = base64(HMAC-SHA1(secret, username))

The TURN server recomputes the credential from the username and refuses an allocation whose
expiry has passed (401), so nothing is stored or shared between the two but the secret. The
participant id is the opaque one of ``joined`` (``p_...``), never a name. coturn checks the
expiry when an allocation is made; an allocation made in time is refreshed past it (checked with
coturn 4.6.1), so a call that started in time is not cut. Pure: the time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from sfu.transport.settings import IceServer


def turn_credential(secret: str, user: str, expires: int) -> tuple[str, str]:
    """(username, credential) for ``user`` valid until the unix time ``expires``."""
    username = f"{expires}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_json(servers: Sequence[IceServer], participant: str,
                     now: float) -> list[dict[str, Any]]:
    """The ``ice_servers`` of ``joined`` for ``participant`` at wall-clock time ``now``: static
    credentials as configured, per-participant ones minted for a server with an ``auth_secret``."""
    out = []
    for server in servers:
        entry: dict[str, Any] = {"urls": server.urls}
        if server.auth_secret:
            entry["username"], entry["credential"] = turn_credential(
                server.auth_secret, participant, int(now) + server.credential_ttl)
        elif server.username:
            entry["username"] = server.username
            entry["credential"] = server.credential
        out.append(entry)
    return out
