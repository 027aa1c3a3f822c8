"""Virtual keys and durations: new keys, their SHA-256 hashes, LiteLLM's duration strings.

Nothing here imports a database driver: the CLI and the gateway import it cheaply.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import re
import secrets
from typing import Optional

__all__ = ["KEY_PREFIX", "new_key", "hash_key", "token_of", "key_name", "parse_duration", "add_duration", "utcnow", "iso"]

#: Virtual keys look like OpenAI's: ``sk-`` and 43 random URL-safe characters (256 bits).
KEY_PREFIX = "sk-"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|mo)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def new_key() -> str:
    """A new virtual key; only its hash is ever stored."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256 hex digest (LiteLLM's ``hash_token``)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def token_of(value: str) -> str:
    """A key's hash from the key itself or from its hash (64 hex digits, as admin APIs accept)."""
    value = value.strip()
    return value if _HEX64.match(value) else hash_key(value)


def key_name(key: str) -> str:
    """The displayable abbreviation of a key (``sk-...wxyz``), as LiteLLM shows it."""
    return f"{KEY_PREFIX}...{key[-4:]}"


def parse_duration(text: str) -> str:
    """``text`` checked as a LiteLLM duration (``30s``, ``10m``, ``1h``, ``30d``, ``2w``, ``1mo``);
    raises ``ValueError`` naming the accepted forms."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration; use a number and a unit: 30s, 10m, 1h, 30d, 2w, 1mo")
    return text.strip()


def add_duration(start: dt.datetime, text: str) -> dt.datetime:
    """``start`` plus the duration ``text`` (months are calendar months, the day clamped)."""
    match = _DURATION.match(parse_duration(text))
    assert match is not None
    count, unit = int(match.group(1)), match.group(2)
    if unit != "mo":
        return start + dt.timedelta(seconds=count * _SECONDS[unit])
    month_index = start.month - 1 + count
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def utcnow() -> dt.datetime:
    """Now in UTC, naive (the database stores naive UTC times on every backend)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def iso(value: Optional[dt.datetime]) -> Optional[str]:
    """A stored (naive UTC) time as ISO 8601 with its offset."""
    return value.replace(tzinfo=dt.timezone.utc).isoformat() if value is not None else None
