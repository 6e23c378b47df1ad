"""Fixtures for tests over real constrained links (network namespaces, veth, tc tbf).

Run them with ``python -m pytest tests/netns -m netns -s`` (as root: they create namespaces).
Without the privileges they are skipped, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import netns


@pytest.fixture(scope="module")
def lab() -> Iterator[netns.Lab]:
    ok, why = netns.available()
    if not ok:
        pytest.skip(f"constrained-link tests need network namespaces: {why}")
    with netns.Lab() as made:
        yield made


@pytest.fixture(scope="session")
def netns_clip_dir() -> Path:
    """Where the clip is cached, shared with the client subprocesses (``--clip-dir``)."""
    from sfu.client.media import default_clip_dir

    return Path(os.environ.get("SFU_CLIP_DIR") or default_clip_dir())
