"""CPU and memory of local processes, from ``/proc`` (Linux): the server's and the tool's own.

``find_listener(port)`` finds the process listening on a TCP port (``/proc/net/tcp{,6}`` gives the
socket's inode, ``/proc/*/fd`` which process holds it). ``ProcSampler`` reads cumulative CPU time
(user + system, all threads) and resident memory of a set of processes.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
LISTEN = "0A"


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """Inodes of TCP sockets listening on ``port`` (IPv4 and IPv6)."""
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def find_listener(port: int, proc: Path = Path("/proc")) -> int | None:
    """PID of a process listening on TCP ``port``, or None (not found, or not ours to see)."""
    targets = {f"socket:[{inode}]" for inode in listening_inodes(port, proc)}
    if not targets:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                try:
                    if os.readlink(fd) in targets:
                        return int(entry.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def read_cpu_rss(pid: int, proc: Path = Path("/proc")) -> tuple[float, int] | None:
    """(CPU seconds used so far, resident bytes) of ``pid``; None once it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    utime, stime, rss_pages = int(fields[11]), int(fields[12]), int(fields[21])
    return (utime + stime) / CLK_TCK, rss_pages * PAGE


@dataclass
class ProcSampler:
    """Samples of a group of processes: (time, CPU % of one core since the last sample, RSS)."""

    pids: list[int]
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    cpu_total: float = 0.0  # CPU seconds used between the first and the last sample
    _last: tuple[float, float] | None = None
    _seen: dict[int, float] = field(default_factory=dict)

    def sample(self, now: float) -> None:
        cpu = 0.0
        rss = 0
        for pid in self.pids:
            got = read_cpu_rss(pid)
            if got is None:  # gone: keep what it used up to its last sample
                cpu += self._seen.get(pid, 0.0)
                continue
            self._seen[pid] = got[0]
            cpu += got[0]
            rss += got[1]
        if self._last is not None:
            dt = now - self._last[0]
            used = max(0.0, cpu - self._last[1])
            self.cpu_total += used
            self.samples.append((now, 100.0 * used / dt if dt > 0 else 0.0, rss))
        else:
            self.samples.append((now, 0.0, rss))
        self._last = (now, cpu)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds used in [start, end], from the samples (whole intervals)."""
        total = 0.0
        for (t0, _, _), (t1, pct, _) in zip(self.samples, self.samples[1:], strict=False):
            if t0 >= start and t1 <= end:
                total += pct / 100.0 * (t1 - t0)
        return total
