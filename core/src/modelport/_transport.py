"""HTTP I/O: httpx for sync callers, aiohttp for async ones, behind one small interface.

The async side uses aiohttp because the concurrency benchmark measured httpx's
AsyncClient far below it (see the README's figures); the sync side keeps httpx for its
pooled, kept-alive connections. Both are imported only when a client first sends, so
``import modelport`` stays light. Transport failures become ``APIConnectionError`` /
``APITimeoutError`` here; HTTP statuses are the pipeline's business.
"""

from __future__ import annotations

import atexit
import json
import weakref
from typing import Any, AsyncIterator, Dict, Iterator, Optional

from ._wire import WireRequest, WireResponse
from .errors import APIConnectionError, APITimeoutError, ProviderError, StreamInterruptedError

__all__ = ["SyncTransport", "AsyncTransport", "encode_json"]


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON, as OpenAI's SDK sends it (one encoder, built once)."""
    return _ENCODE(body).encode("utf-8")


def _body(request: WireRequest) -> Dict[str, Any]:
    """httpx keyword arguments for the request body."""
    if request.json is not None:
        headers = request.headers
        if "content-type" not in {k.lower() for k in headers}:
            headers = {**headers, "Content-Type": "application/json"}
        return {"content": encode_json(request.json), "headers": headers}
    if request.files is not None or request.data is not None:
        return {"data": request.data, "files": request.files, "headers": request.headers}
    return {"content": request.content, "headers": request.headers}


def _connection_error(exc: BaseException, request: WireRequest) -> ProviderError:
    name = type(exc).__name__
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return APITimeoutError(f"no answer from {_origin(request.url)} in time ({name})")
    return APIConnectionError(f"could not reach {_origin(request.url)}: {name}: {exc}")


def _origin(url: str) -> str:
    # The path may carry a key in a query string (some providers do that): show host only.
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


class SyncStreamHandle:
    """An open streaming response: its head, then its body in network-sized pieces."""

    def __init__(self, response: Any, head: WireResponse, request: WireRequest) -> None:
        self._response = response
        self.head = head
        self._request = request

    def iter_bytes(self) -> Iterator[bytes]:
        import httpx

        response = self._response
        # Without a content encoding the raw body is the body: skip httpx's decoder layer.
        pieces = response.iter_bytes() if "content-encoding" in self.head.headers else response.iter_raw()
        try:
            yield from pieces
        except httpx.TransportError as exc:
            raise StreamInterruptedError(
                f"stream from {_origin(self._request.url)} broke: {type(exc).__name__}: {exc}"
            ) from exc

    def read(self) -> bytes:
        return b"".join(self.iter_bytes())

    def close(self) -> None:
        self._response.close()


class SyncTransport:
    """Sends ``WireRequest`` s over one pooled ``httpx.Client``."""

    def __init__(self, http_client: Optional[Any] = None, *, httpx_transport: Optional[Any] = None) -> None:
        import httpx

        self._own = http_client is None
        self.client = http_client or httpx.Client(
            transport=httpx_transport,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            follow_redirects=True,
        )

    def _build(self, request: WireRequest, timeout: Optional[float]) -> Any:
        return self.client.build_request(request.method, request.url, timeout=timeout, **_body(request))

    def send(self, request: WireRequest, timeout: Optional[float]) -> WireResponse:
        import httpx

        try:
            response = self.client.send(self._build(request, timeout))
        except httpx.TransportError as exc:
            raise _connection_error(exc, request) from exc
        return WireResponse(response.status_code, _headers(response.headers), response.content, request)

    def stream(self, request: WireRequest, timeout: Optional[float]) -> SyncStreamHandle:
        import httpx

        try:
            response = self.client.send(self._build(request, timeout), stream=True)
        except httpx.TransportError as exc:
            raise _connection_error(exc, request) from exc
        head = WireResponse(response.status_code, _headers(response.headers), b"", request)
        return SyncStreamHandle(response, head, request)

    def close(self) -> None:
        if self._own:
            self.client.close()


def _headers(headers: Any) -> Dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


