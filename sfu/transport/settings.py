"""The ``[media]`` section of the configuration: what the transport layer reads."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server (``[[media.ice_servers]]``).

    A TURN server either has one static ``username``/``credential`` that every participant is
    handed, or an ``auth_secret`` shared with the TURN server (coturn's ``static-auth-secret``)
    from which each participant gets its own credential, valid ``credential_ttl`` seconds
    (``sfu/service/turn.py``). Secrets are left out of the repr, so they never reach a log."""

    urls: list[str]
    username: str = ""
    credential: str = field(default="", repr=False)
    auth_secret: str = field(default="", repr=False)
    credential_ttl: int = 3600


@dataclass(frozen=True)
class MediaSettings:
    # Local addresses that gather ICE host candidates. Empty: every non-loopback address.
    ice_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    # Address written into candidates instead of the local one (1:1 NAT); empty: none.
    announced_address: str = ""
    # "40000-40999" (a range), "40000" (one port per peer is still needed: see docs), "" (any).
    udp_ports: str = ""
    # STUN/TURN servers handed to clients in `joined` (the server gathers host candidates only).
    ice_servers: list[IceServer] = field(default_factory=list)
    # Without media or RTCP from a connected peer for this long, it is removed.
    inactivity_timeout: float = 30.0
    # How long ICE + DTLS may take after an answer before the peer is given up.
    connect_timeout: float = 20.0
    packet_cache_size: int = 512
    pli_interval: float = 1.0
    # Offer to receive each participant's video as simulcast (three layers by RID, q/h/f); a
    # browser then sends several sizes and each receiver is forwarded the one its link carries.
    simulcast: bool = True


def parse_port_range(spec: str) -> tuple[int, int] | None:
    """``"40000-40999"`` -> (40000, 40999); ``"40000"`` -> (40000, 40000); ``""`` -> None."""
    spec = spec.strip()
    if not spec:
        return None
    lo_s, _, hi_s = spec.partition("-")
    lo = int(lo_s)
    hi = int(hi_s) if hi_s else lo
    if not (1 <= lo <= hi <= 65535):
        raise ValueError(f"bad port range {spec!r}")
    return lo, hi
