"""Freed heap goes back to the system (sfu/service/memory.py): what kept the soak's RSS climbing."""

from __future__ import annotations

import ctypes
import sys

import pytest

from sfu.service import memory


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_returns_freed_heap_that_glibc_keeps() -> None:
    assert memory.trim_available()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # 120 MiB in 40 KiB blocks (under the mmap threshold: on the heap), each touched so it is
    # resident; then all freed but the last, which pins the heap's top so glibc keeps the rest
    blocks = [libc.malloc(40 * 1024) for _ in range(3072)]
    for b in blocks:
        ctypes.memset(b, 1, 40 * 1024)
    for b in blocks[:-1]:
        libc.free(b)
    held = rss_kib()
    assert memory.trim()
    after = rss_kib()
    libc.free(blocks[-1])
    assert held - after > 60 * 1024, f"RSS {held} -> {after} KiB"
