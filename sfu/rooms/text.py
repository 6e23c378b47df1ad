"""Display names, free text, opaque ids and timestamps: small pure helpers."""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import UTC, datetime

from sfu.errors import bad_request

NAME_MAX = 80
MESSAGE_MAX = 500
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""A clinic or meeting-room id: opaque, 1-64 letters, digits, '-' and '_'."""

_ID = re.compile(ID_PATTERN)

# Bidirectional overrides and isolates: invisible characters that reorder what staff read.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def _refused(ch: str, allow_newline: bool) -> bool:
    if allow_newline and ch == "\n":
        return False
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI


def clean_name(value: object, field: str = "name", max_len: int = NAME_MAX) -> str:
    """A display name: a string, trimmed, 1..max_len characters, no control characters (else 400)."""
    if not isinstance(value, str):
        raise bad_request(f"'{field}' is required and must be a string")
    name = value.strip()
    if not name:
        raise bad_request(f"'{field}' must not be empty")
    if len(name) > max_len:
        raise bad_request(f"'{field}' must be at most {max_len} characters")
    if any(_refused(ch, allow_newline=False) for ch in name):
        raise bad_request(f"'{field}' must not contain control characters")
    return name


def clean_message(value: object, field: str = "message", max_len: int = MESSAGE_MAX) -> str:
    """Free text shown to people (may be empty, may hold newlines): trimmed, bounded (else 400)."""
    if not isinstance(value, str):
        raise bad_request(f"'{field}' must be a string")
    text = value.strip()
    if len(text) > max_len:
        raise bad_request(f"'{field}' must be at most {max_len} characters")
    if any(_refused(ch, allow_newline=True) for ch in text):
        raise bad_request(f"'{field}' must not contain control characters")
    return text


def valid_id(value: str) -> bool:
    """Whether ``value`` is a valid clinic or meeting-room id (``ID_PATTERN``)."""
    return bool(_ID.match(value))


def new_id(prefix: str) -> str:
    """An opaque random id: ``prefix`` + 16 URL-safe characters (96 random bits)."""
    return prefix + secrets.token_urlsafe(12)


def iso_time(t: float) -> str:
    """Seconds since the epoch as an ISO 8601 UTC timestamp, e.g. ``2024-05-01T09:30:00Z``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
