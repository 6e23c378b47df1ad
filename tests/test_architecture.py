"""The layers hold: service > calls > rooms > (transport | bandwidth), config only at the top,
nothing imports the CLI, and no import cycles. Imports under ``TYPE_CHECKING`` count.

The contracts live in pyproject.toml (``[tool.importlinter]``); ``lint-imports`` checks them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent


def lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert found is not None, "lint-imports is missing: pip install -e '.[dev]'"
    return found


def test_import_contracts_hold() -> None:
    result = subprocess.run(
        [lint_imports(), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = result.stdout + result.stderr
    broken = report[report.find("Broken contracts"):] if "Broken contracts" in report else report
    if result.returncode != 0:
        pytest.fail(f"import contracts broken (lint-imports):\n{broken}", pytrace=False)


def find_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Every import ``a -> b`` for which ``b`` leads back to ``a``, as the cycle it closes."""
    cycles: dict[frozenset[str], tuple[str, ...]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.setdefault(frozenset(back), (importer, *back))
    return list(cycles.values())


def test_no_import_cycle_between_modules() -> None:
    """Module by module, including a package's ``__init__`` (which the ``acyclic_siblings``
    contract, comparing sibling packages, does not look at)."""
    graph = grimp.build_graph("sfu", exclude_type_checking_imports=False, cache_dir=None)
    cycles = find_cycles(graph)
    if cycles:
        pytest.fail("import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles), pytrace=False)


def test_a_cycle_is_found() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    assert find_cycles(graph) == []
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert find_cycles(graph) == [("pkg.a", "pkg.b", "pkg.c", "pkg.a")]
