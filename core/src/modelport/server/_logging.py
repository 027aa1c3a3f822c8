"""Masking credentials in log text (the access log prints request lines as they came)."""

from __future__ import annotations

import re

__all__ = ["redact_text"]

_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s@]+@")
_QUERY_SECRET = re.compile(r"([?&](?:api[_-]?key|key|token|access_token|master_key|password|secret)=)[^&\s\"']+", re.IGNORECASE)
_BEARER = re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with URL userinfo, key-like query parameters and bearer tokens masked."""
    text = _USERINFO.sub(r"\1[REDACTED]@", text)
    text = _QUERY_SECRET.sub(r"\1[REDACTED]", text)
    return _BEARER.sub(r"\1[REDACTED]", text)
