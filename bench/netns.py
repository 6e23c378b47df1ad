"""Real constrained links for tests and benches: network namespaces, veth pairs and ``tc tbf``.

A :class:`Lab` owns one server address and any number of :class:`Link`\\ s. Each link is a
network namespace holding one end of a veth pair; the other end stays in the root namespace::

    root namespace                                  namespace sfu<pid>-<i>
    server address 10.77.B.1/32 (on a holder veth)
    sfu<pid>h<i>  10.77.B.(4i+1)/30  <== veth ==>  sfu<pid>n<i>  10.77.B.(4i+2)/30
      egress: tbf = the participant's DOWNLINK       egress: tbf = its UPLINK
                                                     default route via 10.77.B.(4i+1)

The server binds the server address (in the root namespace). Clients in a namespace reach it
through their veth, so all their traffic, signaling included, crosses the two ``tbf`` qdiscs;
clients in the root namespace reach the same address locally, unshaped. ``B`` is derived from
the pid (and skipped when some interface already uses it), so concurrent runs do not clash.

Everything is removed by :meth:`Lab.close` (deleting a namespace deletes its veth pair);
namespaces left behind by a run whose process has died are removed when the next Lab starts.
Only our own addresses inside 10.77.0.0/16 are ever used; nothing is routed anywhere else.

Requires root (CAP_NET_ADMIN), ``ip`` and ``tc``. :func:`available` says whether that works
here, with the reason when it does not.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

PREFIX = "sfu"
_NS_RE = re.compile(rf"^{PREFIX}(\d+)-\d+$")
_HOLDER_RE = re.compile(rf"^{PREFIX}(\d+)s[a-z]?$")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NetnsError(RuntimeError):
    pass


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc


_AVAILABLE: tuple[bool, str] | None = None


def available() -> tuple[bool, str]:
    """(True, "") when namespaces, veth pairs and tbf can be made here; else (False, why)."""
    global _AVAILABLE
    if _AVAILABLE is not None:
        return _AVAILABLE
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            _AVAILABLE = (False, f"`{tool}` is not installed")
            return _AVAILABLE
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run("ip", "netns", "add", probe)
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        _AVAILABLE = (False, f"`ip netns add` is not permitted here ({exc})")
        return _AVAILABLE
    try:
        _run("ip", "-n", probe, "link", "add", "pa", "type", "veth", "peer", "name", "pb")
        _run("ip", "-n", probe, "link", "set", "pa", "up")
        _run("tc", "-n", probe, "qdisc", "add", "dev", "pa", "root", "tbf", "rate", "1mbit",
             "burst", "16kb", "latency", "100ms")
        _AVAILABLE = (True, "")
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        _AVAILABLE = (False, f"veth pairs or `tc qdisc ... tbf` do not work here ({exc})")
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return _AVAILABLE


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Remove namespaces and holder veths of earlier runs whose process is gone."""
    listing = _run("ip", "netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _run("ip", "netns", "del", name, check=False)
    links = _run("ip", "-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = _HOLDER_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _run("ip", "link", "del", name, check=False)


def _used_blocks() -> set[int]:
    out = _run("ip", "-o", "-4", "addr", "show", check=False).stdout
    return {int(m.group(1)) for m in re.finditer(r"inet 10\.77\.(\d+)\.", out)}


def tbf_args(kbit: float, burst: str | None = None, latency_ms: int = 100) -> list[str]:
    """``tbf`` parameters for a rate in kbit/s: a bottleneck link of that rate with 100 ms of queue.

    The bucket holds 20 ms of the rate, at least 4 KiB (a few full-size packets): what passes at
    line rate above the shaped rate is a few packets, as on a link whose capacity is the rate. A
    bucket of 16 KiB (this module's first default) is a policer's: 190 ms of a 700 kbit/s link and
    0.9 s of a 150 kbit/s one pass at line rate, so a 150 ms probe cluster, or a pre-call test's
    first second, measures the line and not the link (libwebrtc's probes are fooled the same way
    by such policers)."""
    if burst is None:
        burst = str(max(4096, int(kbit * 1000 / 8 * 0.020)))
    return ["tbf", "rate", f"{int(kbit)}kbit", "burst", burst, "latency", f"{latency_ms}ms"]


@dataclass
class Link:
    """One namespace behind a shaped veth pair (see the module docstring)."""

    lab: Lab
    index: int
    ns: str
    host_if: str
    ns_if: str
    host_addr: str
    ns_addr: str
    down_kbit: float | None = None
    up_kbit: float | None = None

    def set_downlink(self, kbit: float | None, **kw: object) -> None:
        """Shape what the namespace receives (host-side egress); None: unlimited."""
        self._shape(self.host_if, None, kbit, **kw)
        self.down_kbit = kbit

    def set_uplink(self, kbit: float | None, **kw: object) -> None:
        """Shape what the namespace sends (namespace-side egress); None: unlimited."""
        self._shape(self.ns_if, self.ns, kbit, **kw)
        self.up_kbit = kbit

    @staticmethod
    def _shape(dev: str, ns: str | None, kbit: float | None, **kw: object) -> None:
        tc = ["tc"] + (["-n", ns] if ns else [])
        if kbit is None:
            _run(*tc, "qdisc", "del", "dev", dev, "root", check=False)
            return
        _run(*tc, "qdisc", "replace", "dev", dev, "root", *tbf_args(kbit, **kw))  # type: ignore[arg-type]

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def qdisc_stats(self) -> dict[str, int]:
        """Sent bytes/packets and drops of the downlink tbf (host side)."""
        out = _run("tc", "-s", "qdisc", "show", "dev", self.host_if, check=False).stdout
        m = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", out)
        if not m:
            return {}
        return {"bytes": int(m.group(1)), "packets": int(m.group(2)), "dropped": int(m.group(3))}


@dataclass
class Lab:
    """A server address in the root namespace plus shaped namespaces that reach it."""

    links: list[Link] = field(default_factory=list)
    server_address: str = ""
    block: int = 0
    _holder: str = ""
    _closed: bool = False

    def __post_init__(self) -> None:
        ok, why = available()
        if not ok:
            raise NetnsError(why)
        remove_stale()
        used = _used_blocks()
        pid = os.getpid()
        block = 10 + pid % 240
        for _ in range(250):
            if block not in used:
                break
            block = 10 + (block - 9) % 240
        else:
            raise NetnsError("no free 10.77.x.0/24 block")
        self.block = block
        self.server_address = f"10.77.{block}.1"
        self._holder = f"{PREFIX}{pid}s"
        try:
            # The server address lives on a veth whose peer stays here, unused: the address is
            # local, so root-namespace clients reach it over loopback and namespaces via their veth.
            _run("ip", "link", "add", self._holder, "type", "veth", "peer", "name", self._holder + "p")
            _run("ip", "addr", "add", f"{self.server_address}/32", "dev", self._holder)
            _run("ip", "link", "set", self._holder, "up")
            _run("ip", "link", "set", self._holder + "p", "up")
        except Exception:
            self.close()
            raise

    def add(self, down_kbit: float | None = None, up_kbit: float | None = None) -> Link:
        """A new namespace with its veth pair, shaped to ``down_kbit``/``up_kbit`` (None: unlimited)."""
        index = len(self.links) + 1
        if index > 60:
            raise NetnsError("at most 60 links per lab")
        pid = os.getpid()
        link = Link(self, index, ns=f"{PREFIX}{pid}-{index}", host_if=f"{PREFIX}{pid}h{index}",
                    ns_if=f"{PREFIX}{pid}n{index}",
                    host_addr=f"10.77.{self.block}.{4 * index + 1}",
                    ns_addr=f"10.77.{self.block}.{4 * index + 2}")
        self.links.append(link)
        _run("ip", "netns", "add", link.ns)
        _run("ip", "link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if,
             "netns", link.ns)
        _run("ip", "addr", "add", f"{link.host_addr}/30", "dev", link.host_if)
        _run("ip", "link", "set", link.host_if, "up")
        _run("ip", "-n", link.ns, "addr", "add", f"{link.ns_addr}/30", "dev", link.ns_if)
        _run("ip", "-n", link.ns, "link", "set", "lo", "up")
        _run("ip", "-n", link.ns, "link", "set", link.ns_if, "up")
        _run("ip", "-n", link.ns, "route", "add", "default", "via", link.host_addr)
        # No segmentation offloads, so tbf sees (and delays/drops) real wire-size packets.
        if shutil.which("ethtool"):
            _run("ethtool", "-K", link.host_if, "tso", "off", "gso", "off", "gro", "off", check=False)
            _run("ip", "netns", "exec", link.ns, "ethtool", "-K", link.ns_if, "tso", "off",
                 "gso", "off", "gro", "off", check=False)
        if down_kbit is not None:
            link.set_downlink(down_kbit)
        if up_kbit is not None:
            link.set_uplink(up_kbit)
        return link

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for link in self.links:
            _run("ip", "netns", "del", link.ns, check=False)
            _run("ip", "link", "del", link.host_if, check=False)  # gone with the ns, normally
        if self._holder:
            _run("ip", "link", "del", self._holder, check=False)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


# --------------------------------------------------------------------------- one client process

def client_argv(url: str, token: str, *, room: str | None = None, space: str | None = None,
                seconds: float = 60.0, ice_address: str | None = None,
                clip_dir: str | None = None, clip_seconds: float = 10.0,
                extra: list[str] | None = None) -> list[str]:
    """The command line of :mod:`sfu.client.run` for one participant."""
    import sys

    argv = [sys.executable, "-m", "sfu.client.run", "--url", url, "--token", token,
            "--seconds", str(seconds), "--clip-seconds", str(clip_seconds)]
    argv += ["--room", room] if room is not None else ["--space", str(space)]
    if ice_address:
        argv += ["--ice-address", ice_address]
    if clip_dir:
        argv += ["--clip-dir", clip_dir]
    return argv + list(extra or [])


class ClientProcess:
    """One ``python -m sfu.client.run`` subprocess (possibly in a namespace), its JSON lines parsed.

    ``events`` holds every line; ``stats`` the ``stats`` lines; ``messages`` the signaling
    messages. Use from a running asyncio loop: :meth:`start`, the ``wait_*`` helpers, :meth:`stop`.
    """

    def __init__(self, argv: list[str], name: str = "client") -> None:
        self.argv = argv
        self.name = name
        self.events: list[dict[str, object]] = []
        self.stats: list[dict[str, object]] = []
        self.messages: list[dict[str, object]] = []
        self.stderr = b""
        self.participant: str | None = None
        self.refused: dict[str, object] | None = None
        self.proc: object = None
        self._reader: object = None
        self._stderr_task: object = None
        self._changed: object = None

    async def start(self) -> ClientProcess:
        import asyncio

        self._changed = asyncio.Event()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=_REPO)
        self._reader = asyncio.ensure_future(self._read())
        self._stderr_task = asyncio.ensure_future(self._read_stderr())
        return self

    async def _read(self) -> None:
        import json

        assert self.proc is not None
        stream = self.proc.stdout  # type: ignore[attr-defined]
        while True:
            line = await stream.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            kind = event.get("event")
            if kind == "stats":
                self.stats.append(event)
            elif kind == "message":
                self.messages.append(event["message"])
            elif kind == "joined":
                self.participant = event["participant"]
            elif kind == "refused":
                self.refused = event
            self._changed.set()  # type: ignore[attr-defined]
        self._changed.set()  # type: ignore[attr-defined]

    async def _read_stderr(self) -> None:
        stream = self.proc.stderr  # type: ignore[attr-defined]
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            self.stderr = (self.stderr + chunk)[-20000:]

    @property
    def done(self) -> bool:
        return self._reader is not None and self._reader.done()  # type: ignore[attr-defined]

    async def wait_for(self, predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
        """Wait until ``predicate(self)`` holds; raise TimeoutError (with stderr) otherwise."""
        import asyncio
        import time

        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.done and not predicate(self)):
                tail = self.stderr.decode(errors="replace")[-2000:]
                state = "exited" if self.done else "timed out"
                raise TimeoutError(f"{self.name}: {state} before the condition held; "
                                   f"last events {self.events[-3:]}; stderr: {tail}")
            self._changed.clear()  # type: ignore[attr-defined]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))  # type: ignore[attr-defined]

    async def wait_joined_or_refused(self, timeout: float = 30.0) -> None:
        await self.wait_for(lambda c: c.participant is not None or c.refused is not None, timeout)

    async def stop(self, timeout: float = 10.0) -> None:
        import asyncio
        import signal

        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:  # type: ignore[attr-defined]
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
            try:
                await asyncio.wait_for(proc.wait(), timeout)  # type: ignore[attr-defined]
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # type: ignore[attr-defined]
                await proc.wait()  # type: ignore[attr-defined]
        for task in (self._reader, self._stderr_task):
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)  # type: ignore[arg-type]

    # -- measurements from the stats lines ---------------------------------------------------------
    def _snapshot_at(self, wall: float) -> dict[str, object] | None:
        best = None
        for s in self.stats:
            if s["wall"] <= wall:  # type: ignore[operator]
                best = s
        return best

    def window(self, start_wall: float, end_wall: float,
               kinds: tuple[str, ...] = ("audio", "video")) -> dict[str, float]:
        """Drop rate and received rates between the stats lines nearest ``start``/``end``.

        ``drop``: packets lost / expected over the window, summed over the received tracks of
        ``kinds`` (per track SSRC, from sequence numbers); ``kbps``: received kbit/s; ``seconds``.
        """
        a, b = self._snapshot_at(start_wall), self._snapshot_at(end_wall)
        if a is None or b is None or a is b:
            return {"drop": float("nan"), "kbps": float("nan"), "seconds": 0.0,
                    "expected": 0, "lost": 0}
        before = {(t["mid"], t["ssrc"]): t for t in a["tracks"]}  # type: ignore[union-attr]
        expected = lost = octets = 0
        for t in b["tracks"]:  # type: ignore[union-attr]
            if t["kind"] not in kinds:
                continue
            old = before.get((t["mid"], t["ssrc"]), {"expected": 0, "lost": 0, "bytes": 0})
            if (t["mid"], t["ssrc"]) not in before:
                old = {"expected": 0, "lost": 0, "bytes": 0}
            expected += t["expected"] - old["expected"]
            lost += t["lost"] - old["lost"]
            octets += t["bytes"] - old["bytes"]
        seconds = float(b["wall"]) - float(a["wall"])  # type: ignore[arg-type]
        return {"drop": lost / expected if expected > 0 else 0.0,
                "kbps": octets * 8 / 1000 / seconds if seconds > 0 else float("nan"),
                "seconds": seconds, "expected": expected, "lost": lost}

    def received_packets(self, participant: str, kind: str, start_wall: float,
                         end_wall: float) -> int:
        """Packets received from ``participant``'s ``kind`` track between two stats lines."""
        a, b = self._snapshot_at(start_wall), self._snapshot_at(end_wall)
        if b is None:
            return 0

        def count(snap: dict[str, object] | None) -> int:
            if snap is None:
                return 0
            return sum(t["packets"] for t in snap["tracks"]  # type: ignore[union-attr]
                       if t["participant"] == participant and t["kind"] == kind)

        return count(b) - count(a)
