"""A clip cache directory the smoke runs share (the clip is encoded once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sfu.client.media import ClipParams, load_clip


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = Path(os.environ.get("SFU_CLIP_DIR") or tmp_path_factory.mktemp("clip"))
    load_clip(directory, ClipParams(seconds=5))
    return directory
