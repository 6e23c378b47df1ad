"""`sfu serve | token | check-config` as an ops engineer uses them (real processes)."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jwt
import pytest

from sfu.service.config import default_config, load_config

ROOT = Path(__file__).resolve().parents[1]


def sfu(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfu.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, cwd=ROOT)


def test_the_example_config_is_valid_and_check_config_lists_every_problem(tmp_path):
    # the example's placeholder secret is refused; with a real one (the environment's, as the
    # example says to keep it) the example is valid
    placeholder = sfu("check-config", str(ROOT / "config/sfu.example.toml"))
    assert placeholder.returncode == 1 and "placeholder" in placeholder.stderr
    assert "media.ice_servers[0].auth_secret: the example's placeholder" in placeholder.stderr
    assert sfu("check-config", str(ROOT / "config/sfu.example.toml"),
               env={"SFU_AUTH_SECRET": "x" * 43, "SFU_TURN_SECRET": "y" * 43}).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "eighty"\ncolour = "blue"\n[limits]\nmax_participants = 99\n'
                   '[auth]\nsecret = "short"\n[media]\nudp_ports = "9-1"\n')
    result = sfu("check-config", str(bad))
    assert result.returncode == 1
    for expected in ("server.port", "server.colour: unknown key", "limits.max_participants",
                     "auth.secret", "media.udp_ports"):
        assert expected in result.stderr, result.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    result = sfu("check-config", str(broken))
    assert result.returncode == 1 and "not valid TOML" in result.stderr


def test_token_from_a_config_file_and_from_the_environment(tmp_path):
    config = tmp_path / "sfu.toml"
    config.write_text('[auth]\nsecret = "a-secret-of-at-least-32-characters!"\n')
    result = sfu("token", "--secret-from-config", "--config", str(config), "--role", "staff",
                 "--clinic", "c1", "--sub", "dr-lee", "--name", "Dr Lee", "--ttl", "3600")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), load_config(config).auth.secret, algorithms=["HS256"])
    assert claims["sub"] == "dr-lee" and claims["role"] == "staff" and claims["clinic"] == "c1"
    assert claims["name"] == "Dr Lee" and claims["exp"] - claims["iat"] == 3600
    env_secret = "environment-secret-0123456789abcdef"
    result = sfu("token", "--secret-from-config", "--config", str(config), "--role", "admin",
                 "--clinic", "*", "--sub", "portal", env={"SFU_AUTH_SECRET": env_secret})
    assert jwt.decode(result.stdout.strip(), env_secret, algorithms=["HS256"])["clinic"] == "*"


def test_serve_on_the_embedded_default_prints_a_secret_that_token_can_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("SFU_AUTH_SECRET", None)
    proc = subprocess.Popen([sys.executable, "-m", "sfu.cli", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        printed = re.search(r"secret for this run: (\S+)", "".join(lines))
        assert printed, lines
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        assert body == b'{"status": "ok"}' or b'"ok"' in body
        token = subprocess.run([sys.executable, "-m", "sfu.cli", "token", "--secret-from-config",
                                "--role", "staff", "--clinic", "demo", "--sub", "x"],
                               capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
        jwt.decode(token.stdout.strip(), printed.group(1), algorithms=["HS256"])
        clinic = urllib.request.Request(f"http://127.0.0.1:{port}/v1/clinics/demo",
                                        headers={"Authorization": f"Bearer {token.stdout.strip()}"})
        assert b'"team"' in urllib.request.urlopen(clinic, timeout=5).read()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_the_embedded_default_has_the_demo_clinic_and_a_fresh_secret():
    a, b = default_config(), default_config()
    assert a.server.host == "127.0.0.1" and a.server.port == 8080
    assert [c.id for c in a.clinics] == ["demo"] and [r.id for r in a.clinics[0].rooms] == ["team"]
    assert a.auth.secret != b.auth.secret and len(a.auth.secret) >= 32


# -- the embedded default's secret file ------------------------------------------------------


def test_serve_refuses_a_secret_directory_others_can_write(tmp_path):
    """The directory was reused whatever its owner or mode: whoever could write in it could
    replace the file (a symlink to somewhere they read) and learn the secret."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(shared)}
    env.pop("SFU_AUTH_SECRET", None)
    proc = subprocess.Popen([sys.executable, "-m", "sfu.cli", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    try:
        assert proc.wait(timeout=20) == 1
        err = proc.stderr.read()  # type: ignore[union-attr]
        assert "refusing to start" in err and "mode 777" in err, err
        assert not (shared / "sfu-default-secret").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_token_does_not_sign_with_a_secret_planted_where_others_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "sfu-default-secret").write_text("planted-secret-0123456789abcdef-0123")
    shared.chmod(0o777)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(shared)}
    env.pop("SFU_AUTH_SECRET", None)
    result = subprocess.run([sys.executable, "-m", "sfu.cli", "token", "--role", "staff",
                             "--clinic", "demo", "--sub", "x"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=30)
    assert result.returncode == 1 and "not private" in result.stderr, result
    assert not result.stdout.strip()


def test_the_secret_file_is_private_and_only_a_private_one_is_used(tmp_path, monkeypatch):
    from sfu.cli import default_secret_file, read_default_secret, save_default_secret
    from sfu.errors import UnsafeSecretFile

    fresh = tmp_path / "run" / "user"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(fresh))
    save_default_secret("s" * 43)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert stat.S_IMODE(default_secret_file().stat().st_mode) == 0o600
    assert read_default_secret() == "s" * 43

    default_secret_file().chmod(0o644)  # readable by others: not used, not rewritten
    with pytest.raises(UnsafeSecretFile, match="mode 644"):
        read_default_secret()
    with pytest.raises(UnsafeSecretFile, match="mode 644"):
        save_default_secret("t" * 43)

    default_secret_file().unlink()  # a symlink where the file goes: never followed
    target = tmp_path / "elsewhere"
    target.write_text("")
    default_secret_file().symlink_to(target)
    with pytest.raises(UnsafeSecretFile, match="not a file"):
        save_default_secret("t" * 43)
    assert target.read_text() == ""

    if os.getuid() != 0:
        return  # making a directory another user's needs root
    theirs = tmp_path / "theirs"  # another user's directory, however private
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(theirs))
    with pytest.raises(UnsafeSecretFile, match="belongs to user id 65534"):
        save_default_secret("t" * 43)
