"""``Timeout``: how long each phase of an HTTP call may take, the same for sync and async."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import attrs

from ..errors import InvalidRequestError

__all__ = ["Timeout"]

_WHAT_TO_PASS = (
    "pass a positive number of seconds, None for no limit, or "
    "modelport.transport.Timeout(connect=, read=, write=, pool=, total=)"
)


def _seconds(instance: Any, attribute: Any, value: Optional[float]) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise InvalidRequestError(
            f"timeout {attribute.name}={value!r} is not allowed: each phase is None (no limit) "
            "or a positive, finite number of seconds",
            param="timeout",
            allowed="None or a positive number of seconds",
        )


@attrs.frozen(cache_hash=True)
class Timeout:
    """Limits, in seconds, for one HTTP call; ``None`` means no limit.

    * ``connect``: opening the connection (TCP and TLS).
    * ``write``: each send of the request to the network.
    * ``read``: each network read (waiting for the head, then for each piece of the body).
    * ``pool``: waiting for a free connection slot when all ``max_connections`` are busy;
      exceeding it raises ``PoolTimeoutError``. The wait is not counted in ``total``.
    * ``total``: the whole call from the moment it has a connection slot. A non-streaming
      call must have read its complete body by then; a streaming call must have its
      response head by then, after which only ``read`` applies, per network read.

    aiohttp (async) has no per-write limit: there ``write`` is covered by ``total`` only.
    """

    connect: Optional[float] = attrs.field(default=None, validator=_seconds)
    read: Optional[float] = attrs.field(default=None, validator=_seconds)
    write: Optional[float] = attrs.field(default=None, validator=_seconds)
    pool: Optional[float] = attrs.field(default=None, validator=_seconds)
    total: Optional[float] = attrs.field(default=None, validator=_seconds)

    @classmethod
    def of(cls, value: "Timeout | float | None") -> "Timeout":
        """The ``Timeout`` meant by a call's ``timeout=`` argument.

        ``None``: no limits. A number ``T``: ``connect``, ``read``, ``write`` and ``total``
        are ``T``; ``pool`` stays unlimited (a call queued behind a full pool is not failed
        by its own timeout). A ``Timeout`` is returned as it is.
        """
        if value.__class__ is cls:
            return value
        cached = _OF_CACHE.get(value) if value.__class__ in (int, float) or value is None else None
        if cached is not None:
            return cached
        if isinstance(value, Timeout):
            return value
        if value is None:
            result = cls()
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequestError(
                f"timeout={value!r} ({type(value).__name__}) is not a timeout: {_WHAT_TO_PASS}",
                param="timeout",
                allowed=_WHAT_TO_PASS,
            )
        elif not value > 0 or math.isinf(value):
            raise InvalidRequestError(
                f"timeout={value!r} is not allowed: {_WHAT_TO_PASS}",
                param="timeout",
                allowed=_WHAT_TO_PASS,
            )
        else:
            result = cls(connect=value, read=value, write=value, pool=None, total=value)
        if len(_OF_CACHE) < 256:  # a call site passes the same few values over and over
            _OF_CACHE[value] = result
        return result


_OF_CACHE: Dict[Optional[float], Timeout] = {}