class AsyncStreamHandle:
    def __init__(self, response: Any, head: WireResponse, request: WireRequest) -> None:
        self._response = response
        self.head = head
        self._request = request

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        import asyncio

        import aiohttp

        try:
            async for piece in self._response.content.iter_any():
                yield piece
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise StreamInterruptedError(
                f"stream from {_origin(self._request.url)} broke: {type(exc).__name__}: {exc}"
            ) from exc

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_bytes()])

    async def close(self) -> None:
        self._response.release()


def _abandon(session: Any) -> None:
    """Mark a session of a finished event loop closed; its loop can no longer close it."""
    connector = session.connector
    if connector is not None:
        try:
            connector._close()
        except Exception:  # the loop is gone; nothing more can be released from here
            pass


_LIVE_ASYNC_TRANSPORTS: "weakref.WeakSet[AsyncTransport]" = weakref.WeakSet()


@atexit.register
def _abandon_at_exit() -> None:
    # asyncio.run() closes its loop but not sessions opened on it (the module-level
    # functions' shared client); mark them closed so shutdown is quiet.
    for transport in list(_LIVE_ASYNC_TRANSPORTS):
        for session in transport._sessions.values():
            if not session.closed:
                _abandon(session)


class AsyncTransport:
    """Sends ``WireRequest`` s over an aiohttp session, one per event loop."""

    def __init__(self, session: Optional[Any] = None, *, limit: int = 100) -> None:
        self._given = session
        # aiohttp sessions belong to one event loop: keep one per loop, so that one client
        # (the module functions' shared one) serves several threads' loops at once.
        self._sessions: Dict[Any, Any] = {}
        self._limit = limit
        _LIVE_ASYNC_TRANSPORTS.add(self)

    def _current_session(self) -> Any:
        if self._given is not None:
            return self._given
        import asyncio

        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            import aiohttp

            self._forget_finished_loops()
            session = self._sessions[loop] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                auto_decompress=True,
            )
        return session

    def _forget_finished_loops(self) -> None:
        for loop, session in list(self._sessions.items()):
            if loop.is_closed():
                if not session.closed:
                    _abandon(session)
                del self._sessions[loop]

    def _kwargs(self, request: WireRequest, timeout: Optional[float], stream: bool) -> Dict[str, Any]:
        import aiohttp

        if timeout is None:
            client_timeout = aiohttp.ClientTimeout(total=None)
        elif stream:
            client_timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        else:
            client_timeout = aiohttp.ClientTimeout(total=timeout)
        kwargs: Dict[str, Any] = {"timeout": client_timeout}
        headers = dict(request.headers)
        if request.json is not None:
            if "content-type" not in {k.lower() for k in headers}:
                headers["Content-Type"] = "application/json"
            kwargs["data"] = encode_json(request.json)
        elif request.files is not None or request.data is not None:
            form = aiohttp.FormData()
            for key, value in (request.data or {}).items():
                for item in value if isinstance(value, list) else [value]:  # lists: repeated fields
                    form.add_field(key, str(item))
            for key, (filename, content, content_type) in (request.files or {}).items():
                form.add_field(key, content, filename=filename, content_type=content_type)
            kwargs["data"] = form
        elif request.content is not None:
            kwargs["data"] = request.content
        kwargs["headers"] = headers
        return kwargs

    async def send(self, request: WireRequest, timeout: Optional[float]) -> WireResponse:
        import asyncio

        import aiohttp

        session = self._current_session()
        try:
            async with session.request(request.method, request.url, **self._kwargs(request, timeout, False)) as resp:
                content = await resp.read()
                return WireResponse(resp.status, _headers(resp.headers), content, request)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _connection_error(exc, request) from exc

    async def stream(self, request: WireRequest, timeout: Optional[float]) -> AsyncStreamHandle:
        import asyncio

        import aiohttp

        session = self._current_session()
        try:
            resp = await session.request(request.method, request.url, **self._kwargs(request, timeout, True))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _connection_error(exc, request) from exc
        head = WireResponse(resp.status, _headers(resp.headers), b"", request)
        return AsyncStreamHandle(resp, head, request)

    async def close(self) -> None:
        """Close this loop's session (sessions of finished loops are let go)."""
        import asyncio

        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()
        self._forget_finished_loops()
