"""Real parts for cluster tests: a redis-server of the test's own and node processes
(``sfu serve`` with a ``[cluster]`` section) on loopback."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SECRET

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A redis-server of this test's own (no persistence); its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: `make test` installs it (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, 10, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(f"[{self.name}] {line}" for line in text[-lines:])


def node_config(redis_url: str, node_id: str, prefix: str = "sfu", heartbeat: float = 0.3,
                **media: object) -> Any:
    """The tests' config (``make_config``) of an in-process cluster node."""
    from sfu.cluster import ClusterSettings
    from tests.conftest import make_config

    cfg = make_config(media={"inactivity_timeout": 5.0, **media})
    return dataclasses.replace(cfg, cluster=ClusterSettings(
        redis_url=redis_url, node_id=node_id, heartbeat=heartbeat, key_prefix=prefix))


def start_node(name: str, redis_url: str, directory: Path, *, heartbeat: float = 0.5,
               extra: str = "") -> Node:
    port = free_port()
    config = directory / f"{name}.toml"
    config.write_text(f"""
[server]
host = "127.0.0.1"
port = {port}
drain_timeout = 3.0
[auth]
secret = "{SECRET}"
[media]
inactivity_timeout = 5.0
[cluster]
redis_url = "{redis_url}"
node_id = "{name}"
heartbeat = {heartbeat}
{extra}
[[clinics]]
id = "demo"
name = "Demo clinic"
  [[clinics.rooms]]
  id = "team"
  name = "Team room"
""")
    log = directory / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sfu.cli", "serve", "--config", str(config)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))
    try:
        _wait_port(port, 20, proc)
    except AssertionError:
        proc.kill()
        raise AssertionError(log.read_text(errors="replace")[-2000:]) from None
    return Node(name, port, proc, log)


def stop_node(node: Node, timeout: float = 10.0) -> int | None:
    """SIGTERM (drain) and wait; SIGKILL if it hangs. The exit code (None if killed here)."""
    if node.proc.poll() is not None:
        return node.proc.returncode
    node.proc.send_signal(signal.SIGTERM)
    try:
        return node.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        node.proc.kill()
        node.proc.wait(5)
        return None
