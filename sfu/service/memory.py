"""Giving freed heap back to the system (glibc's ``malloc_trim``).

A server that churns participants frees megabytes of native memory per call (aiortc's OpenSSL
and libsrtp contexts, PyAV and cffi buffers, packet caches). glibc keeps freed heap for reuse and
returns only what sits at the top of the heap, so with churn RSS creeps up although nothing is
alive: the soak measured about +5 MiB/min at 20 consultations, and an explicit ``malloc_trim``
brought RSS back to the same level minute after minute (what is alive did not grow). Trimming
once a minute keeps RSS where the live memory is, which is what an ops team's memory alerts
watch. Elsewhere (musl, macOS) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL = 60.0
"""Seconds between trims: a trim walks the heap (a few milliseconds at a few hundred MiB)."""


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load_trim()


def trim_available() -> bool:
    return _TRIM is not None


def trim() -> bool:
    """Return freed heap to the system; True when some was returned."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))
