"""TURN without shared passwords, against a real coturn: media through the relay both ways.

Topology (bench/netns.py's lab): the server and coturn both bind the lab's server address in the
root namespace; coturn is configured as docs/operations.md tells operators (``use-auth-secret``,
``static-auth-secret``, relaying to the SFU's address only). One participant runs as
``python -m sfu.client.run`` in a network namespace whose firewall (iptables, inside the
namespace) drops every UDP datagram to the server address except to coturn's port: it can reach
the server's HTTP/WebSocket port and coturn, not the server's media ports. The other participant
runs in this process, on the host. The server is configured with the TURN server's
``auth_secret`` and hands each participant its own credential in ``joined``.

1. The namespaced participant's selected candidate pair is its relayed candidate (and, seen from
   the server, the pair's remote address is coturn's allocation); its direct attempts hit the
   firewall; each participant receives the other's audio and video.
2. coturn refuses an allocation (401) to an expired credential and to one made with another
   secret, so a client given one gathers no relayed candidate; a fresh one is granted (coturn
   agrees with our minting; the known-answer vector is in tests/test_turn.py).

Needs root, network namespaces, ``turnserver`` (Debian's coturn) and ``iptables``: ``make
test`` installs them when missing; otherwise skipped with the reason. About 15 s.
Figures (``-s``): ``turn-relay:`` lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aioice import stun, turn
from aioice.ice import Connection

from bench import netns
from sfu.auth import mint_token
from sfu.client.client import Client
from sfu.client.media import ClipParams, load_clip
from sfu.service.turn import turn_credential
from sfu.transport import aiortc_glue as glue
from sfu.transport.settings import IceServer
from tests.conftest import SECRET, make_config
from tests.integration.helpers import close_all, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

TURN_SECRET = "coturn-static-auth-secret-for-the-relay-test-0123"
REALM = "sfu.test"
CLIP_SECONDS = 5.0
AUDIO_PACKETS = 100  # Opus: 50 packets/s, so 2 s of audio
VIDEO_FRAMES = 20


def coturn_config(directory: Path, address: str, port: int, relay_ports: tuple[int, int]) -> Path:
    """A turnserver.conf for the test: the lines docs/operations.md gives, plus a foreground run
    whose only files are in ``directory``."""
    lo, hi = relay_ports
    path = directory / "turnserver.conf"
    path.write_text("\n".join([
        # -- as docs/operations.md ("TURN and ICE servers")
        "use-auth-secret",
        f"static-auth-secret={TURN_SECRET}",
        f"realm={REALM}",
        "fingerprint",
        "no-multicast-peers",
        "denied-peer-ip=0.0.0.0-255.255.255.255",
        f"allowed-peer-ip={address}",
        # -- this test's: one address, UDP only, nothing outside the temp directory
        f"listening-ip={address}", f"listening-port={port}", f"relay-ip={address}",
        f"min-port={lo}", f"max-port={hi}",
        "no-tcp", "no-tls", "no-dtls", "no-tcp-relay", "no-cli",
        f"log-file={directory / 'turnserver.log'}", "simple-log", "no-stdout-log",
        f"pidfile={directory / 'turnserver.pid'}", f"userdb={directory / 'turndb'}",
    ]) + "\n")
    return path


def free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def stun_answers(address: str, port: int) -> bool:
    """Whether a STUN binding request to address:port is answered within 0.2 s."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(bytes(request), (address, port))
        try:
            return len(sock.recv(2048)) >= 20
        except TimeoutError:
            return False


