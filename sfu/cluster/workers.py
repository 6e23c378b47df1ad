"""``sfu serve --workers N``: one box, every core (docs/cluster.md).

The parent runs no server. It starts a private ``redis-server`` unless the config names one
(``[cluster] redis_url``), then N worker processes of ``sfu serve`` with the same config, worker i
with its own port P+1+i, node id ``w<i>``, its share of the media UDP range, and the public port P
shared through SO_REUSEPORT (the kernel spreads connections; any node answers). It forwards
SIGTERM/SIGINT (each worker drains), restarts with backoff a worker that dies unexpectedly, and
leaves nothing behind: a worker that does not exit within its drain is killed, then Redis is
stopped. The CLI turns the config into a ``WorkersPlan``; nothing here reads the config loader.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("sfu.workers")

# a worker that dies is started again after BACKOFF_MIN s, doubling up to BACKOFF_MAX; a worker
# that had run STABLE_AFTER s before it died starts again from BACKOFF_MIN
BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
START_TIMEOUT = 60.0  # a worker (or Redis) that does not answer within this at the start: failed
KILL_MARGIN = 2.0  # beyond a worker's own bound on its stop (drain, then close) before SIGKILL
HEALTH_EVERY = 0.1
# the env var a worker reads to die with its supervisor (follow_supervisor)
SUPERVISOR_ENV = "SFU_SUPERVISOR_PID"
_WILDCARDS = {"", "0.0.0.0", "::"}
_PR_SET_PDEATHSIG = 1


class WorkersError(Exception):
    """What the operator must fix before ``--workers`` can start (said in one line, exit 1)."""


@dataclass(frozen=True)
class WorkersPlan:
    """What the parent needs from the config and the command line, as plain values."""

    count: int
    host: str  # server.host (or --host)
    port: int  # the public port P, shared by every worker
    config_path: str | None  # None: the embedded default (its secret comes in SFU_AUTH_SECRET)
    drain_timeout: float
    redis_url: str = ""  # [cluster] redis_url; "": start a private redis-server
    node_id: str = ""  # [cluster] node_id: worker ids become "<node_id>-w<i>"
    advertise_url: str = ""  # [cluster] advertise_url: its scheme and host, each worker's port
    udp_ports: tuple[int, int] | None = None  # [media] udp_ports, split evenly
    metrics_port: int = 0  # [metrics] port M: worker i gets M+i
    # the Redis URL came with --redis-url, not from the config file: the workers get it the same
    # way (a URL from the file stays off their command lines: it may hold a password)
    forward_redis_url: bool = False


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    node_id: str
    port: int
    advertise_url: str
    args: list[str] = field(default_factory=list)  # after ``python -m sfu.cli``


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def advertise_host(plan: WorkersPlan) -> tuple[str, str]:
    """(scheme, host) clients reach the workers by."""
    if plan.advertise_url:
        parts = urlsplit(plan.advertise_url)
        return parts.scheme, parts.hostname or plan.host
    if plan.host in _WILDCARDS:
        return "http", socket.getfqdn()
    return "http", plan.host


def local_host(host: str) -> str:
    """Where the parent itself reaches a worker bound on ``host``."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def split_range(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """``lo..hi`` in ``parts`` contiguous ranges of (nearly) equal size, the first ones larger."""
    size, extra = divmod(hi - lo + 1, parts)
    if size == 0:
        raise WorkersError(f"media.udp_ports {lo}-{hi} has {hi - lo + 1} ports, fewer than "
                           f"{parts} workers")
    ranges = []
    start = lo
    for i in range(parts):
        end = start + size + (1 if i < extra else 0) - 1
        ranges.append((start, end))
        start = end + 1
    return ranges


def worker_specs(plan: WorkersPlan, redis_url: str) -> list[WorkerSpec]:
    """Each worker's ports, node id and ``sfu serve`` arguments; ``redis_url`` is passed with
    ``--redis-url`` when it is not the config's (a private Redis)."""
    if plan.count < 1:
        raise WorkersError(f"--workers must be at least 1, got {plan.count}")
    if not plan.port:
        raise WorkersError("--workers needs a fixed public port (server.port or --port), not 0")
    if plan.port + plan.count > 65535:
        raise WorkersError(f"ports {plan.port}-{plan.port + plan.count} do not fit below 65536")
    taken = set(range(plan.port, plan.port + plan.count + 1))
    if plan.metrics_port:
        metrics = set(range(plan.metrics_port, plan.metrics_port + plan.count))
        if metrics & taken or plan.metrics_port + plan.count > 65536:
            raise WorkersError(
                f"metrics.port {plan.metrics_port}: the workers' metrics ports "
                f"{plan.metrics_port}-{plan.metrics_port + plan.count - 1} overlap the server "
                f"ports {plan.port}-{plan.port + plan.count}")
    udp = split_range(*plan.udp_ports, plan.count) if plan.udp_ports else None
    scheme, host = advertise_host(plan)
    specs = []
    for i in range(plan.count):
        port = plan.port + 1 + i
        node_id = f"{plan.node_id}-w{i}" if plan.node_id else f"w{i}"
        advertise = f"{scheme}://{_url_host(host)}:{port}"
        args = ["serve"]
        if plan.config_path is not None:
            args += ["--config", plan.config_path]
        args += ["--host", plan.host, "--port", str(port), "--node-id", node_id,
                 "--advertise-url", advertise, "--shared-port", str(plan.port)]
        if redis_url != plan.redis_url or plan.forward_redis_url:
            args += ["--redis-url", redis_url]
        if udp is not None:
            args += ["--udp-ports", f"{udp[i][0]}-{udp[i][1]}"]
        if plan.metrics_port:
            args += ["--metrics-port", str(plan.metrics_port + i)]
        specs.append(WorkerSpec(i, node_id, port, advertise, args))
    return specs


