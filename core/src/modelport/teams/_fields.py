"""The fields admin requests (and the CLI) set on keys, teams and users: LiteLLM's names,
checked once here, turned into column values. No database driver is imported."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple

from ._keys import KEY_PREFIX, add_duration, parse_duration

__all__ = ["TeamsError", "KEY_FIELDS", "TEAM_FIELDS", "USER_FIELDS", "parse_fields", "parse_time", "parse_date"]


class TeamsError(Exception):
    """A request the teams API refuses, with the HTTP status and OpenAI-style code to answer."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request", param: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param


_BUDGET = frozenset({"models", "max_budget", "budget_duration", "spend", "rpm_limit", "tpm_limit", "max_parallel_requests", "metadata", "blocked"})
#: Fields of ``/key/generate`` and ``/key/update`` (``key``: a chosen key, generate only).
KEY_FIELDS: FrozenSet[str] = _BUDGET | {"key_alias", "user_id", "team_id", "duration", "expires", "key"}
TEAM_FIELDS: FrozenSet[str] = _BUDGET | {"team_id", "team_alias"}
USER_FIELDS: FrozenSet[str] = _BUDGET | {"user_id", "user_email", "user_role"}
_TEXT = {"key_alias", "user_id", "team_id", "team_alias", "user_email", "user_role"}
_COUNTS = {"rpm_limit", "tpm_limit", "max_parallel_requests"}


def _fail(name: str, wanted: str, value: Any) -> TeamsError:
    shown = repr(value)
    return TeamsError(f"'{name}' must be {wanted}, got {shown[:60]}", param=name)


def parse_time(name: str, value: Any) -> Optional[dt.datetime]:
    """An ISO 8601 time (naive times are UTC) as naive UTC; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(name, "an ISO 8601 time", value)
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _fail(name, "an ISO 8601 time such as 2030-01-31T00:00:00Z", value) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed


def parse_date(name: str, value: Optional[str]) -> Optional[dt.date]:
    """A ``YYYY-MM-DD`` day (a full ISO time is cut to its day)."""
    if value is None or value == "":
        return None
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise _fail(name, "a date YYYY-MM-DD", value) from None


def _value(name: str, value: Any) -> Any:
    if name == "models":
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
            raise _fail(name, "a list of model names", value)
        return list(dict.fromkeys(value))
    if name in ("max_budget", "spend"):
        if value is None and name == "max_budget":
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise _fail(name, "a number >= 0", value)
        return float(value)
    if name in _COUNTS:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(name, "an integer >= 0", value)
        return value
    if name in ("budget_duration", "duration"):
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise TeamsError(f"'{name}': {exc}", param=name) from None
    if name == "metadata":
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _fail(name, "an object", value)
        return value
    if name == "blocked":
        if not isinstance(value, bool):
            raise _fail(name, "true or false", value)
        return value
    if name == "expires":
        return parse_time(name, value)
    if name == "key":
        if not isinstance(value, str) or not value.startswith(KEY_PREFIX) or len(value) < 20 or not value.isprintable() or " " in value:
            raise TeamsError(f"'key' must start with {KEY_PREFIX!r} and be at least 20 characters, without spaces", param="key")
        return value
    if name in _TEXT:
        if value is None:
            return None
        if not isinstance(value, str) or not value or len(value) > 255:
            raise _fail(name, "a string of 1 to 255 characters", value)
        return value
    raise AssertionError(name)  # pragma: no cover - every allowed field is handled above


def parse_fields(body: Mapping[str, Any], allowed: FrozenSet[str], now: dt.datetime) -> Tuple[Dict[str, Any], List[str]]:
    """(column values, ignored field names) for the fields of ``body`` that ``allowed`` names.

    ``budget_duration`` also sets ``budget_reset_at`` (now + duration); ``duration`` sets
    ``expires`` (now + duration; null: never); ``metadata`` becomes the ``metadata_`` attribute.
    """
    values: Dict[str, Any] = {}
    ignored = sorted(set(body) - allowed)
    for name in allowed & set(body):
        value = _value(name, body[name])
        if name == "duration":
            values["expires"] = add_duration(now, value) if value is not None else None
        elif name == "metadata":
            values["metadata_"] = value
        else:
            values[name] = value
        if name == "budget_duration":
            values["budget_reset_at"] = add_duration(now, value) if value is not None else None
    if "duration" in body and "expires" in body:
        raise TeamsError("give 'duration' or 'expires', not both", param="duration")
    return values, ignored
