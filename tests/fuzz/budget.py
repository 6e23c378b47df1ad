"""Hypothesis budgets for the fuzz tests: small and reproducible in ``make test``, large in
``make fuzz``.

``HYPOTHESIS_PROFILE=fuzz`` (what ``make fuzz`` sets) multiplies each test's example count by
``FUZZ_SCALE`` (or takes the larger count the test names) and draws fresh random inputs each run; the default profile, ``ci``, is
derandomized (the same inputs every run, so CI is reproducible). No deadline: several targets do
real I/O on a machine shared with other tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ_SCALE = 100
SCALE = FUZZ_SCALE if PROFILE == "fuzz" else 1

_COMMON: dict[str, Any] = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                              HealthCheck.function_scoped_fixture],
}
settings.register_profile("ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("fuzz", **_COMMON)

F = TypeVar("F", bound=Callable[..., Any])


def budget(examples: int, fuzz: int | None = None) -> Callable[[F], F]:
    """``@settings`` with ``examples`` cases in ``make test``; under ``make fuzz``, ``fuzz``
    cases, or ``FUZZ_SCALE`` times ``examples`` (a test whose examples cost tens of milliseconds,
    a real server's round trips or the config loader's converter, names its own)."""
    if PROFILE != "fuzz":
        return settings(max_examples=examples)  # type: ignore[return-value]
    return settings(max_examples=fuzz if fuzz is not None else examples * SCALE)  # type: ignore[return-value]
