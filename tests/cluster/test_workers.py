"""``sfu serve --workers N`` as an ops engineer runs it: real processes, a real redis-server."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sfu.cli import with_serve_flags
from sfu.cluster.workers import WorkersError, WorkersPlan, stop_deadline, worker_specs
from sfu.errors import ConfigError
from sfu.service.config import default_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = "workers-secret-0123456789abcdef-0123"


# -- the plan (no processes) ---------------------------------------------------------------------

def test_each_worker_gets_its_port_node_id_share_of_the_udp_range_and_the_shared_port():
    plan = WorkersPlan(count=3, host="127.0.0.1", port=9000, config_path="/etc/sfu/sfu.toml",
                       drain_timeout=10.0, udp_ports=(40000, 40999), metrics_port=9100)
    specs = worker_specs(plan, "unix:///tmp/x/redis.sock")
    assert [(s.node_id, s.port, s.advertise_url) for s in specs] == [
        ("w0", 9001, "http://127.0.0.1:9001"), ("w1", 9002, "http://127.0.0.1:9002"),
        ("w2", 9003, "http://127.0.0.1:9003")]
    flags = [dict(zip(s.args[1::2], s.args[2::2], strict=True)) for s in specs]
    assert [f["--udp-ports"] for f in flags] == ["40000-40333", "40334-40666", "40667-40999"]
    assert [f["--metrics-port"] for f in flags] == ["9100", "9101", "9102"]
    assert all(f["--shared-port"] == "9000" and f["--config"] == "/etc/sfu/sfu.toml"
               and f["--redis-url"] == "unix:///tmp/x/redis.sock" for f in flags)


def test_a_configured_cluster_names_the_workers_and_keeps_its_redis_url_off_their_command_lines():
    url = "redis://:hunter2@10.0.0.5:6379/0"
    plan = WorkersPlan(count=2, host="0.0.0.0", port=8080, config_path="c.toml",
                       drain_timeout=10.0, redis_url=url, node_id="box1",
                       advertise_url="https://sfu1.example.org")
    specs = worker_specs(plan, url)
    assert [s.node_id for s in specs] == ["box1-w0", "box1-w1"]
    assert [s.advertise_url for s in specs] == ["https://sfu1.example.org:8081",
                                                "https://sfu1.example.org:8082"]
    assert all("--redis-url" not in s.args and "hunter2" not in " ".join(s.args) for s in specs)


@pytest.mark.parametrize(("change", "problem"), [
    ({"port": 0}, "fixed public port"),
    ({"udp_ports": (40000, 40001)}, "fewer than 3 workers"),
    ({"metrics_port": 8082}, "overlap"),
    ({"count": 0}, "at least 1"),
])
def test_a_plan_that_cannot_work_is_refused_with_the_reason(change, problem):
    plan = WorkersPlan(**{"count": 3, "host": "127.0.0.1", "port": 8080, "config_path": None,
                          "drain_timeout": 10.0, **change})
    with pytest.raises(WorkersError, match=problem):
        worker_specs(plan, "unix:///r.sock")


def serve_args(**flags: object) -> argparse.Namespace:
    names = ("node_id", "redis_url", "advertise_url", "shared_port", "udp_ports", "metrics_port")
    return argparse.Namespace(**{name: flags.get(name) for name in names})


def test_the_per_worker_flags_create_or_change_the_cluster_section():
    config = with_serve_flags(default_config(), serve_args(
        redis_url="redis://127.0.0.1:6379/0", node_id="w1", shared_port=8080,
        advertise_url="http://127.0.0.1:8082", udp_ports="40500-40999", metrics_port=9101))
    assert config.cluster is not None
    assert (config.cluster.redis_url, config.cluster.node_id, config.cluster.shared_port,
            config.cluster.advertise_url) == ("redis://127.0.0.1:6379/0", "w1", 8080,
                                              "http://127.0.0.1:8082")
    assert config.media.udp_ports == "40500-40999" and config.metrics.port == 9101
    assert with_serve_flags(default_config(), serve_args()).cluster is None
    with pytest.raises(ConfigError) as refused:
        with_serve_flags(default_config(), serve_args(node_id="w1", udp_ports="9-1"))
    assert any("[cluster]" in p for p in refused.value.problems)
    assert any("--udp-ports" in p for p in refused.value.problems)
    with pytest.raises(ConfigError, match="advertise_url"):
        with_serve_flags(default_config(), serve_args(redis_url="redis://r", advertise_url="x"))


# -- real processes ------------------------------------------------------------------------------

def free_ports(count: int) -> int:
    """P such that P..P+count-1 are free on loopback."""
    for _ in range(200):
        base = random.randrange(20000, 40000)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_pid(parent: int, node_id: str) -> int | None:
    for pid, cmdline in children(parent).items():
        if f"--node-id {node_id} " in cmdline:
            return pid
    return None


async def eventually(predicate, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


async def status(http: aiohttp.ClientSession, url: str, token: str = "") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with http.get(url, headers=headers) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def answers(http: aiohttp.ClientSession, url: str) -> bool:
    return await status(http, url) == 200


def redis_dir(processes: dict[int, str]) -> Path:
    """The private directory of the supervisor's redis-server (its unix socket's)."""
    found = [re.search(r"unixsocket:(\S+)/redis\.sock", c) for c in processes.values()]
    paths = [Path(m.group(1)) for m in found if m]
    assert len(paths) == 1, processes
    return paths[0]


class Workers:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, out: list[str]) -> None:
        self.proc, self.port, self.out = proc, port, out

    async def line(self, pattern: str, within: float = 30.0) -> re.Match[str]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                assert line, f"the supervisor closed its output: {self.out}"
                self.out.append(line)
                if found := re.search(pattern, line):
                    return found


@pytest.fixture
async def start_workers(tmp_path: Path) -> AsyncIterator:
    started: list[Workers] = []

    async def start(*args: str, env: dict[str, str] | None = None, port: int = 0) -> Workers:
        port = port or free_ports(4)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sfu.cli", "serve", "--workers", "2", "--port", str(port), *args,
            stdout=asyncio.subprocess.PIPE, stderr=(tmp_path / "stderr").open("ab"),
            env=env, cwd=ROOT)
        workers = Workers(proc, port, [])
        started.append(workers)
        return workers

    yield start
    for workers in started:  # a failed test leaves nothing behind either
        if workers.proc.returncode is None:
            workers.proc.kill()
            await workers.proc.wait()


async def test_two_workers_answer_on_their_ports_and_the_shared_one_share_a_secret_and_stop_clean(
        tmp_path: Path, start_workers) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SFU_AUTH_SECRET"}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    workers = await start_workers(env=env)
    printed = (await workers.line(r"secret for this run: (\S+)")).group(1)
    await workers.line(r"2 workers listening on http://127\.0\.0\.1:(\d+)")
    p = workers.port
    processes = children(workers.proc.pid)
    private = redis_dir(processes)
    assert private.stat().st_mode & 0o777 == 0o700
    assert worker_pid(workers.proc.pid, "w0") and worker_pid(workers.proc.pid, "w1")

    token_proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sfu.cli", "token", "--secret-from-config", "--role", "staff",
        "--clinic", "demo", "--sub", "dr-lee", stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    token = (await token_proc.communicate())[0].decode().strip()
    assert token_proc.returncode == 0 and token
    async with aiohttp.ClientSession() as http:
        for port in (p, p + 1, p + 2):  # the shared port and each worker's own
            assert await status(http, f"http://127.0.0.1:{port}/healthz") == 200
        for port in (p + 1, p + 2):  # the saved secret is the one every worker checks
            assert await status(http, f"http://127.0.0.1:{port}/v1/clinics/demo", token) == 200
            assert await status(http, f"http://127.0.0.1:{port}/v1/clinics/demo") == 401
        assert printed in (tmp_path / "sfu-default-secret").read_text()

        # a worker killed outright is started again and answers on its port
        killed = worker_pid(workers.proc.pid, "w0")
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        await eventually(lambda: (worker_pid(workers.proc.pid, "w0") or killed) != killed)
        await eventually(lambda: answers(http, f"http://127.0.0.1:{p + 1}/healthz"), within=15)
        assert await status(http, f"http://127.0.0.1:{p + 1}/v1/clinics/demo", token) == 200

    processes = children(workers.proc.pid)
    began = time.monotonic()
    workers.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(workers.proc.wait(), 15) == 0
    assert time.monotonic() - began < default_config().server.drain_timeout
    assert not [pid for pid in processes if alive(pid)], processes  # no worker, no redis-server
    assert not private.exists()


async def test_a_hung_worker_is_killed_after_its_drain_and_nothing_is_left(tmp_path: Path,
                                                                           start_workers) -> None:
    config = tmp_path / "sfu.toml"
    config.write_text(f'[server]\nhost = "127.0.0.1"\ndrain_timeout = 1.0\n[auth]\n'
                      f'secret = "{SECRET}"\n[media]\nudp_ports = "41300-41309"\n'
                      '[[clinics]]\nid = "demo"\nname = "Demo"\n')
    workers = await start_workers("--config", str(config))
    await workers.line(r"2 workers listening on")
    processes = children(workers.proc.pid)
    assert sorted(re.search(r"--udp-ports (\S+)", c).group(1)  # type: ignore[union-attr]
                  for c in processes.values() if "--udp-ports" in c) == ["41300-41304",
                                                                          "41305-41309"]
    hung = worker_pid(workers.proc.pid, "w1")
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    began = time.monotonic()
    workers.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(workers.proc.wait(), stop_deadline(1.0) + 5) == 0
    assert time.monotonic() - began >= stop_deadline(1.0) - 0.5  # it waited for the drain
    assert not [pid for pid in processes if alive(pid)], processes


async def test_without_redis_server_it_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sfu.cli", "serve", "--workers", "2", "--port", str(free_ports(3)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "redis-server not found" in err.decode() and "make redis" in err.decode()


async def test_a_worker_that_cannot_start_stops_everything_with_exit_1(tmp_path: Path,
                                                                        start_workers) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "SFU_AUTH_SECRET": SECRET}
    port = free_ports(4)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 2))  # w1's own port
        taken.listen()
        workers = await start_workers(env=env, port=port)
        code = await asyncio.wait_for(workers.proc.wait(), 30)
    assert code == 1
    err = (tmp_path / "stderr").read_text()
    assert f"worker w1 exited with 1 before it answered on port {port + 2}" in err, err
    assert not [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                if alive(pid) and f"--shared-port {port} " in cmdline(pid)]  # w0 is gone too
