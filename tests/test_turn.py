"""Per-participant TURN credentials (coturn's use-auth-secret): minting, config, what `joined` says.

The end-to-end check against a real coturn, through a relay, is tests/netns/test_turn_relay.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from sfu.errors import ConfigError
from sfu.service.config import config_from_dict, config_warnings
from sfu.service.turn import ice_servers_json, turn_credential
from sfu.transport.settings import IceServer

AUTH = {"auth": {"secret": "a-secret-of-at-least-32-characters"}}
TURN_SECRET = "north-clinic-turn-secret-0123456789abcdef"
TURN_URLS = ["turn:turn.clinic.example:3478?transport=udp"]


def config(**server: Any) -> Any:
    return config_from_dict({**AUTH, "media": {"ice_servers": [{"urls": TURN_URLS, **server}]}},
                            environ={})


def problems(**server: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(**server)
    return info.value.problems


def test_the_credential_is_base64_of_hmac_sha1_of_the_username_known_answer() -> None:
    # computed with OpenSSL, not Python:
    #   printf '%s' '1700000000:p_0123456789abcdef' \
    #     | openssl dgst -sha1 -hmac 'north-clinic-turn-secret-0123456789abcdef' -binary | base64
    assert turn_credential(TURN_SECRET, "p_0123456789abcdef", 1700000000) == (
        "1700000000:p_0123456789abcdef", "EVFUyeHxUZcMToymBOA+YBg6z9Y=")


def test_joined_carries_a_fresh_credential_of_its_own_participant_and_expiry() -> None:
    servers = [IceServer(urls=["stun:stun.clinic.example"]),
               IceServer(urls=TURN_URLS, auth_secret=TURN_SECRET, credential_ttl=600)]
    stun, turn = ice_servers_json(servers, "p_aaaa", now=1700000000.7)
    assert stun == {"urls": ["stun:stun.clinic.example"]}
    assert turn == {"urls": TURN_URLS, "username": "1700000600:p_aaaa",
                    "credential": turn_credential(TURN_SECRET, "p_aaaa", 1700000600)[1]}
    (other,) = ice_servers_json(servers[1:], "p_bbbb", now=1700000000.7)
    assert other["username"] == "1700000600:p_bbbb" and other["credential"] != turn["credential"]
    (later,) = ice_servers_json(servers[1:], "p_aaaa", now=1700003600.0)
    assert later["username"] == "1700004200:p_aaaa"


def test_static_credentials_are_still_handed_out_as_configured_and_warned_about() -> None:
    cfg = config(username="clinic", credential="a-shared-turn-password")
    assert ice_servers_json(cfg.media.ice_servers, "p_aaaa", now=0) == [
        {"urls": TURN_URLS, "username": "clinic", "credential": "a-shared-turn-password"}]
    (warning,) = config_warnings(cfg)
    assert warning.startswith("media.ice_servers[0]: a static TURN username/credential is "
                              "handed to every participant")
    assert config_warnings(config(auth_secret=TURN_SECRET)) == []


def test_the_ttl_defaults_to_an_hour() -> None:
    (server,) = config(auth_secret=TURN_SECRET).media.ice_servers
    assert server.credential_ttl == 3600


@pytest.mark.parametrize(("server", "expected"), [
    ({"auth_secret": "x" * 31}, "media.ice_servers[0].auth_secret: too short, use at least 32"),
    ({"auth_secret": "change-me-to-the-turn-servers-static-auth-secret"},
     "media.ice_servers[0].auth_secret: the example's placeholder"),
    ({"auth_secret": TURN_SECRET, "username": "u", "credential": "p"},
     "media.ice_servers[0]: auth_secret and username/credential exclude each other"),
    ({"auth_secret": TURN_SECRET, "urls": ["stun:stun.clinic.example"]},
     "media.ice_servers[0].auth_secret: only TURN servers take credentials"),
    ({"auth_secret": TURN_SECRET, "credential_ttl": 59},
     "media.ice_servers[0].credential_ttl: must be 60-86400 seconds, got 59"),
    ({"auth_secret": TURN_SECRET, "credential_ttl": 86401},
     "media.ice_servers[0].credential_ttl: must be 60-86400 seconds, got 86401"),
])
def test_a_bad_turn_secret_or_ttl_is_refused_with_its_key(server: dict[str, Any],
                                                          expected: str) -> None:
    (problem,) = problems(**server)
    assert problem.startswith(expected), problem


def test_the_environment_replaces_the_files_turn_secret_placeholder() -> None:
    raw = {**AUTH, "media": {"ice_servers": [
        {"urls": TURN_URLS, "auth_secret": "change-me-to-the-turn-servers-static-auth-secret"},
        {"urls": ["stun:stun.clinic.example"]}]}}
    cfg = config_from_dict(raw, environ={"SFU_TURN_SECRET": TURN_SECRET})
    assert [s.auth_secret for s in cfg.media.ice_servers] == [TURN_SECRET, ""]


def test_secrets_are_left_out_of_the_settings_repr() -> None:
    server = IceServer(urls=TURN_URLS, auth_secret=TURN_SECRET)
    static = IceServer(urls=TURN_URLS, username="u", credential="a-shared-turn-password")
    assert TURN_SECRET not in repr(server) and "a-shared-turn-password" not in repr(static)
    assert TURN_SECRET not in repr(config(auth_secret=TURN_SECRET))


def test_check_config_warns_about_static_turn_credentials_but_accepts_them(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from sfu.cli import main

    path = tmp_path / "sfu.toml"
    path.write_text(f'[auth]\nsecret = "{AUTH["auth"]["secret"]}"\n[[media.ice_servers]]\n'
                    f'urls = {TURN_URLS!r}\nusername = "clinic"\ncredential = "shared"\n'.replace(
                        "'", '"'))
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: media.ice_servers[0]: a static TURN username/credential" in err, err
