"""The loader: TOML tables become the components' settings types, and every problem is named."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.errors import ConfigError
from sfu.rooms.settings import ClinicSettings, RoomSettings
from sfu.service.config import Config, config_from_dict, default_config, load_config
from sfu.transport.settings import IceServer, MediaSettings

SECRET = {"auth": {"secret": "a-secret-of-at-least-32-characters"}}


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict({**SECRET, **raw}, environ={})
    return info.value.problems


def test_sections_become_the_components_settings_types() -> None:
    cfg = config_from_dict({
        **SECRET,
        "media": {"udp_ports": "40000-40099", "ice_servers": [{"urls": ["stun:stun.example"]}]},
        "clinics": [{"id": "c1", "name": "Clinic one", "rooms": [{"id": "team", "name": "Team"}]}],
    }, environ={})
    assert isinstance(cfg.media, MediaSettings) and cfg.media.udp_ports == "40000-40099"
    assert cfg.media.ice_servers == [IceServer(urls=["stun:stun.example"])]
    assert cfg.clinics == [ClinicSettings("c1", "Clinic one", rooms=[RoomSettings("team", "Team")])]
    assert cfg.server == Config().server  # absent sections take their defaults


def test_an_int_is_a_number_but_a_bool_is_not_an_int() -> None:
    cfg = config_from_dict({**SECRET, "bandwidth": {"probe_seconds": 3}}, environ={})
    assert cfg.bandwidth.probe_seconds == 3.0 and isinstance(cfg.bandwidth.probe_seconds, float)
    assert problems({"server": {"port": True}}) == ["server.port: expected an integer, got True"]
    assert problems({"server": {"drain_timeout": False}}) == [
        "server.drain_timeout: expected a number, got False"]
    assert problems({"bandwidth": {"audio_only_acceptable": 1}}) == [
        "bandwidth.audio_only_acceptable: expected true or false, got 1"]


def test_an_unknown_key_is_named_at_any_depth() -> None:
    assert problems({"colour": "blue"}) == ["colour: unknown key"]
    assert problems({"server": {"colour": "blue"}}) == ["server.colour: unknown key"]
    assert problems({"media": {"ice_servers": [{"urls": ["stun:x"], "user": "u"}]}}) == [
        "media.ice_servers[0].user: unknown key"]


def test_a_wrong_type_is_named_with_its_dotted_key() -> None:
    assert problems({"server": {"port": "eighty"}}) == [
        "server.port: expected an integer, got 'eighty'"]
    assert problems({"media": {"ice_addresses": "127.0.0.1"}}) == [
        "media.ice_addresses: expected a list"]
    assert problems({"server": 5}) == ["server: expected a table"]


def test_list_items_are_named_by_index() -> None:
    found = problems({"clinics": [
        {"id": "c1", "name": "One", "rooms": [{"name": "no id"}, {"id": 5, "name": "Five"}]},
        {"name": "no id either"},
    ]})
    assert found == [
        "clinics[0].rooms[0].id: required",
        "clinics[0].rooms[1].id: expected a string, got 5",
        "clinics[1].id: required",
    ]


def test_semantic_checks_name_list_items_too() -> None:
    found = problems({"clinics": [{"id": "c1", "name": "One", "rooms": [
        {"id": "team", "name": "Team"}, {"id": "bad id", "name": "Bad"}]}]})
    assert found == ["clinics[0].rooms[1].id: letters, digits, '-' and '_' only: 'bad id'"]


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({
            "server": {"port": "eighty", "colour": "blue"},
            "limits": {"max_participants": 99},
            "auth": {"secret": "short"},
            "media": {"udp_ports": "9-1", "packet_cache_size": 1.5},
        }, environ={})
    assert info.value.problems == [
        "server.port: expected an integer, got 'eighty'",
        "server.colour: unknown key",
        "media.packet_cache_size: expected an integer, got 1.5",
        # the semantic checks still run on what was well typed
        "auth.secret: too short, use at least 32 characters (32 random bytes, e.g. secrets.token_urlsafe(32))",
        "limits.max_participants: must be 2-16, got 99",
        "media.udp_ports: expected 'LOW-HIGH' or 'PORT', got '9-1'",
    ]


def test_the_environment_secret_overrides_the_file(tmp_path: Any) -> None:
    path = tmp_path / "sfu.toml"
    path.write_text('[auth]\nsecret = "short"\n')
    env_secret = "from-the-environment-0123456789abcdef"
    assert load_config(path, environ={"SFU_AUTH_SECRET": env_secret}).auth.secret == env_secret
    with pytest.raises(ConfigError, match="auth.secret: too short"):
        load_config(path, environ={})


def test_the_embedded_default_is_valid() -> None:
    cfg = default_config()
    assert config_from_dict({"auth": {"secret": cfg.auth.secret}, "clinics": [
        {"id": c.id, "name": c.name, "rooms": [{"id": r.id, "name": r.name} for r in c.rooms]}
        for c in cfg.clinics]}, environ={}) == cfg


def test_a_bad_list_item_does_not_hide_the_semantic_problems() -> None:
    found = problems({
        "clinics": [{"id": "c1", "name": "One", "rooms": [{"id": 7, "name": "Seven"}]}],
        "limits": {"max_participants": 1},
    })
    assert found == [
        "clinics[0].rooms[0].id: expected a string, got 7",
        "limits.max_participants: must be 2-16, got 1",
    ]


@pytest.mark.parametrize("secret", ["change-me", "change-me-to-a-long-random-string", "CHANGEME" * 5])
def test_a_placeholder_secret_is_refused(secret: str) -> None:
    with pytest.raises(ConfigError, match="auth.secret: the example's placeholder"):
        config_from_dict({"auth": {"secret": secret}}, environ={})


def test_a_secret_under_32_characters_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 characters"):
        config_from_dict({"auth": {"secret": "x" * 31}}, environ={})
    assert config_from_dict({"auth": {"secret": "x" * 32}}, environ={}).auth.secret == "x" * 32


def test_embedding_origins_are_exact_origins() -> None:
    listed = ["https://portal.clinic.example", "https://portal.clinic.example:8443",
              "http://localhost:3000", "http://127.0.0.1:3000"]
    assert config_from_dict({**SECRET, "server": {"embed_origins": listed}},
                            environ={}).server.embed_origins == listed
    assert Config().server.embed_origins == []
    found = problems({"server": {"embed_origins": [
        "https://portal.example/", "https://*.clinic.example", "http://portal.example",
        "HTTPS://Portal.example", "https://portal.example; script-src 'unsafe-inline'", "'self'",
        "https://[::1]:8443", "https://portal.example:0", "https://user@portal.example"]}})
    assert found == [
        "server.embed_origins[0]: an origin has no path, query or fragment: "
        "https://portal.example: 'https://portal.example/'",
        "server.embed_origins[1]: no wildcards: list each portal origin (a wildcard would let "
        "any of its hosts frame the call): 'https://*.clinic.example'",
        "server.embed_origins[2]: https required (browsers give camera and microphone only to "
        "secure pages; plain http only for localhost and 127.0.0.1): 'http://portal.example'",
        *[f"server.embed_origins[{i}]: expected an origin, scheme://host[:port] in lower case, "
          f"e.g. 'https://portal.clinic.example': {value!r}" for i, value in (
              (3, "HTTPS://Portal.example"), (4, "https://portal.example; script-src 'unsafe-inline'"),
              (5, "'self'"))],
        "server.embed_origins[6]: an IPv6 address cannot be named in a Content-Security-Policy: "
        "use a host name: 'https://[::1]:8443'",
        *[f"server.embed_origins[{i}]: expected an origin, scheme://host[:port] in lower case, "
          f"e.g. 'https://portal.clinic.example': {value!r}" for i, value in (
              (7, "https://portal.example:0"), (8, "https://user@portal.example"))],
    ]
    assert problems({"server": {"embed_origins": "https://portal.example"}}) == [
        "server.embed_origins: expected a list"]


def test_client_address_and_budget_settings_are_checked() -> None:
    found = problems({
        "server": {"trusted_proxies": ["10.0.0.0/8", "proxy.example", "::1"],
                   "forwarded_header": "X-Real-IP"},
        "limits": {"ipv6_prefix": 129, "media_total": 0, "sockets_per_address": -1,
                   "media_per_token": 0},
    })
    assert "server.trusted_proxies[1]: not an address or network: 'proxy.example'" in found
    assert ("server.forwarded_header: one of X-Forwarded-For, Forwarded, got 'X-Real-IP'"
            in found)
    assert "limits.ipv6_prefix: must be 32-128, got 129" in found
    assert "limits.media_total: must be greater than 0, got 0" in found
    assert "limits.sockets_per_address: must be greater than 0, got -1" in found
    assert "limits.media_per_token: must be greater than 0, got 0" in found
    assert len(found) == 6, found
    ok = config_from_dict({"auth": {"secret": "s" * 32},
                           "server": {"trusted_proxies": ["10.0.0.0/8", "::1"],
                                      "forwarded_header": "Forwarded"}})
    assert ok.server.trusted_proxies == ["10.0.0.0/8", "::1"]
