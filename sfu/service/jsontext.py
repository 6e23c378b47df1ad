"""JSON text from outside (HTTP bodies, WebSocket messages), parsed with one kind of failure."""

from __future__ import annotations

import json
from typing import Any


def parse_json(text: str | bytes) -> Any:
    """``json.loads``, raising ``ValueError`` for anything that is not JSON. Deep nesting (a
    64 KiB body of ``[`` is 65,536 levels) makes ``json`` raise ``RecursionError``, which is not
    a ``ValueError``: it escaped as an HTTP 500 and ended the WebSocket session."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
