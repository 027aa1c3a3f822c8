"""Transport failures as modelport errors: one table per HTTP library, matched by type.

Messages name the upstream by its ``scheme://host:port`` origin only: a URL's path and
query (some providers take the key there) and its ``user:password@`` never appear.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Optional, Tuple, Type

from ..errors import APIConnectionError, APITimeoutError, ProviderError, StreamInterruptedError

__all__ = ["PoolTimeoutError", "ErrorTable", "httpx_errors", "aiohttp_errors", "to_provider_error", "origin"]


class PoolTimeoutError(APITimeoutError):
    """Every connection of the transport's pool stayed busy for longer than ``Timeout.pool``."""

    def __init__(self, message: str, *, max_connections: Optional[int] = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.max_connections = max_connections


def pool_timeout(transport: str, max_connections: int, waited: Optional[float]) -> PoolTimeoutError:
    return PoolTimeoutError(
        f"no free connection after waiting {waited}s: all {max_connections} connections of the pool "
        f"are busy; raise the pool size with {transport}(max_connections=...) or wait longer with "
        "Timeout(pool=...)",
        max_connections=max_connections,
    )


#: (transport exception type, modelport error class), first match wins.
ErrorTable = Tuple[Tuple[Type[BaseException], Type[ProviderError]], ...]


def import_httpx() -> ModuleType:
    """httpx without its command-line client.

    ``httpx/__init__`` imports ``httpx._main``, which pulls click and pygments (about 12 ms
    of a cold start) whenever they happen to be installed; a library that only sends
    requests never runs it. Blocking that one import while httpx loads makes httpx fall
    back to its own stub for ``httpx.main``; the ``httpx`` command runs in its own process
    and is unaffected, and ``import httpx._main`` still works afterwards.
    """
    loaded = sys.modules.get("httpx")
    if loaded is not None:
        return loaded
    block = "httpx._main" not in sys.modules
    if block:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]  # None: "not importable"
    try:
        import httpx
    finally:
        if block and "httpx._main" in sys.modules and sys.modules["httpx._main"] is None:
            del sys.modules["httpx._main"]
    return httpx


@functools.cache
def httpx_errors() -> ErrorTable:
    import_httpx()
    import httpx

    return (
        (httpx.TimeoutException, APITimeoutError),
        (httpx.TransportError, APIConnectionError),
    )


@functools.cache
def aiohttp_errors() -> ErrorTable:
    import asyncio

    import aiohttp

    return (
        (aiohttp.ServerTimeoutError, APITimeoutError),
        (asyncio.TimeoutError, APITimeoutError),
        (TimeoutError, APITimeoutError),
        (aiohttp.ClientError, APIConnectionError),
        (OSError, APIConnectionError),  # a socket error aiohttp let through unwrapped
    )


def catches(table: ErrorTable) -> Tuple[Type[BaseException], ...]:
    """The exception types to catch for ``table`` (for an ``except`` clause)."""
    return tuple(exc_type for exc_type, _ in table)


def to_provider_error(
    exc: BaseException, url: str, table: ErrorTable, *, streaming: bool = False, body: bool = False
) -> ProviderError:
    """The modelport error for ``exc``, raised while talking to ``url``.

    ``streaming``: it broke a streamed body being read (``StreamInterruptedError``);
    ``body``: it broke the reading of a whole response's body.
    """
    kind: Type[ProviderError] = APIConnectionError
    for exc_type, error_class in table:
        if isinstance(exc, exc_type):
            kind = error_class
            break
    where = origin(url)
    name = type(exc).__name__
    detail = _scrub(str(exc), url, where)
    detail = f"{name}: {detail}" if detail else name
    timed_out = issubclass(kind, APITimeoutError)
    if streaming:
        if timed_out:
            return StreamInterruptedError(f"stream from {where} stalled: no data within the read timeout ({detail})")
        return StreamInterruptedError(f"stream from {where} broke: {detail}")
    if timed_out:
        if body:
            return kind(f"timed out reading the response body from {where} ({detail})")
        return kind(f"timed out waiting for {where} ({detail})")
    if body:
        return kind(f"the connection to {where} broke while reading the response body: {detail}")
    return kind(f"could not complete the request to {where}: {detail}")


_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: no userinfo, path, query or fragment."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "[unparsable URL]"
    netloc = rest
    for stop in "/?#":
        netloc = netloc.split(stop, 1)[0]
    host = netloc.rpartition("@")[2]
    head, colon, port = host.rpartition(":")
    has_port = bool(colon) and port.isdigit() and (not head.startswith("[") or head.endswith("]"))
    if not has_port:
        default = _DEFAULT_PORTS.get(scheme.lower())
        if default:
            host = f"{host}:{default}"
    return f"{scheme.lower()}://{host}"


def _scrub(text: str, url: str, where: str) -> str:
    """``text`` with every secret-bearing part of ``url`` taken out."""
    if not text:
        return text
    text = text.replace(url, where)
    _, _, rest = url.partition("://")
    netloc, _, _ = rest.partition("/")
    netloc = netloc.split("?", 1)[0].split("#", 1)[0]
    path_and_more = rest[len(netloc) :]
    userinfo = netloc.rpartition("@")[0]
    secrets = [path_and_more if len(path_and_more) > 1 else "", userinfo]
    query = path_and_more.partition("?")[2]
    path = path_and_more.partition("?")[0]
    secrets += [query.partition("#")[0], path if len(path) > 1 else "", userinfo.partition(":")[2]]
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text
