"""Plain ``http://`` for the sync transport, on the standard library's ``http.client``.

A local upstream (a model server or a gateway on the same host) is plain HTTP, and for it
httpx + httpcore + h11 cost more than everything else in a first call (tens of ms to
import) and about 100 µs of CPU per call. This path speaks HTTP/1.1 itself with kept-alive,
pooled ``http.client`` connections, with the semantics of the httpx path: redirects
followed (as httpx follows them), gzip / deflate bodies decoded, the same ``Timeout``
phases, errors typed by the same rules. TLS, proxies, forms and uploads, URLs with
credentials and injected httpx transports stay on httpx.
"""

from __future__ import annotations

import http.client
import select
import threading
import zlib
from time import monotonic
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import urljoin, urlsplit

from ..errors import APIConnectionError, APITimeoutError, ProviderError
from ..provider import WireRequest, WireResponse
from ._errors import ErrorTable, catches, origin, to_provider_error

__all__ = ["PlainHTTP", "PLAIN_ERRORS"]

#: ``http.client`` and socket failures, typed as the httpx path types them.
PLAIN_ERRORS: ErrorTable = (
    (TimeoutError, APITimeoutError),
    (http.client.HTTPException, APIConnectionError),
    (OSError, APIConnectionError),
)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 20  # httpx's default
_READ_SIZE = 65536
#: A kept-alive connection the server dropped while it sat idle: send again, once, on a new one.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
_CATCH = catches(PLAIN_ERRORS)


def eligible(request: WireRequest) -> bool:
    """Whether this path can send ``request``: plain http, no credentials in the URL, no form."""
    url = request.url
    if url[:7].lower() != "http://" or request.files is not None or request.data is not None:
        return False
    return "@" not in url[7:].split("/", 1)[0]


def _cap(phase: Optional[float], remaining: Optional[float]) -> Optional[float]:
    if remaining is None:
        return phase
    return remaining if phase is None or phase > remaining else phase


class Deadline:
    """What remains of ``total`` (None: no overall limit)."""

    __slots__ = ("_end", "total")

    def __init__(self, total: Optional[float]) -> None:
        self.total = total
        self._end = monotonic() + total if total is not None else None

    def remaining(self) -> Optional[float]:
        if self._end is None:
            return None
        left = self._end - monotonic()
        if left <= 0:
            raise TimeoutError(f"total={self.total}s elapsed")
        return left


