"""Display names, free text, opaque ids and timestamps: small pure helpers."""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import UTC, datetime

from sfu.errors import bad_request

NAME_MAX = 64
MESSAGE_MAX = 500
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""A clinic or meeting-room id: opaque, 1-64 letters, digits, '-' and '_'."""

_ID = re.compile(ID_PATTERN)

# Bidirectional overrides and isolates: invisible characters that reorder what staff read.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# Characters that draw nothing but are letters or symbols, not format characters: Hangul fillers,
# the braille blank, Mongolian vowel separator. A name of them alone looks empty.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
_ZWJ = "\u200d"
MAX_COMBINING = 3  # combining marks on one character: more only draws over the lines around it


def _refused(ch: str, allow_newline: bool) -> bool:
    if allow_newline and ch == "\n":
        return False
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI


def _invisible(text: str, i: int) -> bool:
    """A format character (zero-width space, joiners, soft hyphen, BOM, tags, ...) or a blank
    letter, to be left out; a zero-width joiner between two emoji is kept (family emoji)."""
    ch = text[i]
    if ch in _BLANK:
        return True
    if unicodedata.category(ch) != "Cf":
        return False
    if ch == _ZWJ and 0 < i < len(text) - 1:
        before, after = text[i - 1], text[i + 1]
        return not (unicodedata.category(before) in ("So", "Sk", "Mn")
                    and unicodedata.category(after) == "So")
    return True


def normalize_name(value: str) -> str:
    """NFC; invisible characters left out; runs of combining marks cut to ``MAX_COMBINING``;
    every run of white space one space; trimmed. (Control characters are refused, not here.)"""
    text = unicodedata.normalize("NFC", value)
    out: list[str] = []
    marks = 0
    for i, ch in enumerate(text):
        if _invisible(text, i):
            continue
        category = unicodedata.category(ch)
        if category in ("Mn", "Me"):
            marks += 1
            if marks > MAX_COMBINING:
                continue
        else:
            marks = 0
        if ch.isspace():
            if out and out[-1] == " ":
                continue
            ch = " "
        out.append(ch)
    return "".join(out).strip()


def clean_name(value: object, field: str = "name", max_len: int = NAME_MAX) -> str:
    """A display name shown to staff (dashboards, call tiles): a string without control
    characters or bidirectional controls (else 400), then ``normalize_name``d: 1..max_len
    characters (else 400)."""
    if not isinstance(value, str):
        raise bad_request(f"'{field}' is required and must be a string")
    if any(_refused(ch, allow_newline=False) for ch in value if ch not in "\t"):
        raise bad_request(f"'{field}' must not contain control characters or "
                          "bidirectional controls")
    name = normalize_name(value)
    if not name:
        raise bad_request(f"'{field}' must not be empty (or only invisible characters)")
    if len(name) > max_len:
        raise bad_request(f"'{field}' must be at most {max_len} characters")
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
