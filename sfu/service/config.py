"""Configuration: the sections owned by the components that read them, composed by one loader.

Each section is a frozen dataclass next to its component (``sfu/transport/settings.py`` for
``[media]``, ``sfu/rooms/settings.py`` for ``[limits]``, ``[waiting_area]`` and ``[[clinics]]``, ...);
``Config`` only composes them. ``cattrs`` turns the TOML into those types, with strict scalar hooks
(a bool is not an int, a string is not a number); it collects every problem instead of stopping
at the first, so ``sfu check-config`` lists them all, each under its dotted key
(``server.colour: unknown key``, ``clinics[0].rooms[1].id: required``). The semantic checks
(ranges, addresses, ids) are ``_validate``'s. Every key is documented in
``config/sfu.example.toml``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import math
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cattrs import Converter
from cattrs.cols import list_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from sfu.auth import AuthSettings
from sfu.bandwidth.settings import BandwidthSettings
from sfu.cluster.settings import ClusterSettings
from sfu.errors import ConfigError
from sfu.rooms.settings import ClinicSettings, LimitsSettings, RoomSettings, WaitingAreaSettings
from sfu.rooms.text import valid_id
from sfu.service.clientaddr import FORWARDED_HEADERS, parse_networks
from sfu.service.settings import LoggingSettings, MetricsSettings, ServerSettings, WebhooksSettings
from sfu.service.web import embed_origin_problem
from sfu.transport.settings import IceServer, MediaSettings, parse_port_range

__all__ = [
    "Config",
    "config_from_dict",
    "config_warnings",
    "default_config",
    "load_config",
    "parse_port_range",
    "valid_id",
]

# Every token is checked against this HS256 secret, and anyone can get a token signed with it
# (patient entry), to test guesses offline: 32 characters at least (the embedded default and the
# generator below give 43 of base64, i.e. 32 random bytes); placeholders are refused.
MIN_SECRET_CHARS = 32
PLACEHOLDER_SECRETS = ("change-me", "changeme", "secret", "your-secret")


@dataclass(frozen=True)
class Config:
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    bandwidth: BandwidthSettings = field(default_factory=BandwidthSettings)
    waiting_area: WaitingAreaSettings = field(default_factory=WaitingAreaSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    webhooks: WebhooksSettings = field(default_factory=WebhooksSettings)
    clinics: list[ClinicSettings] = field(default_factory=list)
    cluster: ClusterSettings | None = None  # absent: one process, no Redis


def default_config() -> Config:
    """The embedded default: loopback, port 8080, clinic ``demo`` with room ``team``."""
    return Config(
        auth=AuthSettings(secret=secrets.token_urlsafe(32)),
        clinics=[
            ClinicSettings(id="demo", name="Demo clinic", rooms=[RoomSettings("team", "Team room")])
        ],
    )


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read and validate a TOML file; raise ConfigError listing every problem."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    return config_from_dict(raw, environ)


def config_from_dict(raw: dict[str, Any], environ: dict[str, str] | None = None) -> Config:
    """Build and validate a ``Config`` from parsed TOML; raise ConfigError listing every problem.

    When some values have the wrong type or are unknown, the semantic checks still run on the
    rest (those values left out, so their defaults apply): one run reports everything.
    """
    env = os.environ if environ is None else environ
    converter = _converter()
    try:
        return _checked(converter.structure(raw, Config), env, [])
    except (BaseValidationError, _Invalid) as exc:
        found = _problems(exc, ())
    problems = [f"{_key(path) or 'top level'}: {message}" for path, message in found]
    rest: Any = raw
    for _ in range(8):  # each round leaves out more, so this ends; a few rounds are plenty
        rest = _without(rest, found)
        try:
            cfg = converter.structure(rest, Config)
        except (BaseValidationError, _Invalid) as exc:
            found = _problems(exc, ())  # a required value was left out: leave out its table too
            continue
        with contextlib.suppress(ConfigError):
            _checked(cfg, env, problems)  # adds the semantic problems of the rest
        break
    raise ConfigError(problems)


def _checked(cfg: Config, env: Mapping[str, str], problems: list[str]) -> Config:
    """``cfg`` with ``SFU_AUTH_SECRET`` and ``SFU_TURN_SECRET`` applied, if it and ``problems``
    pass ``_validate``."""
    if env.get("SFU_AUTH_SECRET"):
        cfg = dataclasses.replace(
            cfg, auth=dataclasses.replace(cfg.auth, secret=env["SFU_AUTH_SECRET"])
        )
    if env.get("SFU_TURN_SECRET"):  # every TURN server that has a secret: the file's is a stand-in
        servers = [dataclasses.replace(s, auth_secret=env["SFU_TURN_SECRET"]) if s.auth_secret
                   else s for s in cfg.media.ice_servers]
        cfg = dataclasses.replace(cfg, media=dataclasses.replace(cfg.media, ice_servers=servers))
    _validate(cfg, problems)
    if problems:
        raise ConfigError(problems)
    return cfg


# -- structuring ------------------------------------------------------------------------------


class _Invalid(ValueError):
    """A value of the wrong type; the message says what was expected."""


def _scalar(check: Callable[[Any], bool], expected: str, cast: Callable[[Any], Any]) -> Any:
    def structure(value: Any, _type: Any) -> Any:
        if not check(value):
            raise _Invalid(f"expected {expected}, got {value!r}")
        return cast(value)

    return structure


def _converter() -> Converter:
    """A converter that takes the TOML types as they are: no str -> int, no bool -> int, no
    string as a list of characters; int is accepted where a float is expected."""
    conv = Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(
        bool, _scalar(lambda v: isinstance(v, bool), "true or false", bool))
    conv.register_structure_hook(
        int, _scalar(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", int))
    number = _scalar(lambda v: isinstance(v, int | float) and not isinstance(v, bool),
                     "a number", float)
    # TOML has inf and nan: a nan timeout compares false with everything and never fires
    conv.register_structure_hook(
        float, lambda v, t: _scalar(math.isfinite, "a finite number", float)(number(v, t), t))
    conv.register_structure_hook(str, _scalar(lambda v: isinstance(v, str), "a string", str))

    def tables(cls: Any) -> Callable[[Any, Any], Any]:
        build = make_dict_structure_fn(cls, conv)

        def structure(value: Any, _type: Any) -> Any:
            if not isinstance(value, dict):
                raise _Invalid("expected a table")
            return build(value, cls)

        return structure

    def lists(cls: Any) -> Callable[[Any, Any], Any]:
        build = list_structure_factory(cls, conv)

        def structure(value: Any, _type: Any) -> Any:
            if not isinstance(value, list):
                raise _Invalid("expected a list")
            return build(value, cls)

        return structure

    conv.register_structure_hook_factory(dataclasses.is_dataclass, tables)
    conv.register_structure_hook_factory(lambda t: getattr(t, "__origin__", None) is list, lists)
    return conv


KeyPath = tuple[str | int, ...]
"""Where a value is: table keys and list indexes, e.g. ``("clinics", 0, "rooms", 1, "id")``."""


def _problems(exc: BaseException, path: KeyPath) -> list[tuple[KeyPath, str]]:
    """Each leaf of cattrs' exception tree: where the offending value is, and what is wrong.

    A missing required key is reported at its own path but leaves out the table holding it.
    """
    if isinstance(exc, ForbiddenExtraKeysError):
        return [((*path, name), "unknown key") for name in sorted(exc.extra_fields)]
    if isinstance(exc, ClassValidationError | IterableValidationError):
        found: list[tuple[KeyPath, str]] = []
        for sub in exc.exceptions:
            where = path
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, AttributeValidationNote):
                    where = (*path, note.name)
                    break
                if isinstance(note, IterableValidationNote):
                    where = (*path, note.index)
                    break
            found.extend(_problems(sub, where))
        return found
    if isinstance(exc, KeyError):
        return [(path, "required")]
    return [(path, str(exc))]


def _key(path: KeyPath) -> str:
    """``("clinics", 0, "rooms", 1, "id")`` -> ``clinics[0].rooms[1].id``."""
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else part
    return key


_DROP = object()


def _without(raw: Any, found: list[tuple[KeyPath, str]]) -> Any:
    """A copy of ``raw`` without the values ``found`` wrong: a missing key leaves out the table
    that lacks it, anything wrong inside a list the whole list (so no item changes its index)."""
    drop: set[KeyPath] = set()
    for path, message in found:
        if message == "required":
            path = path[:-1]
        index = next((i for i, part in enumerate(path) if isinstance(part, int)), len(path))
        drop.add(path[:index])

    def walk(value: Any, here: KeyPath) -> Any:
        if here in drop:
            return _DROP
        if isinstance(value, dict):
            items = ((k, walk(v, (*here, k))) for k, v in value.items())
            return {k: v for k, v in items if v is not _DROP}
        return value

    return walk(raw, ())


# -- semantic checks --------------------------------------------------------------------------





def _check_secret(key: str, secret: str, problems: list[str]) -> None:
    """A shared secret anyone may test guesses against offline: long, and not the example's."""
    if secret.lower().startswith(PLACEHOLDER_SECRETS):
        problems.append(f"{key}: the example's placeholder; generate one, e.g. "
                        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    elif len(secret) < MIN_SECRET_CHARS:
        problems.append(f"{key}: too short, use at least {MIN_SECRET_CHARS} characters "
                        "(32 random bytes, e.g. secrets.token_urlsafe(32))")


# A TURN credential's validity: at least a minute (clocks of the two hosts differ a little), at
# most a day (what a leaked one is worth).
TURN_TTL_RANGE = (60, 86400)


def _check_ice_server(key: str, server: IceServer, problems: list[str]) -> None:
    for url in server.urls:
        if not re.match(r"^(stun|stuns|turn|turns):", url):
            problems.append(f"{key}.urls: not a stun:/turn: URL: {url!r}")
    lo, hi = TURN_TTL_RANGE
    if not lo <= server.credential_ttl <= hi:
        problems.append(f"{key}.credential_ttl: must be {lo}-{hi} seconds, "
                        f"got {server.credential_ttl}")
    if not server.auth_secret:
        return
    # a participant's TURN credential is an HMAC of this secret over a username it sees
    _check_secret(f"{key}.auth_secret", server.auth_secret, problems)
    if server.username or server.credential:
        problems.append(f"{key}: auth_secret and username/credential exclude each other "
                        "(with auth_secret each participant gets its own credential)")
    if not any(re.match(r"^turns?:", url) for url in server.urls):
        problems.append(f"{key}.auth_secret: only TURN servers take credentials; no turn: URL")


def config_warnings(cfg: Config) -> list[str]:
    """What is valid but unwise: ``sfu check-config`` prints it and ``sfu serve`` logs it."""
    warnings = []
    for i, server in enumerate(cfg.media.ice_servers):
        if server.username and any(re.match(r"^turns?:", url) for url in server.urls):
            warnings.append(f"media.ice_servers[{i}]: a static TURN username/credential is "
                            "handed to every participant; use auth_secret (coturn's "
                            "static-auth-secret) for per-participant, expiring credentials")
    return warnings


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
    else:
        _check_secret("auth.secret", cfg.auth.secret, problems)
    if not 2 <= cfg.limits.max_participants <= 16:
        problems.append(f"limits.max_participants: must be 2-16, got {cfg.limits.max_participants}")
    positive("server.max_message_bytes", cfg.server.max_message_bytes)
    positive("server.drain_timeout", cfg.server.drain_timeout)
    positive("server.keepalive_timeout", cfg.server.keepalive_timeout)
    for key in ("media_per_token", "media_per_address", "media_total", "precall_total",
                "sockets_per_address", "sockets_total", "unconnected_spaces_total"):
        positive(f"limits.{key}", getattr(cfg.limits, key))
    if not 32 <= cfg.limits.ipv6_prefix <= 128:
        problems.append(f"limits.ipv6_prefix: must be 32-128, got {cfg.limits.ipv6_prefix}")
    for i, proxy in enumerate(cfg.server.trusted_proxies):
        try:
            parse_networks([proxy])
        except ValueError:
            problems.append(f"server.trusted_proxies[{i}]: not an address or network: {proxy!r}")
    if cfg.server.forwarded_header not in FORWARDED_HEADERS:
        problems.append(f"server.forwarded_header: one of {', '.join(FORWARDED_HEADERS)}, "
                        f"got {cfg.server.forwarded_header!r}")
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
        _check_ice_server(f"media.ice_servers[{i}]", server, problems)
    if cfg.bandwidth.block_kbps > cfg.bandwidth.warn_kbps:
        problems.append("bandwidth.block_kbps: must not exceed bandwidth.warn_kbps")
    if cfg.bandwidth.warn_kbps > cfg.bandwidth.good_kbps:
        problems.append("bandwidth.warn_kbps: must not exceed bandwidth.good_kbps")
    if cfg.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"logging.level: one of DEBUG, INFO, WARNING, ERROR, got {cfg.logging.level!r}")
    if cfg.logging.format not in ("text", "json"):
        problems.append(f"logging.format: 'text' or 'json', got {cfg.logging.format!r}")
    for i, origin in enumerate(cfg.server.embed_origins):
        problem = embed_origin_problem(origin)
        if problem:
            problems.append(f"server.embed_origins[{i}]: {problem}: {origin!r}")
    for i, url in enumerate(cfg.webhooks.urls):
        if not re.match(r"^https?://", url):
            problems.append(f"webhooks.urls[{i}]: not an http(s) URL: {url!r}")
    if cfg.webhooks.urls and not cfg.webhooks.secret:
        problems.append("webhooks.secret: required when webhooks.urls is set")
    if cfg.cluster is not None:
        _check_cluster(cfg.cluster, problems)
    seen: set[str] = set()
    for i, clinic in enumerate(cfg.clinics):
        if not valid_id(clinic.id):
            problems.append(f"clinics[{i}].id: letters, digits, '-' and '_' only: {clinic.id!r}")
        if clinic.id in seen:
            problems.append(f"clinics[{i}].id: duplicate clinic id {clinic.id!r}")
        seen.add(clinic.id)
        rooms: set[str] = set()
        for j, room in enumerate(clinic.rooms):
            if not valid_id(room.id):
                problems.append(f"clinics[{i}].rooms[{j}].id: letters, digits, '-' and '_' only: {room.id!r}")
            if room.id in rooms:
                problems.append(f"clinics[{i}].rooms[{j}].id: duplicate room id {room.id!r}")
            rooms.add(room.id)



