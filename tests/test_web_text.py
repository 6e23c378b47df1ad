"""Names chosen by strangers (patients at entry, guests) reach staff's dashboards and call tiles:
the web client sets text with ``textContent`` only, never through an HTML parser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parent.parent / "sfu" / "web"
HTML_SINKS = re.compile(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|"
                        r"createContextualFragment|DOMParser|srcdoc")


@pytest.mark.parametrize("script", sorted(WEB.glob("*.js")), ids=lambda p: p.name)
def test_no_script_parses_text_as_html(script: Path) -> None:
    found = [f"{script.name}:{n}: {line.strip()}"
             for n, line in enumerate(script.read_text().splitlines(), 1) if HTML_SINKS.search(line)]
    assert not found, found
