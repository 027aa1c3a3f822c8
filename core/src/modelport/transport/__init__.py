"""HTTP I/O for the engine: http.client / httpx for sync callers, aiohttp for async ones.

The async side uses aiohttp because the concurrency benchmark measured httpx's
AsyncClient far below it; the sync side sends plain http:// over the standard library's
http.client (a local upstream's first call imports no httpx, and each call costs less)
and everything else (TLS, proxies, forms) over httpx's pooled, kept-alive connections.
No HTTP library (nor ``ssl``) is imported until a transport is built or used, so
``import modelport`` stays light.

Both sides give ``Timeout`` the same meaning, bound the number of connections in flight
(``max_connections``; a call waits up to ``Timeout.pool`` for a slot, then raises
``PoolTimeoutError``), and turn transport failures into ``APITimeoutError`` /
``APIConnectionError`` / ``StreamInterruptedError`` that name the upstream's origin only.
HTTP statuses are not errors here: they are the pipeline's business.
"""

from typing import TYPE_CHECKING, Any

from ._errors import PoolTimeoutError
from ._sync import SyncHTTPTransport, SyncStreamHandle, encode_json
from ._timeout import Timeout

if TYPE_CHECKING:
    from ._async import AsyncHTTPTransport, AsyncStreamHandle

__all__ = [
    "Timeout",
    "SyncHTTPTransport",
    "SyncStreamHandle",
    "AsyncHTTPTransport",
    "AsyncStreamHandle",
    "PoolTimeoutError",
    "encode_json",
]


def __getattr__(name: str) -> Any:
    # The async side is loaded by its first user: a sync program never pays for it.
    if name in ("AsyncHTTPTransport", "AsyncStreamHandle"):
        from . import _async

        return getattr(_async, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
