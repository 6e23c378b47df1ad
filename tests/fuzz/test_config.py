"""Fuzzing the config loader (sfu/service/config.py): any TOML document, and the shipped example
mutated, load to a ``Config`` or raise ``ConfigError`` listing problems; never another
exception."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sfu.errors import ConfigError
from sfu.service.config import Config, config_from_dict, load_config
from tests.fuzz.budget import budget

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "sfu.example.toml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")


def real_secrets(value: Any) -> Any:
    """The example with its placeholder secrets (``change-me...``, refused) replaced."""
    if isinstance(value, dict):
        return {k: real_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [real_secrets(v) for v in value]
    if isinstance(value, str) and value.startswith("change-me"):
        return "fuzz-placeholder-replaced-0123456789abcdef"
    return value


EXAMPLE_RAW = real_secrets(tomllib.loads(EXAMPLE_TEXT))
SECRET = {"SFU_AUTH_SECRET": "fuzz-secret-0123456789abcdef-0123456789"}

# what tomllib gives: strings, integers of any size, floats (inf and nan too), booleans,
# dates and times, arrays and tables
toml_scalars = st.one_of(
    st.text(max_size=20), st.integers(), st.floats(), st.booleans(), st.dates(), st.times(),
    st.datetimes(), st.sampled_from(["", "0", "127.0.0.1", "10000-10100", "stun:x", "http://x",
                                     "INFO", "json", "-1", "a-b_c"]),
    st.sampled_from([0, -1, 1, 65535, 65536, 2 ** 63, 10 ** 30]),
    st.sampled_from([0.0, -0.0, 1e-300, math.inf, -math.inf, math.nan]))
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
sections = st.sampled_from(sorted(EXAMPLE_RAW)) | st.text(max_size=12)


def loads_or_lists_problems(raw: dict[str, Any]) -> Config | None:
    try:
        cfg = config_from_dict(raw, SECRET)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return None
    assert isinstance(cfg, Config)
    return cfg


def test_the_example_loads():
    assert loads_or_lists_problems(copy.deepcopy(EXAMPLE_RAW)) is not None


@budget(80, fuzz=1500)
@given(st.dictionaries(sections, toml_values, max_size=6))
def test_any_toml_document_loads_or_lists_its_problems(raw):
    loads_or_lists_problems(raw)


def leaves(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves(v, (*here, k))] or [here]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaves(v, (*here, i))] or [here]
    return [here]


EXAMPLE_LEAVES = [p for p in leaves(EXAMPLE_RAW) if p]


@st.composite
def mutated_example(draw: st.DrawFn) -> dict[str, Any]:
    """The example with a few values replaced (any type), removed, or unknown keys added."""
    raw = copy.deepcopy(EXAMPLE_RAW)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(EXAMPLE_LEAVES))
        parent: Any = raw
        try:
            for part in path[:-1]:
                parent = parent[part]
            op = draw(st.sampled_from(["replace", "delete", "add"]))
            if op == "replace":
                parent[path[-1]] = draw(toml_values)
            elif op == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=10))] = draw(toml_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation took that path away
    return raw


@budget(100, fuzz=1500)
@given(mutated_example())
@example({**EXAMPLE_RAW, "media": {**EXAMPLE_RAW["media"], "connect_timeout": math.nan}})
@example({**EXAMPLE_RAW, "server": {**EXAMPLE_RAW["server"], "drain_timeout": math.inf}})
def test_a_mutated_example_loads_or_lists_its_problems(raw):
    cfg = loads_or_lists_problems(raw)
    if cfg is not None:  # what it took are numbers the server can wait on and compare
        for section in (cfg.server, cfg.media, cfg.waiting_area, cfg.limits, cfg.bandwidth):
            for name, value in vars(section).items():
                assert not isinstance(value, float) or math.isfinite(value), (name, value)


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    lines = EXAMPLE_TEXT.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "edit", "garbage"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "edit" and lines[i]:
            j = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:j] + draw(st.text(max_size=3)) + lines[i][j + 1:]
        else:
            lines.insert(i, draw(st.text(max_size=30)))
    return "\n".join(lines)


@budget(100, fuzz=1500)
@given(st.one_of(mutated_text(), st.text(max_size=200), st.binary(max_size=200)))
@example(b"\xff\xfe[\x00s\x00e\x00r\x00v\x00e\x00r\x00]\x00")  # UTF-16: UnicodeDecodeError
def test_any_file_loads_or_lists_its_problems(tmp_path_factory: pytest.TempPathFactory, content):
    path = tmp_path_factory.mktemp("cfg") / "sfu.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path, SECRET)
    except ConfigError as exc:
        assert exc.problems
