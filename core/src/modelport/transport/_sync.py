"""Sync HTTP over one pooled ``httpx.Client``; httpx is imported when a transport is built."""

from __future__ import annotations

import functools
import json
import queue
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Type, Union

from .. import __version__
from ..errors import APITimeoutError, InvalidRequestError
from ..provider import WireRequest, WireResponse
from ._errors import ErrorTable, catches, httpx_errors, import_httpx, origin, pool_timeout, to_provider_error
from ._timeout import Timeout

if TYPE_CHECKING:
    import ssl
    from types import TracebackType

    import httpx

    from ._plain import PlainHTTP

__all__ = ["SyncHTTPTransport", "SyncStreamHandle", "encode_json"]

USER_AGENT = f"modelport/{__version__}"
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON, as OpenAI's SDK sends it (one encoder, built once)."""
    return _ENCODE(body).encode("utf-8")


def checked_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` once no name or value holds a line break or NUL (header injection).

    The HTTP libraries refuse those too, but each with its own exception whose text
    quotes the value, and a value is often a key: this error names the header only."""
    for name, value in headers.items():
        for text in (name, value):
            if isinstance(text, str) and ("\n" in text or "\r" in text or "\0" in text):
                raise InvalidRequestError(
                    f"header {name[:64]!r} holds a line break or NUL character; a header is one line of text",
                    param="headers",
                )
    return headers


def json_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` (checked) with ``Content-Type: application/json`` unless they name a content type."""
    checked_headers(headers)
    for key in headers:
        if key.lower() == "content-type":
            return headers
    return {**headers, "Content-Type": "application/json"}


def check_pool_size(max_connections: object, name: str = "max_connections", minimum: int = 1) -> int:
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < minimum:
        raise InvalidRequestError(
            f"{name}={max_connections!r} is not allowed: pass a whole number >= {minimum}",
            param=name,
            allowed=f"an int >= {minimum}",
        )
    return max_connections


def _cap(phase: Optional[float], total: Optional[float]) -> Optional[float]:
    if total is None:
        return phase
    return total if phase is None or phase > total else phase


def _body(request: WireRequest) -> Dict[str, Any]:
    """httpx keyword arguments for the request body (and its headers)."""
    if request.json is not None:
        return {"content": encode_json(request.json), "headers": json_headers(request.headers)}
    if request.files is not None or request.data is not None:
        # httpx sends list values as repeated fields, files as multipart parts.
        return {"data": request.data, "files": request.files, "headers": checked_headers(request.headers)}
    return {"content": request.content, "headers": checked_headers(request.headers)}


def _plain_body(request: WireRequest) -> Tuple[Optional[bytes], Mapping[str, str]]:
    """The body bytes and headers the plain path sends (JSON or raw content)."""
    if request.json is not None:
        return encode_json(request.json), json_headers(request.headers)
    return request.content, checked_headers(request.headers)


def _pieces(response: httpx.Response, headers: Mapping[str, str]) -> Iterator[bytes]:
    """The body in network-sized pieces. Without a content encoding the raw body is the
    body: skip httpx's decoder layer. (A response built with its content, as
    ``httpx.MockTransport`` handlers make them, is already read: ``iter_bytes`` has it.)"""
    if "content-encoding" in headers or response.is_stream_consumed:
        return response.iter_bytes()
    return response.iter_raw()


def environment_has_proxies() -> bool:
    """Whether a proxy is configured in the environment (``HTTP(S)_PROXY``, ``ALL_PROXY``,
    any case). Read from ``os.environ`` directly: urllib's reader costs a module import."""
    import os

    return any(os.environ.get(name) for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"))


@functools.cache
def _by_scheme_transport() -> Callable[[Callable[[bool], httpx.BaseTransport]], httpx.BaseTransport]:
    import_httpx()
    import httpx

    class BySchemeTransport(httpx.BaseTransport):
        """http:// and https:// on their own ``httpx.HTTPTransport``, each built on first use.

        Building a verified TLS context loads the CA bundle (about 20 ms); a client that
        only talks plain HTTP (a local server) never pays it.
        """

        def __init__(self, make: Callable[[bool], httpx.BaseTransport]) -> None:
            self._make = make
            self._lock = threading.Lock()
            self._http: Optional[httpx.BaseTransport] = None
            self._https: Optional[httpx.BaseTransport] = None
            self._closed = False

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            https = request.url.scheme == "https"
            transport = self._https if https else self._http
            if transport is None:
                transport = self._open(https)
            return transport.handle_request(request)

        def _open(self, https: bool) -> httpx.BaseTransport:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the transport is closed")
                transport = self._https if https else self._http
                if transport is None:
                    transport = self._make(https)
                    if https:
                        self._https = transport
                    else:
                        self._http = transport
                return transport

        def close(self) -> None:
            with self._lock:
                self._closed = True
                transports, self._http, self._https = (self._http, self._https), None, None
            for transport in transports:
                if transport is not None:
                    transport.close()

    return BySchemeTransport


class SyncStreamHandle:
    """An open streaming response: ``head`` (status and headers), then the body in
    network-sized pieces. Holds a connection slot until closed (or read to the end)."""

    def __init__(
        self,
        pieces: Iterator[bytes],
        close_response: Callable[[], None],
        head: WireResponse,
        url: str,
        release: Callable[[], None],
        table: ErrorTable,
    ) -> None:
        self._pieces = pieces
        self._close_response = close_response
        self.head = head
        self._url = url
        self._release: Optional[Callable[[], None]] = release
        self._table = table

    def iter_bytes(self) -> Iterator[bytes]:
        """The body as it arrives; a transport failure raises ``StreamInterruptedError``."""
        table = self._table
        try:
            yield from self._pieces
        except catches(table) as exc:
            self.close()
            raise to_provider_error(exc, self._url, table, streaming=True) from exc
        self.close()  # read to the end: hand the connection back now

    def read(self) -> bytes:
        return b"".join(self.iter_bytes())

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            try:
                self._close_response()
            finally:
                release()

    def __enter__(self) -> "SyncStreamHandle":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # An abandoned handle must not keep its pool slot forever.
        if getattr(self, "_release", None) is not None:
            try:
                self.close()
            except Exception:  # pragma: no cover - interpreter shutdown
                pass


class SyncHTTPTransport:
    """Sends ``WireRequest`` s over pooled, kept-alive connections (redirects followed).

    Plain ``http://`` requests go over the standard library's ``http.client`` (a local
    upstream's first call does not import httpx, and each call costs less); https, the
    environment's proxies, forms and uploads go over one ``httpx.Client``, built on first
    use. ``fast_http=False`` sends everything through httpx. At most ``max_connections`` calls are in flight; more wait for a slot for up to
    ``Timeout.pool``. ``verify``: ``True`` (CA bundle, honouring ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR`` when ``trust_env``), ``False`` (no verification) or a path to a CA
    file or directory. The TLS context is built on the first https:// request.
    ``httpx_transport`` replaces the network (tests: ``httpx.MockTransport``).
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_keepalive: int = 20,
        verify: Union[bool, str] = True,
        trust_env: bool = True,
        httpx_transport: Optional[httpx.BaseTransport] = None,
        fast_http: bool = True,
    ) -> None:
        self.max_connections = check_pool_size(max_connections)
        self._max_keepalive = check_pool_size(max_keepalive, "max_keepalive", 0)
        if not isinstance(verify, (bool, str)):
            raise InvalidRequestError(
                f"verify={verify!r} is not allowed: pass True, False or the path of a CA bundle",
                param="verify",
                allowed="True, False or a path",
            )
        self._verify = verify
        self._trust_env = trust_env
        # One token per connection: a C-level queue (threading.Semaphore is ten times
        # slower, and both are taken and given back on every call).
        self._slots: "queue.SimpleQueue[bool]" = queue.SimpleQueue()
        for _ in range(max_connections):
            self._slots.put(True)
        self._release = functools.partial(self._slots.put, True)
        self._timeouts: Dict[Timeout, httpx.Timeout] = {}
        self._table: ErrorTable = ()  # httpx's, set with the httpx client
        self._catch: Tuple[Type[BaseException], ...] = ()
        self._httpx_transport = httpx_transport
        self._client: Optional[httpx.Client] = None
        self._client_lock = threading.Lock()
        self._closed = False
        # Plain http:// goes over http.client (see _plain); the environment's proxies and
        # an injected httpx transport take every request through httpx.
        self._plain: Optional[PlainHTTP] = None
        if fast_http and httpx_transport is None and not (trust_env and environment_has_proxies()):
            from ._plain import PlainHTTP

            self._plain = PlainHTTP(max_keepalive, USER_AGENT)

    def _httpx(self) -> "httpx.Client":
        """The httpx client (https, proxies, forms), built on first use."""
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._closed:
                raise RuntimeError("the transport is closed")
            if self._client is None:
                import_httpx()
                import httpx

                self._table = httpx_errors()
                self._catch = catches(self._table)
                self._limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self._max_keepalive)
                headers = {"User-Agent": USER_AGENT}
                if self._httpx_transport is None and self._trust_env and environment_has_proxies():
                    # httpx applies HTTP(S)_PROXY / ALL_PROXY / NO_PROXY only to transports it
                    # builds itself, so let it: this builds the TLS context now.
                    self._client = httpx.Client(
                        verify=self._https_verify(), trust_env=True, limits=self._limits, follow_redirects=True, headers=headers
                    )
                else:
                    transport = self._httpx_transport or _by_scheme_transport()(self._make_transport)
                    self._client = httpx.Client(transport=transport, trust_env=self._trust_env, follow_redirects=True, headers=headers)
            return self._client

    def _https_verify(self) -> Union[ssl.SSLContext, bool]:
        verify = self._verify
        if isinstance(verify, bool):
            return verify  # httpx builds the context (certifi or SSL_CERT_FILE / SSL_CERT_DIR)
        import os
        import ssl

        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)

    def _make_transport(self, https: bool) -> httpx.BaseTransport:
        import httpx

        if https:
            return httpx.HTTPTransport(verify=self._https_verify(), trust_env=self._trust_env, limits=self._limits)
        # Plain HTTP never does TLS: give httpx no context to build. httpx >= 0.28 passes
        # this through to httpcore, which would build a *verified* default context on its
        # own if a TLS connection were ever made (this transport only gets http:// URLs).
        return httpx.HTTPTransport(verify=None, trust_env=self._trust_env, limits=self._limits)  # type: ignore[arg-type]

    def _phases(self, timeout: Timeout) -> httpx.Timeout:
        """httpx's per-phase limits for ``timeout``: each capped at ``total`` (cached).

        Until the head arrives httpx applies them per operation, so connect + write + the
        wait for the head are each within ``total`` (not their sum); the body read then
        gets only what remains of ``total``."""
        phases = self._timeouts.get(timeout)
        if phases is None:
            import httpx

            total = timeout.total
            phases = httpx.Timeout(
                connect=_cap(timeout.connect, total),
                read=_cap(timeout.read, total),
                write=_cap(timeout.write, total),
                pool=timeout.pool,
            )
            if len(self._timeouts) >= 64:
                self._timeouts.clear()
            self._timeouts[timeout] = phases
        return phases

    def _acquire(self, timeout: Timeout) -> None:
        try:
            self._slots.get(True, timeout.pool)
        except queue.Empty:
            raise pool_timeout("SyncHTTPTransport", self.max_connections, timeout.pool) from None

    def send(self, request: WireRequest, timeout: Timeout) -> WireResponse:
        """Send ``request`` and read the whole response."""
        self._acquire(timeout)
        try:
            plain = self._plain
            if plain is not None and plain.serves(request):
                body, headers = _plain_body(request)
                result = plain.send(request, body, headers, timeout)
                if isinstance(result, WireResponse):
                    return result
                request = result  # redirected where only httpx goes
            return self._send(request, timeout)
        finally:
            self._slots.put(True)

    def _send(self, request: WireRequest, timeout: Timeout) -> WireResponse:
        client = self._httpx()
        total = timeout.total
        start = monotonic() if total is not None else 0.0
        try:
            response = client.send(
                client.build_request(request.method, request.url, timeout=self._phases(timeout), **_body(request)),
                stream=True,
            )
        except self._catch as exc:
            raise to_provider_error(exc, request.url, self._table) from exc
        try:
            headers = dict(response.headers.items())  # httpx gives the names lower-cased
            pieces = _pieces(response, headers)
            if total is None:
                content = b"".join(pieces)
            else:
                # httpx has no overall deadline: read piece by piece and check it, with each
                # network read limited to what remains (httpcore reads the "timeout"
                # extension when the body read starts).
                deadline = start + total
                remaining = deadline - monotonic()
                if remaining <= 0:
                    raise self._too_slow(request, total)
                limits = response.request.extensions.get("timeout")
                if isinstance(limits, dict):
                    limits["read"] = _cap(timeout.read, remaining)
                chunks = []
                for piece in pieces:
                    chunks.append(piece)
                    if monotonic() > deadline:
                        raise self._too_slow(request, total)
                content = b"".join(chunks)
        except self._catch as exc:
            raise to_provider_error(exc, request.url, self._table, body=True) from exc
        finally:
            response.close()
        return WireResponse(response.status_code, headers, content, request)

    @staticmethod
    def _too_slow(request: WireRequest, total: float) -> APITimeoutError:
        return APITimeoutError(f"{origin(request.url)} did not send the complete response within total={total}s")

    def stream(self, request: WireRequest, timeout: Timeout) -> SyncStreamHandle:
        """Send ``request`` and return once the response head has arrived."""
        self._acquire(timeout)
        try:
            plain = self._plain
            if plain is not None and plain.serves(request):
                body, headers = _plain_body(request)
                result = plain.stream(request, body, headers, timeout)
                if not isinstance(result, WireRequest):
                    head, pieces, close_response = result
                    return SyncStreamHandle(pieces, close_response, head, request.url, self._release, plain.errors)
                request = result  # redirected where only httpx goes
            return self._stream(request, timeout)
        except BaseException:
            self._slots.put(True)
            raise

    def _stream(self, request: WireRequest, timeout: Timeout) -> SyncStreamHandle:
        client = self._httpx()
        try:
            response = client.send(
                client.build_request(request.method, request.url, timeout=self._phases(timeout), **_body(request)),
                stream=True,
            )
        except self._catch as exc:
            raise to_provider_error(exc, request.url, self._table) from exc
        if timeout.total is not None and timeout.read != timeout.total:
            # ``total`` bounded the wait for the head; from here on ``read`` applies alone.
            limits = response.request.extensions.get("timeout")
            if isinstance(limits, dict):
                limits["read"] = timeout.read
        headers = dict(response.headers.items())
        head = WireResponse(response.status_code, headers, b"", request)
        return SyncStreamHandle(_pieces(response, headers), response.close, head, request.url, self._release, self._table)

    def close(self) -> None:
        """Close every pooled connection; later requests raise ``RuntimeError``."""
        with self._client_lock:
            self._closed = True
            client = self._client
        if self._plain is not None:
            self._plain.close()
        if client is not None:
            client.close()

    def __enter__(self) -> "SyncHTTPTransport":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
