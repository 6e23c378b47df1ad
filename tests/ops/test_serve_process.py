"""``sfu serve`` as a real process: SIGTERM drains, tells participants, exits 0 in time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp

from sfu.auth import mint_token
from sfu.client.client import Client

from .conftest import eventually, free_port

SECRET = "process-secret-0123456789abcdef-0123"
HOOK_SECRET = "process-hook-secret-0123"
DRAIN_TIMEOUT = 3.0
ROOT = Path(__file__).resolve().parents[2]

CONFIG = f"""
[server]
host = "127.0.0.1"
drain_timeout = {DRAIN_TIMEOUT}
[auth]
secret = "{SECRET}"
[logging]
format = "json"
[media]
udp_ports = "41100-41149"
[webhooks]
urls = ["{{hook}}"]
secret = "{HOOK_SECRET}"
[[clinics]]
id = "demo"
name = "Demo clinic"
  [[clinics.rooms]]
  id = "team"
  name = "Team room"
"""


async def readyz_ok(http: aiohttp.ClientSession, url: str,
                   proc: asyncio.subprocess.Process) -> bool:
    assert proc.returncode is None, "the server exited at start"
    try:
        async with http.get(f"{url}/readyz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def publishing(http: aiohttp.ClientSession, url: str) -> bool:
    """The server receives the client's video (so the client is connected)."""
    async with http.get(f"{url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith('sfu_rtp_packets_received_total{kind="video"}'):
                return float(line.split()[-1]) > 0
    return False


async def test_sigterm_tells_participants_and_exits_0_within_the_drain_timeout(tmp_path: Path,
                                                                                clip,
                                                                                receivers) -> None:
    rx = await receivers()
    config = tmp_path / "sfu.toml"
    config.write_text(CONFIG.replace("{hook}", rx.url))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SFU_AUTH_SECRET"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sfu.cli", "serve", "--config", str(config), "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    client = Client(url, mint_token(SECRET, sub="dr-a", role="staff", clinic="demo", ttl=60),
                    clip=clip)
    http = aiohttp.ClientSession()
    try:
        await eventually(lambda: readyz_ok(http, url, proc), within=15)
        await client.join({"room": "team"})
        offer = await client.wait_message(lambda m: m["type"] == "offer")
        ports = [int(line.split()[5]) for line in offer["sdp"].splitlines()
                 if line.startswith("a=candidate:")]
        assert ports and all(41100 <= p <= 41149 for p in ports), ports
        await eventually(lambda: publishing(http, url))
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        ended = await client.wait_message(lambda m: m["type"] == "ended", timeout=DRAIN_TIMEOUT)
        assert ended == {"type": "ended", "reason": "server_shutdown"}
        code = await asyncio.wait_for(proc.wait(), DRAIN_TIMEOUT + 2)
        assert code == 0
        assert time.monotonic() - sent < DRAIN_TIMEOUT + 1
    finally:
        await client.close()
        await http.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # the drain's webhooks were flushed before exit, signed
    left = [e for e in rx.events("participant.left") if e["data"]["participant"] == client.participant]
    assert left and left[0]["data"]["reason"] == "server_shutdown"
    assert rx.events("participant.joined") and all(r.verifies(HOOK_SECRET) for r in rx.requests)
    _, stderr = await proc.communicate()
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert lines, stderr.decode()
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    assert any("draining" in entry["message"] for entry in lines)