class _Relayed(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def allocate(address: str, port: int, username: str, password: str) -> int | None:
    """Ask coturn for an allocation: None when granted (then released), else the error code."""
    try:
        transport, protocol = await turn.create_turn_endpoint(
            _Relayed, server_addr=(address, port), username=username, password=password)
    except stun.TransactionFailed as exc:
        return int(exc.response.attributes["ERROR-CODE"][0])
    transport.close()  # deletes the allocation, then tells the protocol
    await asyncio.wait_for(protocol.lost, 5)
    return None


@pytest_asyncio.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[tuple[netns.Lab, int, tuple[int, int]]]:
    """A lab and coturn on its server address: (lab, coturn's port, its relay port range)."""
    ok, why = netns.available()
    if not ok:
        pytest.skip(f"needs network namespaces: {why}")
    for tool in ("turnserver", "iptables"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs `{tool}` (make test installs coturn and iptables)")
    with netns.Lab() as lab:
        address = lab.server_address
        port = free_udp_port(address)
        base = 61000 + (os.getpid() % 200) * 20  # above Linux's ephemeral ports (to 60999)
        relay_ports = (base, base + 19)
        conf = coturn_config(tmp_path, address, port, relay_ports)
        proc = await asyncio.create_subprocess_exec(
            "turnserver", "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not await asyncio.to_thread(stun_answers, address, port):
                assert proc.returncode is None and time.monotonic() < deadline, \
                    (tmp_path / "turnserver.log").read_text(errors="replace")[-2000:]
            yield lab, port, relay_ports
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def drop_udp_except(link: netns.Link, address: str, port: int) -> None:
    """Inside the link's namespace: UDP to ``address`` reaches ``port`` (coturn) only."""
    subprocess.run(["ip", "netns", "exec", link.ns, "iptables", "-A", "OUTPUT", "-p", "udp",
                    "-d", address, "!", "--dport", str(port), "-j", "DROP"],
                   check=True, capture_output=True, timeout=20)


def dropped_by_firewall(link: netns.Link) -> int:
    out = subprocess.run(["ip", "netns", "exec", link.ns, "iptables", "-L", "OUTPUT", "-v", "-n",
                          "-x"], check=True, capture_output=True, text=True, timeout=20).stdout
    found = re.search(r"^\s*(\d+)\s+\d+\s+DROP\s", out, re.M)
    assert found, out
    return int(found.group(1))


async def test_media_flows_both_ways_through_the_relay(coturn, netns_clip_dir, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="sfu")
    lab, turn_port, (relay_lo, relay_hi) = coturn
    address = lab.server_address
    from sfu.service.server import Server

    clip = load_clip(netns_clip_dir, ClipParams(seconds=CLIP_SECONDS))
    server = Server(make_config(media={"ice_addresses": [address], "ice_servers": [IceServer(
        urls=[f"turn:{address}:{turn_port}?transport=udp"], auth_secret=TURN_SECRET)]}))
    await server.start(address, 0)
    url = f"http://{address}:{server.port}"
    link = lab.add()
    drop_udp_except(link, address, turn_port)
    host = Client(url, mint_token(SECRET, sub="dr-host", role="staff", clinic="demo"), clip=clip,
                  ice_addresses=(address,))
    behind = netns.ClientProcess(link.exec_argv(netns.client_argv(
        url, mint_token(SECRET, sub="dr-behind", role="staff", clinic="demo"), room="team",
        seconds=60, ice_address=link.ns_addr, clip_dir=str(netns_clip_dir),
        clip_seconds=CLIP_SECONDS)), "behind")
    started = time.monotonic()
    try:
        joined = await host.join({"room": "team"})
        await behind.start()
        await behind.wait_joined_or_refused(20)
        assert behind.participant, behind.refused
        (given,) = next(e for e in behind.events if e["event"] == "joined")["message"]["ice_servers"]
        expiry, _, user = given["username"].partition(":")
        assert user == behind.participant and int(expiry) - time.time() == pytest.approx(3600, abs=60)

        def hears(c: netns.ClientProcess, who: str) -> bool:
            tracks = [t for t in (c.stats[-1]["tracks"] if c.stats else [])
                      if t["participant"] == who]
            return (sum(t["packets"] for t in tracks if t["kind"] == "audio") >= AUDIO_PACKETS
                    and sum(t["frames"] for t in tracks if t["kind"] == "video") >= VIDEO_FRAMES)

        await behind.wait_for(lambda c: hears(c, host.participant or ""), timeout=30)
        host_hears = [t for t in host.tracks.values() if t.participant == behind.participant]
        await wait_for(lambda: sum(t.packets for t in host_hears if t.kind == "audio")
                       >= AUDIO_PACKETS and sum(t.frames for t in host_hears
                                                if t.kind == "video") >= VIDEO_FRAMES,
                       timeout=15)
        took = time.monotonic() - started
        pair = behind.stats[-1]["ice"]
        # seen from the server: the participant's address is coturn's allocation
        (call,) = server.calls.by_key.values()
        endpoint = call.participants[behind.participant].endpoint
        _, remote = glue.selected_pair(endpoint.peer.dtls)
        dropped = dropped_by_firewall(link)
        audio_in = sum(t.packets for t in host_hears if t.kind == "audio")
        print(f"\nturn-relay: behind the firewall: selected pair {pair}; server sees "
              f"{remote.type} {remote.host}:{remote.port}; {dropped} direct datagrams dropped; "
              f"both ways within {took:.1f} s of joining; host received {audio_in} audio packets "
              f"from it, it received {[t['packets'] for t in behind.stats[-1]['tracks']]}")
        assert pair["local_type"] == "relay", pair
        assert (remote.host, remote.type) == (address, "relay")
        assert relay_lo <= remote.port <= relay_hi, remote
        assert dropped > 0, "the namespaced participant never tried the direct path"
        assert joined["ice_servers"][0]["username"].endswith(":" + str(host.participant))
    finally:
        await behind.stop()
        await close_all([host])
        await server.close()
    assert TURN_SECRET not in caplog.text


async def test_a_precall_test_from_behind_the_firewall_runs_through_the_relay(
        coturn, netns_clip_dir) -> None:
    """The pre-call test takes the path the call will take: ``precall_started`` gives its own
    TURN credential before the test's offer. Without it the test's connection had host
    candidates only and, behind a firewall that lets UDP reach only coturn, never connected."""
    lab, turn_port, _ = coturn
    address = lab.server_address
    from sfu.service.server import Server

    load_clip(netns_clip_dir, ClipParams(seconds=CLIP_SECONDS))
    server = Server(make_config(media={"ice_addresses": [address], "ice_servers": [IceServer(
        urls=[f"turn:{address}:{turn_port}?transport=udp"], auth_secret=TURN_SECRET)]}))
    await server.start(address, 0)
    link = lab.add()
    drop_udp_except(link, address, turn_port)
    token = mint_token(SECRET, sub="patient-behind", role="staff", clinic="demo")
    argv = [sys.executable, "-m", "sfu.client.run", "--url", f"http://{address}:{server.port}",
            "--token", token, "--precall", "3", "--ice-address", link.ns_addr,
            "--clip-dir", str(netns_clip_dir), "--clip-seconds", str(CLIP_SECONDS)]
    tester = netns.ClientProcess(link.exec_argv(argv), "precall")
    try:
        await tester.start()
        await tester.wait_for(lambda c: any(e["event"] in ("precall_result", "refused")
                                            for e in c.events), timeout=40)
        ended = next(e for e in tester.events if e["event"] in ("precall_result", "refused"))
        assert ended["event"] == "precall_result", ended
        result = ended["result"]
        print(f"\nturn-relay: pre-call test behind the firewall: {result['verdict']}, "
              f"up {result['up_kbps']} down {result['down_kbps']} kbit/s, "
              f"{dropped_by_firewall(link)} direct datagrams dropped")
        assert result["down_kbps"] > 0 and result["up_kbps"] > 0, result
        started = next(m for m in tester.messages if m.get("type") == "precall_started")
        (given,) = started["ice_servers"]
        assert given["username"].split(":", 1)[1].startswith("pc_"), given  # the test's own
    finally:
        await tester.stop()
        await server.close()


async def gathered(address: str, port: int, username: str, password: str) -> list[str]:
    """The candidate types a client's gatherer (the glue's, as sfu.client uses it) finds with
    this TURN credential."""
    connection = Connection(ice_controlling=False, turn_server=(address, port),
                            turn_username=username, turn_password=password)
    glue.install_gatherer(connection, glue.IceSettings((address,), relay=True))
    try:
        await connection.gather_candidates()
        return [c.type for c in connection.local_candidates]
    finally:
        await connection.close()


async def test_coturn_refuses_an_expired_or_wrong_credential(coturn, caplog) -> None:
    lab, turn_port, _ = coturn
    address = lab.server_address
    now = int(time.time())
    expired = turn_credential(TURN_SECRET, "p_0123456789abcdef", now - 60)
    wrong = turn_credential("another-secret-of-at-least-32-characters", "p_0123456789abcdef",
                            now + 3600)
    fresh = turn_credential(TURN_SECRET, "p_0123456789abcdef", now + 3600)
    cases = (("expired", expired), ("wrong", wrong), ("fresh", fresh))
    codes = {name: await allocate(address, turn_port, *cred) for name, cred in cases}
    print(f"\nturn-relay: coturn's answers to an allocation: {codes} (None: granted)")
    assert codes == {"expired": 401, "wrong": 401, "fresh": None}
    # a client handed such a credential gathers no relayed candidate, and says why
    candidates = {name: await gathered(address, turn_port, *cred) for name, cred in cases}
    assert candidates == {"expired": ["host"], "wrong": ["host"], "fresh": ["host", "relay"]}
    refusals = [r.getMessage() for r in caplog.records if "refused an allocation" in r.getMessage()]
    assert len(refusals) == 2 and all("401" in m for m in refusals), refusals