class _Decoder:
    """gzip / deflate, as httpx decodes them (other encodings pass through, as there)."""

    def __init__(self, encoding: str) -> None:
        self._steps: List[Any] = []
        for name in (part.strip().lower() for part in encoding.split(",")):
            if name in ("gzip", "x-gzip"):
                self._steps.append(zlib.decompressobj(zlib.MAX_WBITS | 16))
            elif name == "deflate":
                self._steps.append(None)  # zlib-wrapped or raw: decided on the first bytes
        self._steps.reverse()  # the last encoding applied is undone first

    def decode(self, data: bytes) -> bytes:
        for position, step in enumerate(self._steps):
            if step is None:
                step = self._steps[position] = zlib.decompressobj(zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS)
            data = step.decompress(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for step in self._steps:
            if step is not None:
                data = (step.decompress(data) if data else b"") + step.flush()
        return data


class PlainResponse:
    """An HTTP response whose head has arrived; the body is read through ``pieces``."""

    def __init__(self, owner: "PlainHTTP", key: Tuple[str, int], connection: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        self._owner = owner
        self._key = key
        self._connection: Optional[http.client.HTTPConnection] = connection
        self._response = response
        self._finished = False  # the body was read to the end of its framing
        self.status = response.status
        headers: Dict[str, str] = {}
        for name, value in response.msg.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers

    def pieces(self, per_read: Callable[[], Optional[float]]) -> Iterator[bytes]:
        """The decoded body as it arrives; ``per_read()`` gives each read's time limit."""
        response = self._response
        connection = self._connection
        encoding = self.headers.get("content-encoding")
        decoder = _Decoder(encoding) if encoding else None
        sock = connection.sock if connection is not None else None
        while True:
            if sock is not None:
                sock.settimeout(per_read())
            data = response.read1(_READ_SIZE)
            if not data:
                self._finished = True
                break
            if decoder is not None:
                data = decoder.decode(data)
                if not data:
                    continue
            yield data
        if decoder is not None:
            rest = decoder.flush()
            if rest:
                yield rest
        self.release()

    def read(self, per_read: Callable[[], Optional[float]]) -> bytes:
        return b"".join(self.pieces(per_read))

    def release(self) -> None:
        """Back to the pool when the body was read to its end, else the connection is closed."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        response = self._response
        # Read to the end of its framing, on a connection the server keeps: reusable.
        # (Not ``isclosed()``: a response dropped half-read is closed too.)
        reusable = self._finished and not response.will_close and connection.sock is not None and connection.sock.fileno() != -1
        response.close()
        if reusable:
            self._owner._check_in(self._key, connection)
        else:
            connection.close()


class PlainHTTP:
    """Kept-alive ``http.client`` connections per origin (at most ``max_keepalive`` idle)."""

    errors = PLAIN_ERRORS
    serves = staticmethod(eligible)

    def __init__(self, max_keepalive: int, user_agent: str) -> None:
        self._idle: Dict[Tuple[str, int], List[http.client.HTTPConnection]] = {}
        self._idle_count = 0
        self._max_keepalive = max_keepalive
        self._lock = threading.Lock()
        self._closed = False
        self._defaults = (("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"), ("Connection", "keep-alive"), ("User-Agent", user_agent))

    # -- connections ------------------------------------------------------------------

    def _check_out(self, key: Tuple[str, int]) -> Optional[http.client.HTTPConnection]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the transport is closed")
            idle = self._idle.get(key)
            while idle:
                connection = idle.pop()
                self._idle_count -= 1
                sock = connection.sock
                # Readable while idle means the server closed it (or sent what nobody asked for).
                if sock is not None and not select.select([sock], [], [], 0)[0]:
                    return connection
                connection.close()
        return None

    def _check_in(self, key: Tuple[str, int], connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and self._idle_count < self._max_keepalive:
                self._idle.setdefault(key, []).append(connection)
                self._idle_count += 1
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle, self._idle_count = self._idle, {}, 0
        for connections in idle.values():
            for connection in connections:
                connection.close()

    # -- requests ---------------------------------------------------------------------

    def send(self, request: WireRequest, body: Optional[bytes], headers: Mapping[str, str], timeout: Any) -> "WireResponse | WireRequest":
        """The whole response, or the request to send elsewhere (a redirect off plain HTTP)."""
        deadline = Deadline(timeout.total)
        try:
            response = self.open(request, body, headers, timeout, deadline)
        except RedirectAway as away:
            return away.request
        except _CATCH as exc:
            raise _error(exc, request.url, deadline, body=False) from exc
        try:
            content = response.read(lambda: _cap(timeout.read, deadline.remaining()))
        except _CATCH as exc:
            response.release()
            raise _error(exc, request.url, deadline, body=True) from exc
        return WireResponse(response.status, response.headers, content, request)

    def stream(
        self, request: WireRequest, body: Optional[bytes], headers: Mapping[str, str], timeout: Any
    ) -> "Tuple[WireResponse, Iterator[bytes], Callable[[], None]] | WireRequest":
        """(head, body pieces, close) once the head is in; or the request to send elsewhere.

        ``total`` bounds the wait for the head; then each read has ``read`` alone."""
        deadline = Deadline(timeout.total)
        try:
            response = self.open(request, body, headers, timeout, deadline)
        except RedirectAway as away:
            return away.request
        except _CATCH as exc:
            raise _error(exc, request.url, deadline, body=False) from exc
        read = timeout.read
        head = WireResponse(response.status, response.headers, b"", request)
        return head, response.pieces(lambda: read), response.release

    def open(self, request: WireRequest, body: Optional[bytes], headers: Mapping[str, str], timeout: Any, deadline: Deadline) -> PlainResponse:
        """Send the request, follow redirects, and return once a final head has arrived.

        A redirect that leads off plain HTTP raises ``RedirectAway`` with the request to
        send there."""
        method, url = request.method.upper(), request.url
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._exchange(method, url, body, headers, timeout, deadline)
            location = response.headers.get("location")
            if response.status not in _REDIRECTS or location is None:
                return response
            response.read(lambda: _cap(timeout.read, deadline.remaining()))  # reuse the connection
            target = urljoin(url, location)
            if response.status == 303 and method != "HEAD" or response.status in (301, 302) and method == "POST":
                method, body = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
            if _origin_key(target) != _origin_key(url):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = target
            if not eligible(WireRequest(method, url)):
                raise RedirectAway(WireRequest(method, url, dict(headers), content=body))
        raise http.client.HTTPException(f"more than {_MAX_REDIRECTS} redirects")

    def _exchange(self, method: str, url: str, body: Optional[bytes], headers: Mapping[str, str], timeout: Any, deadline: Deadline) -> PlainResponse:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or 80
        key = (host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._check_out(key)
        if connection is not None:
            try:
                return self._send_on(connection, key, parts.netloc, method, target, body, headers, timeout, deadline)
            except _STALE:
                connection.close()  # dropped while idle: the request never reached a live peer
        connection = http.client.HTTPConnection(host, port, timeout=_cap(timeout.connect, deadline.remaining()))
        connection.connect()
        return self._send_on(connection, key, parts.netloc, method, target, body, headers, timeout, deadline)

    def _send_on(
        self,
        connection: http.client.HTTPConnection,
        key: Tuple[str, int],
        netloc: str,
        method: str,
        target: str,
        body: Optional[bytes],
        headers: Mapping[str, str],
        timeout: Any,
        deadline: Deadline,
    ) -> PlainResponse:
        try:
            sock = connection.sock
            sock.settimeout(_cap(timeout.write, deadline.remaining()))
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            given = {name.lower() for name in headers}
            connection.putheader("Host", netloc)
            for name, value in self._defaults:
                if name.lower() not in given:
                    connection.putheader(name, value)
            for name, value in headers.items():
                if name.lower() not in ("host", "content-length"):
                    connection.putheader(name, value)
            if body is not None or method in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body or b"")))
            connection.endheaders(body)
            sock.settimeout(_cap(timeout.read, deadline.remaining()))
            return PlainResponse(self, key, connection, connection.getresponse())
        except BaseException:
            connection.close()
            raise


class RedirectAway(Exception):
    """A redirect to a URL this path does not serve (https, credentials): httpx sends it."""

    def __init__(self, request: WireRequest) -> None:
        super().__init__(request.url)
        self.request = request


def _error(exc: BaseException, url: str, deadline: Deadline, *, body: bool) -> ProviderError:
    if isinstance(exc, TimeoutError) and deadline.total is not None and str(exc).startswith("total="):
        return APITimeoutError(f"{origin(url)} did not send the complete response within total={deadline.total}s")
    return to_provider_error(exc, url, PLAIN_ERRORS, body=body)


def _origin_key(url: str) -> Tuple[str, str, Optional[int]]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port

