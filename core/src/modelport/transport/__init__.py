"""HTTP I/O for the engine: httpx for sync callers, aiohttp for async ones.

The async side uses aiohttp because the concurrency benchmark measured httpx's
AsyncClient far below it; the sync side keeps httpx for its pooled, kept-alive
connections. Neither library (nor ``ssl``) is imported until a transport is built or
used, so ``import modelport`` stays light.

Both sides give ``Timeout`` the same meaning, bound the number of connections in flight
(``max_connections``; a call waits up to ``Timeout.pool`` for a slot, then raises
``PoolTimeoutError``), and turn transport failures into ``APITimeoutError`` /
``APIConnectionError`` / ``StreamInterruptedError`` that name the upstream's origin only.
HTTP statuses are not errors here: they are the pipeline's business.
"""

from ._async import AsyncHTTPTransport, AsyncStreamHandle
from ._errors import PoolTimeoutError
from ._sync import SyncHTTPTransport, SyncStreamHandle, encode_json
from ._timeout import Timeout

__all__ = [
    "Timeout",
    "SyncHTTPTransport",
    "SyncStreamHandle",
    "AsyncHTTPTransport",
    "AsyncStreamHandle",
    "PoolTimeoutError",
    "encode_json",
]
