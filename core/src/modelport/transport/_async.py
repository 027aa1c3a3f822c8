"""Async HTTP over aiohttp, one session per running event loop.

aiohttp is imported when a loop first sends (asyncio when a transport is built: it
imports ``ssl``). A session belongs to the loop it was made on, so each loop gets its own,
owned by an async generator the loop knows about: ``asyncio.run`` finalises async
generators before closing its loop (``loop.shutdown_asyncgens()``), which closes the
session there, while the loop still runs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator, Callable, Dict, Optional, Tuple, Type, Union

from ..errors import InvalidRequestError
from ..provider import WireRequest, WireResponse
from ._errors import ErrorTable, aiohttp_errors, catches, pool_timeout, to_provider_error
from ._sync import USER_AGENT, check_pool_size, checked_headers, encode_json, environment_has_proxies, json_headers
from ._timeout import Timeout

if TYPE_CHECKING:
    import asyncio
    import ssl
    from types import TracebackType

    import aiohttp
    from multidict import CIMultiDictProxy

__all__ = ["AsyncHTTPTransport", "AsyncStreamHandle"]


def _form_value(value: Any) -> str:
    """A form field's text, as httpx writes it (so sync and async send the same)."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _headers(raw: "CIMultiDictProxy[str]") -> Dict[str, str]:
    """Lower-cased names; a repeated header's values joined with ", " (as httpx does)."""
    out: Dict[str, str] = {}
    for key, value in raw.items():
        key = key.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


class _LoopState:
    """What one event loop uses: its session, its connection slots, the session's owner."""

    __slots__ = ("session", "slots", "owner")

    def __init__(
        self, session: aiohttp.ClientSession, slots: asyncio.Semaphore, owner: AsyncGenerator[Any, None]
    ) -> None:
        self.session = session
        self.slots = slots
        self.owner = owner


class AsyncStreamHandle:
    """An open streaming response: ``head`` (status and headers), then the body as it
    arrives. Holds a connection slot until closed (or read to the end)."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        head: WireResponse,
        url: str,
        slots: asyncio.Semaphore,
        loop: asyncio.AbstractEventLoop,
        table: ErrorTable,
        catch: Tuple[Type[BaseException], ...],
    ) -> None:
        self._loop = loop
        self._response = response
        self.head = head
        self._url = url
        self._slots: Optional[asyncio.Semaphore] = slots
        self._table = table
        self._catch = catch

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body in network-sized pieces; a failure raises ``StreamInterruptedError``."""
        try:
            async for piece in self._response.content.iter_any():
                yield piece
        except self._catch as exc:
            await self.aclose()
            raise to_provider_error(exc, self._url, self._table, streaming=True) from exc
        await self.aclose()  # read to the end: hand the connection back now

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            try:
                # release() keeps the connection when the body was read to its end, and
                # closes it otherwise.
                self._response.release()
            finally:
                slots.release()

    async def __aenter__(self) -> "AsyncStreamHandle":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._close()

    def __del__(self) -> None:
        # An abandoned handle must not keep its pool slot forever; the semaphore is its
        # loop's, so give the slot back on that loop.
        slots = getattr(self, "_slots", None)
        if slots is None:
            return
        self._slots = None
        loop = self._loop
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(_release_both, self._response, slots)
            except RuntimeError:  # the loop closed meanwhile
                pass


def _release_both(response: aiohttp.ClientResponse, slots: asyncio.Semaphore) -> None:
    try:
        response.release()
    finally:
        slots.release()


