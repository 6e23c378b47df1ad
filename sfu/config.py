"""Configuration: one frozen dataclass per component, composed from TOML by one loader.

Every key is documented in ``config/sfu.example.toml``. An unknown key is an error, and every
problem found is reported at once (``sfu check-config`` lists them all).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfu.errors import ConfigError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # base URL used in invite links; default http://host:port
    max_message_bytes: int = 65536
    drain_timeout: float = 10.0


@dataclass(frozen=True)
class AuthConfig:
    secret: str = ""
    patient_token_ttl: int = 4 * 3600
    guest_token_ttl: int = 24 * 3600


@dataclass(frozen=True)
class LimitsConfig:
    max_participants: int = 6
    max_spaces_per_clinic: int = 500


@dataclass(frozen=True)
class IceServer:
    urls: list[str]
    username: str = ""
    credential: str = ""


@dataclass(frozen=True)
class MediaConfig:
    # Local addresses that gather ICE host candidates. Empty: every non-loopback address.
    ice_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    # Address written into candidates instead of the local one (1:1 NAT); empty: none.
    announced_address: str = ""
    # "40000-40999" (a range), "40000" (one port per peer is still needed: see docs), "" (any).
    udp_ports: str = ""
    # STUN/TURN servers for the server's own gathering and handed to clients in `joined`.
    ice_servers: list[IceServer] = field(default_factory=list)
    # Without media or RTCP from a connected peer for this long, it is removed.
    inactivity_timeout: float = 30.0
    # How long ICE + DTLS may take after an answer before the peer is given up.
    connect_timeout: float = 20.0
    packet_cache_size: int = 512
    pli_interval: float = 1.0


@dataclass(frozen=True)
class BandwidthConfig:
    min_video_kbps: int = 150
    min_audio_kbps: int = 40
    audio_only_acceptable: bool = True
    warn_kbps: int = 330
    block_kbps: int = 180
    probe_seconds: float = 3.0


@dataclass(frozen=True)
class WaitingAreaConfig:
    reconnect_grace: float = 120.0
    unconnected_expiry: float = 900.0
    entry_rate_limit: int = 10  # entries per client address ...
    entry_rate_window: float = 60.0  # ... per this many seconds


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "text"  # "text" or "json"


@dataclass(frozen=True)
class MetricsConfig:
    port: int = 0  # 0: /metrics on the main port


@dataclass(frozen=True)
class WebhooksConfig:
    urls: list[str] = field(default_factory=list)
    secret: str = ""
    timeout: float = 5.0
    max_attempts: int = 5
    queue_size: int = 1000


@dataclass(frozen=True)
class RoomConfig:
    id: str
    name: str


@dataclass(frozen=True)
class ClinicConfig:
    id: str
    name: str
    waiting_area_closed_message: str = ""  # non-empty: the waiting area is closed with it
    rooms: list[RoomConfig] = field(default_factory=list)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    bandwidth: BandwidthConfig = field(default_factory=BandwidthConfig)
    waiting_area: WaitingAreaConfig = field(default_factory=WaitingAreaConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    clinics: list[ClinicConfig] = field(default_factory=list)


def default_config() -> Config:
    """The embedded default: loopback, port 8080, clinic ``demo`` with room ``team``."""
    return Config(
        auth=AuthConfig(secret=secrets.token_urlsafe(32)),
        clinics=[
            ClinicConfig(id="demo", name="Demo clinic", rooms=[RoomConfig("team", "Team room")])
        ],
    )


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read and validate a TOML file; raise ConfigError listing every problem."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    return config_from_dict(raw, environ)


def config_from_dict(raw: dict[str, Any], environ: dict[str, str] | None = None) -> Config:
    problems: list[str] = []
    cfg = _build(Config, raw, "", problems)
    env = os.environ if environ is None else environ
    if cfg is not None and env.get("SFU_AUTH_SECRET"):
        cfg = dataclasses.replace(
            cfg, auth=dataclasses.replace(cfg.auth, secret=env["SFU_AUTH_SECRET"])
        )
    if cfg is not None:
        _validate(cfg, problems)
    if problems or cfg is None:
        raise ConfigError(problems or ["invalid configuration"])
    assert isinstance(cfg, Config)
    return cfg


def _build(cls: Any, raw: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"{where or 'top level'}: expected a table")
        return None
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            problems.append(f"{where}{key}: unknown key")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{where}{f.name}"
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{key}: required")
            continue
        value = _coerce(hints[f.name], raw[f.name], key, problems)
        if value is not _BAD:
            kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError:
        return None


_BAD = object()


def _coerce(tp: Any, value: Any, key: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append(f"{key}: expected a list")
            return _BAD
        out = [_coerce(item, v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
        return _BAD if any(v is _BAD for v in out) else out
    if origin in (typing.Union, types.UnionType):
        return value
    if dataclasses.is_dataclass(tp):
        built = _build(tp, value, key + ".", problems)
        return _BAD if built is None else built
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{key}: expected true or false, got {value!r}")
            return _BAD
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{key}: expected an integer, got {value!r}")
            return _BAD
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{key}: expected a number, got {value!r}")
            return _BAD
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{key}: expected a string, got {value!r}")
            return _BAD
        return value
    return value


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


def _validate(cfg: Config, problems: list[str]) -> None:
    def positive(key: str, value: float) -> None:
        if value <= 0:
            problems.append(f"{key}: must be greater than 0, got {value}")

    if not 0 <= cfg.server.port <= 65535:
        problems.append(f"server.port: must be 0-65535, got {cfg.server.port}")
    if not 0 <= cfg.metrics.port <= 65535:
        problems.append(f"metrics.port: must be 0-65535, got {cfg.metrics.port}")
    if not cfg.auth.secret:
        problems.append("auth.secret: required (or set SFU_AUTH_SECRET)")
    elif len(cfg.auth.secret) < 16:
        problems.append("auth.secret: too short, use at least 16 characters")
    if not 2 <= cfg.limits.max_participants <= 16:
        problems.append(f"limits.max_participants: must be 2-16, got {cfg.limits.max_participants}")
    positive("server.max_message_bytes", cfg.server.max_message_bytes)
    positive("server.drain_timeout", cfg.server.drain_timeout)
    positive("media.inactivity_timeout", cfg.media.inactivity_timeout)
    positive("media.connect_timeout", cfg.media.connect_timeout)
    positive("media.packet_cache_size", cfg.media.packet_cache_size)
    positive("waiting_area.reconnect_grace", cfg.waiting_area.reconnect_grace)
    positive("waiting_area.unconnected_expiry", cfg.waiting_area.unconnected_expiry)
    positive("waiting_area.entry_rate_limit", cfg.waiting_area.entry_rate_limit)
    for i, addr in enumerate(cfg.media.ice_addresses):
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            problems.append(f"media.ice_addresses[{i}]: not an IP address: {addr!r}")
    if cfg.media.announced_address:
        try:
            ipaddress.ip_address(cfg.media.announced_address)
        except ValueError:
            problems.append(f"media.announced_address: not an IP address: {cfg.media.announced_address!r}")
    try:
        parse_port_range(cfg.media.udp_ports)
    except ValueError:
        problems.append(f"media.udp_ports: expected 'LOW-HIGH' or 'PORT', got {cfg.media.udp_ports!r}")
    for i, server in enumerate(cfg.media.ice_servers):
        for url in server.urls:
            if not re.match(r"^(stun|stuns|turn|turns):", url):
                problems.append(f"media.ice_servers[{i}].urls: not a stun:/turn: URL: {url!r}")
    if cfg.bandwidth.block_kbps > cfg.bandwidth.warn_kbps:
        problems.append("bandwidth.block_kbps: must not exceed bandwidth.warn_kbps")
    if cfg.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"logging.level: one of DEBUG, INFO, WARNING, ERROR, got {cfg.logging.level!r}")
    if cfg.logging.format not in ("text", "json"):
        problems.append(f"logging.format: 'text' or 'json', got {cfg.logging.format!r}")
    for i, url in enumerate(cfg.webhooks.urls):
        if not re.match(r"^https?://", url):
            problems.append(f"webhooks.urls[{i}]: not an http(s) URL: {url!r}")
    if cfg.webhooks.urls and not cfg.webhooks.secret:
        problems.append("webhooks.secret: required when webhooks.urls is set")
    seen: set[str] = set()
    for i, clinic in enumerate(cfg.clinics):
        if not _ID.match(clinic.id):
            problems.append(f"clinics[{i}].id: letters, digits, '-' and '_' only: {clinic.id!r}")
        if clinic.id in seen:
            problems.append(f"clinics[{i}].id: duplicate clinic id {clinic.id!r}")
        seen.add(clinic.id)
        rooms: set[str] = set()
        for j, room in enumerate(clinic.rooms):
            if not _ID.match(room.id):
                problems.append(f"clinics[{i}].rooms[{j}].id: letters, digits, '-' and '_' only: {room.id!r}")
            if room.id in rooms:
                problems.append(f"clinics[{i}].rooms[{j}].id: duplicate room id {room.id!r}")
            rooms.add(room.id)


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))