def _check_cluster(cluster: ClusterSettings, problems: list[str]) -> None:
    if not re.match(r"^(redis|rediss|unix)://", cluster.redis_url):
        problems.append(f"cluster.redis_url: a redis://, rediss:// or unix:// URL, got {cluster.redis_url!r}")
    if cluster.node_id and not valid_id(cluster.node_id):
        problems.append(f"cluster.node_id: letters, digits, '-' and '_' only: {cluster.node_id!r}")
    if cluster.advertise_url and not re.match(r"^https?://[^/]+/?$", cluster.advertise_url):
        problems.append("cluster.advertise_url: http(s)://host[:port] with no path, "
                        f"got {cluster.advertise_url!r}")
    if not 0.1 <= cluster.heartbeat <= 60:
        problems.append(f"cluster.heartbeat: 0.1-60 seconds, got {cluster.heartbeat}")
    if not 0 <= cluster.shared_port <= 65535:
        problems.append(f"cluster.shared_port: must be 0-65535, got {cluster.shared_port}")
    if not valid_id(cluster.key_prefix):
        problems.append(f"cluster.key_prefix: letters, digits, '-' and '_' only: {cluster.key_prefix!r}")


def cluster_problems(cluster: ClusterSettings) -> list[str]:
    """What is wrong with a ``[cluster]`` section made or changed outside the file (``sfu serve``'s
    per-worker flags)."""
    problems: list[str] = []
    _check_cluster(cluster, problems)
    return problems