def stop_deadline(drain_timeout: float) -> float:
    """How long a worker may take to stop after SIGTERM before it is killed: its own bound
    (``sfu serve`` drains for up to drain_timeout, then closes for up to max(1, drain_timeout))
    plus a margin."""
    return drain_timeout + max(1.0, drain_timeout) + KILL_MARGIN


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to send SIGTERM when the parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return preexec


def follow_supervisor() -> bool:
    """In a worker (``SFU_SUPERVISOR_PID`` set): get SIGTERM, and so drain, when the supervisor
    dies (even by SIGKILL). False when the supervisor is already gone."""
    pid = os.environ.get(SUPERVISOR_ENV)
    if not pid:
        return True
    preexec = _die_with_parent()
    if preexec is not None:
        preexec()
    return os.getppid() == int(pid)


async def healthy(host: str, port: int) -> bool:
    """``GET /healthz`` on ``host:port`` answers 200."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        writer.write(f"GET /healthz HTTP/1.0\r\nHost: {_url_host(host)}:{port}\r\n\r\n".encode())
        async with asyncio.timeout(2.0):
            status = (await reader.readline()).split()
        return len(status) >= 2 and status[1] == b"200"
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _stop_process(proc: asyncio.subprocess.Process, deadline: float, what: str) -> None:
    """SIGTERM, wait up to ``deadline`` s, then SIGKILL; always reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), deadline)
        except TimeoutError:
            log.warning("%s did not stop within %.0fs: killed", what, deadline)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class LocalRedis:
    """A private ``redis-server`` on a unix socket in a 0700 temporary directory, no persistence."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sfu-redis-"))  # mode 0700
        self.socket = self.dir / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise WorkersError("redis-server not found: install Debian's redis-server "
                               "(`make redis` or `apt-get install redis-server`), or set "
                               "[cluster] redis_url to a Redis of your own")
        # its own session: a terminal's Ctrl-C goes to us, and Redis stays up while workers drain
        self.proc = await asyncio.create_subprocess_exec(
            binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"), "--daemonize", "no",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent())
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while not await self.ping():
                    if self.proc.returncode is not None:
                        raise WorkersError(f"redis-server exited with {self.proc.returncode}: "
                                           f"{self.log_tail()}")
                    await asyncio.sleep(HEALTH_EVERY)
        except TimeoutError:
            raise WorkersError(f"redis-server did not answer PING within {START_TIMEOUT:.0f}s: "
                               f"{self.log_tail()}") from None

    async def ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket))
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            async with asyncio.timeout(2.0):
                return await reader.readline() == b"+PONG\r\n"
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def log_tail(self) -> str:
        try:
            lines = (self.dir / "redis.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    async def close(self) -> None:
        if self.proc is not None:
            await _stop_process(self.proc, 5.0, "redis-server")
        shutil.rmtree(self.dir, ignore_errors=True)


class Supervisor:
    """Keeps N workers running until ``stop`` is set, then stops them all."""

    def __init__(self, specs: list[WorkerSpec], *, host: str, env: dict[str, str],
                 drain_timeout: float) -> None:
        self.specs = specs
        self.host = local_host(host)
        self.env = env
        self.deadline = stop_deadline(drain_timeout)
        self.stopping = asyncio.Event()
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self._ready = [asyncio.Event() for _ in specs]
        self._failed: str | None = None  # a worker that died before it ever answered

    async def run(self, on_ready: Callable[[], None]) -> int:
        """Start the workers, call ``on_ready`` once each answers, keep them until ``stopping``
        is set (by the caller, or here when a worker fails at the start)."""
        keepers = [asyncio.ensure_future(self._keep(spec)) for spec in self.specs]
        started = asyncio.ensure_future(self._all_ready())
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait({started, stopped}, timeout=START_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
            if started in done and not self.stopping.is_set():
                on_ready()
            elif not self.stopping.is_set():
                self._failed = f"the workers did not answer within {START_TIMEOUT:.0f}s"
                self.stopping.set()
            await asyncio.gather(*keepers)
        finally:
            self.stopping.set()
            for task in (*keepers, started, stopped):
                task.cancel()
            await asyncio.gather(*keepers, started, stopped, return_exceptions=True)
        if self._failed is not None:
            log.error("%s", self._failed)
            return 1
        return 0

    async def _all_ready(self) -> None:
        for ready in self._ready:
            await ready.wait()

    async def _keep(self, spec: WorkerSpec) -> None:
        loop = asyncio.get_running_loop()
        delay = BACKOFF_MIN
        while not self.stopping.is_set():
            began = loop.time()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sfu.cli", *spec.args, stdin=subprocess.DEVNULL,
                env={**self.env, SUPERVISOR_ENV: str(os.getpid())}, start_new_session=True)
            self.procs[spec.index] = proc
            log.info("worker %s (pid %d) starting on port %d", spec.node_id, proc.pid, spec.port)
            exited = asyncio.ensure_future(proc.wait())
            watch = asyncio.ensure_future(self._watch(spec, proc))
            stopping = asyncio.ensure_future(self.stopping.wait())
            try:
                await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watch, stopping, exited):
                    task.cancel()
                await asyncio.gather(watch, stopping, exited, return_exceptions=True)
                if proc.returncode is None:  # stopping (or cancelled): drain, or be killed
                    await _stop_process(proc, self.deadline, f"worker {spec.node_id}")
            if self.stopping.is_set():
                log.info("worker %s stopped (exit %s)", spec.node_id, proc.returncode)
                return
            if not self._ready[spec.index].is_set():
                self._failed = (f"worker {spec.node_id} exited with {proc.returncode} before it "
                                f"answered on port {spec.port}")
                self.stopping.set()
                return
            if loop.time() - began >= STABLE_AFTER:
                delay = BACKOFF_MIN
            log.warning("worker %s (pid %d) exited unexpectedly with %s; restarting in %.1fs",
                        spec.node_id, proc.pid, proc.returncode, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, BACKOFF_MAX)
            self.restarts += 1

    async def _watch(self, spec: WorkerSpec, proc: asyncio.subprocess.Process) -> None:
        """Until the worker answers ``/healthz`` on its own port (then it is ready)."""
        while True:  # polled: a process gives no other sign that it listens
            if await healthy(self.host, spec.port):
                break
            await asyncio.sleep(HEALTH_EVERY)
        if self._ready[spec.index].is_set():
            log.info("worker %s (pid %d) answers again", spec.node_id, proc.pid)
        self._ready[spec.index].set()


async def supervise(plan: WorkersPlan, env: dict[str, str],
                    announce: Callable[[str], None]) -> int:
    """Run ``plan`` until SIGTERM or SIGINT: 0 after a clean stop, 1 when it could not start
    (said on stderr). ``announce`` gets the line saying where the workers listen."""
    loop = asyncio.get_running_loop()
    redis: LocalRedis | None = None
    supervisor: Supervisor | None = None
    early_stop = asyncio.Event()  # a signal while Redis starts

    def on_signal() -> None:
        early_stop.set()
        if supervisor is not None:
            supervisor.stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        redis_url = plan.redis_url
        if not redis_url:
            redis = LocalRedis()
            await redis.start()
            redis_url = redis.url
            log.info("private redis-server at %s", redis.url)
        specs = worker_specs(plan, redis_url)
        supervisor = Supervisor(specs, host=plan.host, env=env, drain_timeout=plan.drain_timeout)
        if early_stop.is_set():
            supervisor.stopping.set()
        scheme, host = advertise_host(plan)

        def ready() -> None:
            nodes = ", ".join(f"{s.node_id} {s.advertise_url}" for s in specs)
            announce(f"sfu: {plan.count} workers listening on "
                     f"{scheme}://{_url_host(host)}:{plan.port} ({nodes})")

        code = await supervisor.run(ready)
    except WorkersError as exc:
        print(f"sfu: {exc}", file=sys.stderr)
        code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if redis is not None:
            await redis.close()
    log.info("stopped")
    return code