class AsyncHTTPTransport:
    """Sends ``WireRequest`` s over aiohttp, one session per running event loop.

    At most ``max_connections`` calls are in flight per loop; more wait for a slot for up
    to ``Timeout.pool``. ``verify``: ``True``, ``False`` or the path of a CA file or
    directory. ``session_factory`` (tests) makes each loop's ``aiohttp.ClientSession``;
    the transport closes the sessions it made.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        verify: Union[bool, str] = True,
        trust_env: bool = True,
        session_factory: Optional[Callable[[], aiohttp.ClientSession]] = None,
    ) -> None:
        import asyncio

        self.max_connections = check_pool_size(max_connections)
        if not isinstance(verify, (bool, str)):
            raise InvalidRequestError(
                f"verify={verify!r} is not allowed: pass True, False or the path of a CA bundle",
                param="verify",
                allowed="True, False or a path",
            )
        self._verify = verify
        self._ssl: Union[None, bool, ssl.SSLContext] = False if verify is False else None
        self._trust_env = trust_env
        self._session_factory = session_factory
        self._asyncio = asyncio
        self._running_loop = asyncio.get_running_loop
        self._loops: Dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._timeouts: Dict[Tuple[Timeout, bool], aiohttp.ClientTimeout] = {}
        self._table: ErrorTable = ()
        self._catch: Tuple[Type[BaseException], ...] = ()

    # -- sessions -------------------------------------------------------------------

    async def _state(self) -> _LoopState:
        loop = self._running_loop()
        state = self._loops.get(loop)
        if state is None or state.session.closed:
            state = await self._open(loop)
        return state

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        stale = self._loops.pop(loop, None)
        if stale is not None:  # its session was closed from outside: let its owner finish
            await stale.owner.aclose()
        for other in list(self._loops):  # list(): other threads' loops may come and go
            if other.is_closed():
                self._loops.pop(other, None)  # loops closed without shutdown_asyncgens()
        if not self._table:
            self._table = aiohttp_errors()
            self._catch = catches(self._table)
        owner = self._own_session(loop)
        session = await owner.__anext__()
        state = _LoopState(session, self._asyncio.Semaphore(self.max_connections), owner)
        self._loops[loop] = state
        return state

    async def _own_session(self, loop: asyncio.AbstractEventLoop) -> AsyncGenerator[aiohttp.ClientSession, None]:
        """Make this loop's session, hand it out, close it when finalised or closed."""
        if self._session_factory is not None:
            session = self._session_factory()
        else:
            import aiohttp

            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                # aiohttp's trust_env looks up proxy variables (and ~/.netrc) on every
                # request, which cost 4x the raw request rate: only when a proxy is set.
                trust_env=self._trust_env and environment_has_proxies(),
                auto_decompress=True,
                headers={"User-Agent": USER_AGENT},  # the same as the sync paths send
            )
        try:
            yield session
        finally:
            state = self._loops.get(loop)
            if state is not None and state.session is session:
                del self._loops[loop]
            await session.close()

    async def aclose(self) -> None:
        """Close the running loop's session (sessions of other loops close with their loop)."""
        loop = self._running_loop()
        state = self._loops.pop(loop, None)
        if state is not None:
            await state.owner.aclose()

    async def __aenter__(self) -> "AsyncHTTPTransport":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    # -- requests -------------------------------------------------------------------

    def _client_timeout(self, timeout: Timeout, stream: bool) -> aiohttp.ClientTimeout:
        key = (timeout, stream)
        limits = self._timeouts.get(key)
        if limits is None:
            import aiohttp

            # aiohttp's ``total`` runs until the body is read, so it is the deadline of a
            # non-streaming call; a stream's head deadline is applied around the request.
            limits = aiohttp.ClientTimeout(
                total=None if stream else timeout.total,
                sock_connect=timeout.connect,
                sock_read=timeout.read,
            )
            if len(self._timeouts) >= 64:
                self._timeouts.clear()
            self._timeouts[key] = limits
        return limits

    def _kwargs(self, request: WireRequest, timeout: Timeout, stream: bool) -> Dict[str, Any]:
        kwargs: Dict[str, Any] = {"timeout": self._client_timeout(timeout, stream)}
        if request.json is not None:
            kwargs["data"] = encode_json(request.json)
            kwargs["headers"] = json_headers(request.headers)
            return self._with_ssl(kwargs, request) if self._verify is not True else kwargs
        if request.files is not None or request.data is not None:
            kwargs["data"] = self._form(request)
        elif request.content is not None:
            kwargs["data"] = request.content
        kwargs["headers"] = checked_headers(request.headers)
        return self._with_ssl(kwargs, request) if self._verify is not True else kwargs

    def _with_ssl(self, kwargs: Dict[str, Any], request: WireRequest) -> Dict[str, Any]:
        if request.url[:6].lower() == "https:":
            if self._ssl is None:  # a CA path: load it on the first https:// request
                import os
                import ssl

                path = str(self._verify)
                self._ssl = (
                    ssl.create_default_context(capath=path)
                    if os.path.isdir(path)
                    else ssl.create_default_context(cafile=path)
                )
            kwargs["ssl"] = self._ssl
        return kwargs

    @staticmethod
    def _form(request: WireRequest) -> aiohttp.FormData:
        import aiohttp

        form = aiohttp.FormData()
        for key, value in (request.data or {}).items():
            for item in value if isinstance(value, (list, tuple)) else (value,):  # lists: repeated fields
                form.add_field(key, _form_value(item))
        for key, (filename, content, content_type) in (request.files or {}).items():
            form.add_field(key, content, filename=filename, content_type=content_type)
        return form

    async def _acquire(self, slots: asyncio.Semaphore, timeout: Timeout) -> None:
        if not slots.locked():
            await slots.acquire()  # a free slot: taken without suspending
            return
        if timeout.pool is None:
            await slots.acquire()
            return
        try:
            await self._asyncio.wait_for(slots.acquire(), timeout.pool)
        except self._asyncio.TimeoutError:
            raise pool_timeout("AsyncHTTPTransport", self.max_connections, timeout.pool) from None

    async def send(self, request: WireRequest, timeout: Timeout) -> WireResponse:
        """Send ``request`` and read the whole response."""
        state = await self._state()
        slots = state.slots
        await self._acquire(slots, timeout)
        reading = False
        try:
            async with state.session.request(
                request.method, request.url, **self._kwargs(request, timeout, False)
            ) as response:
                reading = True
                content = await response.read()
                return WireResponse(response.status, _headers(response.headers), content, request)
        except self._catch as exc:
            raise to_provider_error(exc, request.url, self._table, body=reading) from exc
        finally:
            slots.release()

    async def stream(self, request: WireRequest, timeout: Timeout) -> AsyncStreamHandle:
        """Send ``request`` and return once the response head has arrived (within ``total``)."""
        state = await self._state()
        slots = state.slots
        await self._acquire(slots, timeout)
        try:
            pending = state.session.request(request.method, request.url, **self._kwargs(request, timeout, True))
            try:
                if timeout.total is None:
                    response = await pending
                else:
                    response = await _within(pending, timeout.total)
            except self._catch as exc:
                raise to_provider_error(exc, request.url, self._table) from exc
        except BaseException:
            slots.release()
            raise
        head = WireResponse(response.status, _headers(response.headers), b"", request)
        return AsyncStreamHandle(response, head, request.url, slots, self._running_loop(), self._table, self._catch)


if sys.version_info >= (3, 11):

    async def _within(pending: Any, seconds: float) -> aiohttp.ClientResponse:
        import asyncio

        async with asyncio.timeout(seconds):
            response: aiohttp.ClientResponse = await pending
            return response

else:  # pragma: no cover - Python 3.10

    async def _within(pending: Any, seconds: float) -> aiohttp.ClientResponse:
        import asyncio

        response: aiohttp.ClientResponse = await asyncio.wait_for(pending, seconds)
        return response
