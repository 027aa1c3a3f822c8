"""modelport.transport against a real HTTP server on 127.0.0.1, sync and async alike."""

from __future__ import annotations

import asyncio
import email.parser
import functools
import gzip
import http.server
import json
import math
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

import modelport
from modelport.errors import APIConnectionError, APITimeoutError, InvalidRequestError, StreamInterruptedError
from modelport.provider import WireRequest, WireResponse
from modelport.transport import (
    AsyncHTTPTransport,
    PoolTimeoutError,
    SyncHTTPTransport,
    Timeout,
    encode_json,
)

MODES = ["sync", "sync-httpx", "async"]  # sync: http.client for plain http; sync-httpx: httpx for all

# -- the server ---------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.peers: List[Tuple[str, int]] = []
        self.busy = 0
        self.max_busy = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up (timeouts) break pipes: expected here


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # head and body written apart

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route()

    do_POST = do_PUT = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        for key, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._read_body()
        with self.server.lock:
            self.server.peers.append(self.client_address)
        try:
            getattr(self, "route_" + url.path.strip("/").replace("-", "_"))(query, body)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def route_json(self, query: Dict[str, str], body: bytes) -> None:
        self._send(200, b'{"ok":true}', {"Content-Type": "application/json", "X-Mixed-Case": "Yes"})

    def route_echo(self, query: Dict[str, str], body: bytes) -> None:
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("latin-1"),
        }
        self._send(200, json.dumps(seen).encode())

    def route_sleep(self, query: Dict[str, str], body: bytes) -> None:
        counted = "count" in query  # only these count as busy (others may linger from earlier tests)
        with self.server.lock:
            self.server.busy += counted
            self.server.max_busy = max(self.server.max_busy, self.server.busy)
        try:
            time.sleep(float(query.get("s", "0.5")))
        finally:
            with self.server.lock:
                self.server.busy -= counted
        self._send(200, b'{"slept":true}')

    def route_drip(self, query: Dict[str, str], body: bytes) -> None:
        """A body of ``n`` bytes, one byte each ``every`` seconds."""
        n, every = int(query["n"]), float(query["every"])
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        self.wfile.flush()
        for _ in range(n):
            time.sleep(every)
            self.wfile.write(b"x")

    def route_chunks(self, query: Dict[str, str], body: bytes) -> None:
        """``n`` chunked pieces ``every`` seconds apart, with one longer ``gap`` after piece ``gap_after``."""
        time.sleep(float(query.get("head_delay", "0")))
        n, every = int(query["n"]), float(query.get("every", "0"))
        gap_after, gap = int(query.get("gap_after", "-1")), float(query.get("gap", "0"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(n):
            if i:
                time.sleep(gap if i - 1 == gap_after else every)
            piece = f"data: {i}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def route_reset(self, query: Dict[str, str], body: bytes) -> None:
        self._reset()  # no answer at all: the connection is reset

    def route_cut(self, query: Dict[str, str], body: bytes) -> None:
        """A head promising 1000 bytes, 10 of them, then a reset."""
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        time.sleep(0.05)
        self._reset()

    def route_gzip(self, query: Dict[str, str], body: bytes) -> None:
        self._send(200, gzip.compress(b"hello " * 100), {"Content-Encoding": "gzip", "Content-Type": "text/plain"})

    def route_redirect(self, query: Dict[str, str], body: bytes) -> None:
        self._send(302, b"", {"Location": "/json"})

    def route_redirect_to(self, query: Dict[str, str], body: bytes) -> None:
        self._send(int(query["status"]), b"moved", {"Location": query["to"]})

    def route_until_close(self, query: Dict[str, str], body: bytes) -> None:
        """No length, not chunked: the body ends when the server closes the connection."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"z" * int(query.get("n", "10")))
        self.wfile.flush()
        self.close_connection = True

    def route_empty(self, query: Dict[str, str], body: bytes) -> None:
        self.send_response(204)
        self.end_headers()

    def route_big(self, query: Dict[str, str], body: bytes) -> None:
        self._send(200, bytes(range(256)) * 1024, {"Content-Type": "application/octet-stream"})  # 256 KiB

    def route_deflate(self, query: Dict[str, str], body: bytes) -> None:
        self._send(200, zlib.compress(b"deflated " * 100), {"Content-Encoding": "deflate", "Content-Type": "text/plain"})

    def route_then_close(self, query: Dict[str, str], body: bytes) -> None:
        """An answer that keeps the connection alive by its headers, then the server drops it."""
        self._send(200, b'{"ok":true}')
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def base(server: _Server) -> str:
    with server.lock:
        server.peers.clear()
        server.max_busy = 0
    return f"http://127.0.0.1:{server.server_address[1]}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- one way to call, sync or async ---------------------------------------------------


def call(
    mode: str, request: WireRequest, timeout: Any = 5, *, stream: bool = False, **options: Any
) -> Tuple[WireResponse, bytes]:
    """Send ``request`` on a fresh transport; the head and the whole body."""
    limits = Timeout.of(timeout)
    if mode.startswith("sync"):
        with SyncHTTPTransport(trust_env=False, fast_http=mode == "sync", **options) as transport:
            if stream:
                with transport.stream(request, limits) as handle:
                    return handle.head, handle.read()
            response = transport.send(request, limits)
            return response, response.content

    async def go() -> Tuple[WireResponse, bytes]:
        async with AsyncHTTPTransport(trust_env=False, **options) as transport:
            if stream:
                async with await transport.stream(request, limits) as handle:
                    return handle.head, await handle.read()
            response = await transport.send(request, limits)
            return response, response.content

    return asyncio.run(go())


def timed(fn: Callable[[], Any]) -> Tuple[Any, float]:
    start = time.monotonic()
    try:
        return fn(), time.monotonic() - start
    except Exception as exc:
        return exc, time.monotonic() - start


def get(url: str) -> WireRequest:
    return WireRequest("GET", url)


# -- Timeout ------------------------------------------------------------------------


def test_timeout_of() -> None:
    assert Timeout.of(None) == Timeout()
    t = Timeout.of(2)
    assert (t.connect, t.read, t.write, t.pool, t.total) == (2, 2, 2, None, 2)
    assert Timeout.of(2.5).total == 2.5
    given = Timeout(read=1, total=3)
    assert Timeout.of(given) is given
    for bad in (True, False, 0, -1, math.nan, math.inf, "5", [1]):
        with pytest.raises(InvalidRequestError) as info:
            Timeout.of(bad)  # type: ignore[arg-type]
        assert info.value.param == "timeout"
        assert "Timeout(" in str(info.value) and "None" in str(info.value)
    with pytest.raises(InvalidRequestError):
        Timeout(read=-1)
    with pytest.raises(InvalidRequestError):
        Timeout(pool=True)  # type: ignore[arg-type]


def test_encode_json_is_compact_utf8() -> None:
    assert encode_json({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()


def test_import_is_light() -> None:
    code = (
        "import sys, modelport.transport\n"
        "print(sorted(m for m in ('httpx', 'httpcore', 'aiohttp', 'ssl', 'asyncio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_call_does_not_load_the_httpx_command_line(base: str) -> None:
    # httpx imports its CLI (click, pygments) when they are installed: 12 ms of a cold start.
    # A plain http:// call loads no httpx at all; a form (sent by httpx) loads it without its CLI.
    code = (
        "import sys, importlib.util, modelport.transport as t\n"
        "from modelport.provider import WireRequest\n"
        "assert importlib.util.find_spec('click') is not None, 'click is installed here'\n"
        "seen = lambda: sorted(m for m in ('httpx', 'httpx._main', 'click', 'pygments', 'httpcore', 'h11') if m in sys.modules)\n"
        "transport = t.SyncHTTPTransport()\n"
        f"reply = transport.send(WireRequest('GET', {base + '/json'!r}, {{}}), t.Timeout.of(10))\n"
        "print(reply.status, seen())\n"
        f"reply = transport.send(WireRequest('POST', {base + '/echo'!r}, {{}}, data={{'a': '1'}}), t.Timeout.of(10))\n"
        "print(reply.status, seen())\n"
        "print(sys.modules.get('httpx._main', 'importable later'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["200 []", "200 ['h11', 'httpcore', 'httpx']", "importable later"], out.stdout + out.stderr


# -- bodies and heads -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_json_body_and_lowercase_headers(mode: str, base: str) -> None:
    head, body = call(mode, WireRequest("POST", base + "/echo?x=1", {"X-Key": "k"}, json={"msg": "héllo", "n": [1]}))
    seen = json.loads(body)
    assert head.status == 200
    assert all(key == key.lower() for key in head.headers)
    assert seen["method"] == "POST" and seen["path"] == "/echo?x=1"
    assert seen["body"].encode("latin-1") == '{"msg":"héllo","n":[1]}'.encode()
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["x-key"] == "k"
    # A content type the caller gives is kept; raw content goes as it is.
    _, body = call(
        mode, WireRequest("POST", base + "/echo", {"content-type": "application/json; charset=utf-8"}, json=[1])
    )
    assert json.loads(body)["headers"]["content-type"] == "application/json; charset=utf-8"
    _, body = call(mode, WireRequest("PUT", base + "/echo", {"Content-Type": "text/plain"}, content=b"raw bytes"))
    assert json.loads(body)["body"] == "raw bytes" and json.loads(body)["method"] == "PUT"


@pytest.mark.parametrize("mode", MODES)
def test_every_path_names_modelport_as_the_user_agent_unless_the_caller_does(mode: str, base: str) -> None:
    _, body = call(mode, WireRequest("POST", base + "/echo", json={}))
    assert json.loads(body)["headers"]["user-agent"] == f"modelport/{modelport.__version__}"
    _, body = call(mode, WireRequest("POST", base + "/echo", {"User-Agent": "my-app/2"}, json={}))
    assert json.loads(body)["headers"]["user-agent"] == "my-app/2"


@pytest.mark.parametrize("mode", MODES)
def test_head_headers_are_lowercase(mode: str, base: str) -> None:
    for stream in (False, True):
        head, body = call(mode, get(base + "/json"), stream=stream)
        assert head.headers["x-mixed-case"] == "Yes"
        assert head.headers["content-type"] == "application/json"
        assert body == b'{"ok":true}'
        assert head.content == (b"" if stream else body)


def _multipart_fields(seen: Dict[str, Any]) -> List[Tuple[str, Optional[str], str, bytes]]:
    raw = f"Content-Type: {seen['headers']['content-type']}\r\n\r\n".encode() + seen["body"].encode("latin-1")
    message = email.parser.BytesParser().parsebytes(raw)
    assert message.is_multipart()
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.get_payload()
    ]


def test_multipart_lists_are_repeated_fields_sync_and_async(base: str) -> None:
    request = WireRequest(
        "POST",
        base + "/echo",
        data={"model": "whisper", "tags": ["a", "b"], "flag": True, "n": 3},
        files={"file": ("speech.wav", b"RIFF\x00\x01binary", "audio/wav")},
    )
    seen = {mode: json.loads(call(mode, request)[1]) for mode in MODES}
    fields = {mode: _multipart_fields(seen[mode]) for mode in MODES}
    for mode in MODES:
        named = [(name, payload) for name, filename, _, payload in fields[mode] if filename is None]
        assert named == [("model", b"whisper"), ("tags", b"a"), ("tags", b"b"), ("flag", b"true"), ("n", b"3")], mode
        files = [(name, filename, ctype, payload) for name, filename, ctype, payload in fields[mode] if filename]
        assert files == [("file", "speech.wav", "audio/wav", b"RIFF\x00\x01binary")], mode


def test_form_without_files_is_sent_alike_sync_and_async(base: str) -> None:
    request = WireRequest("POST", base + "/echo", data={"a": ["1", "2"], "b": "x y"})
    seen = [json.loads(call(mode, request)[1]) for mode in MODES]
    assert seen[0]["body"] == seen[1]["body"] == "a=1&a=2&b=x+y"
    assert seen[0]["headers"]["content-type"] == seen[1]["headers"]["content-type"]


def test_httpx_transport_replaces_the_network() -> None:
    import httpx

    seen: List[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, content=b"data: 1\n\n", headers={"X-Req": "7"})

    with SyncHTTPTransport(httpx_transport=httpx.MockTransport(handler)) as transport:
        response = transport.send(WireRequest("POST", "https://api.example/v1/x", json={"a": 1}), Timeout.of(1))
        assert (response.status, response.content, response.headers["x-req"]) == (201, b"data: 1\n\n", "7")
        with transport.stream(WireRequest("GET", "https://api.example/v1/y"), Timeout.of(1)) as handle:
            assert handle.head.status == 201 and handle.head.content == b""
            assert list(handle.iter_bytes()) == [b"data: 1\n\n"]
    assert seen[0].content == b'{"a":1}' and seen[0].headers["content-type"] == "application/json"


@pytest.mark.parametrize("mode", MODES)
def test_gzip_and_redirect(mode: str, base: str) -> None:
    for stream in (False, True):
        head, body = call(mode, get(base + "/gzip"), stream=stream)
        assert body == b"hello " * 100
    head, body = call(mode, get(base + "/redirect"))
    assert head.status == 200 and body == b'{"ok":true}'


@pytest.mark.parametrize("mode", MODES)
def test_bodies_framed_by_close_empty_and_large(mode: str, base: str, server: _Server) -> None:
    for stream in (False, True):
        head, body = call(mode, get(base + "/until-close?n=70000"), stream=stream)
        assert head.status == 200 and body == b"z" * 70000
        head, body = call(mode, get(base + "/empty"), stream=stream)
        assert head.status == 204 and body == b""
        head, body = call(mode, get(base + "/big"), stream=stream)
        assert body == bytes(range(256)) * 1024
    if mode.startswith("sync"):  # after each kind of body the pool stays usable
        with server.lock:
            server.peers.clear()
        with SyncHTTPTransport(trust_env=False, fast_http=mode == "sync") as transport:
            for path in ("/until-close?n=5", "/json", "/empty", "/json", "/big", "/json"):
                assert transport.send(get(base + path), Timeout.of(5)).status in (200, 204)
        assert len(set(server.peers)) == 2, server.peers  # a new connection only after the one the server closed


@pytest.mark.parametrize("mode", MODES)
def test_deflate_bodies(mode: str, base: str) -> None:
    for stream in (False, True):
        head, body = call(mode, get(base + "/deflate"), stream=stream)
        assert body == b"deflated " * 100 and head.headers["content-encoding"] == "deflate"


@pytest.mark.parametrize("mode", MODES)
def test_redirects_change_methods_and_drop_credentials_as_httpx_does(mode: str, base: str, server: _Server) -> None:
    def post(status: int, to: str) -> Dict[str, Any]:
        request = WireRequest("POST", f"{base}/redirect-to?status={status}&to={to}", {"Authorization": "Bearer k"}, json={"a": 1})
        head, body = call(mode, request)
        assert head.status == 200
        return dict(json.loads(body))

    seen = post(303, "/echo")  # See Other: GET, no body
    assert seen["method"] == "GET" and seen["body"] == ""
    assert seen["headers"]["authorization"] == "Bearer k"  # same origin: credentials kept
    seen = post(307, "/echo")  # Temporary Redirect: the same request again
    assert seen["method"] == "POST" and json.loads(seen["body"]) == {"a": 1}
    port = server.server_address[1]
    seen = post(308, f"http://localhost:{port}/echo")  # another origin: no credentials
    assert seen["method"] == "POST" and "authorization" not in seen["headers"]


@pytest.mark.parametrize("mode", ["sync", "sync-httpx"])  # the sync pools (aiohttp keeps its own)
def test_a_connection_the_server_dropped_while_idle_is_replaced(mode: str, base: str, server: _Server) -> None:
    with SyncHTTPTransport(trust_env=False, fast_http=mode == "sync") as transport:
        for _ in range(3):
            assert transport.send(get(base + "/then-close"), Timeout.of(5)).status == 200
            time.sleep(0.05)  # the server's FIN arrives while the connection sits in the pool
    assert len(set(server.peers)) == 3, server.peers


def test_a_dropped_connection_not_yet_seen_as_closed_is_retried_once(base: str, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's FIN may arrive after the pool checked the idle connection: the send
    then fails before any answer and goes once more, on a new connection."""
    import select

    monkeypatch.setattr(select, "select", lambda *args: ([], [], []))  # every idle connection looks alive
    with SyncHTTPTransport(trust_env=False) as transport:
        for _ in range(3):
            assert transport.send(get(base + "/then-close"), Timeout.of(5)).status == 200
            time.sleep(0.05)
    assert len(set(server.peers)) == 3, server.peers


def test_a_redirect_to_https_is_sent_by_httpx(base: str) -> None:
    port = _closed_port()
    for stream in (False, True):
        error, _ = timed(lambda: call("sync", get(f"{base}/redirect-to?status=302&to=https://127.0.0.1:{port}/x"), stream=stream))  # noqa: B023
        assert isinstance(error, APIConnectionError), error
        assert f"https://127.0.0.1:{port}" in str(error)


# -- timeouts: the same meaning sync and async ---------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_total_bounds_a_dripped_body(mode: str, base: str) -> None:
    # 20 bytes over 2 s, total 0.6 s: fails at about 0.6 s (every read returns in time).
    error, elapsed = timed(lambda: call(mode, get(base + "/drip?n=20&every=0.1"), 0.6))
    assert isinstance(error, APITimeoutError), error
    assert 0.5 < elapsed < 1.0, elapsed
    assert "/drip" not in str(error)
    # A body that drips in within total is read whole.
    (head, body), elapsed = timed(lambda: call(mode, get(base + "/drip?n=5&every=0.05"), 2))
    assert body == b"xxxxx"


@pytest.mark.parametrize("mode", MODES)
def test_total_counts_the_head_wait_then_bounds_the_body(mode: str, base: str) -> None:
    # The head takes 0.4 s of total=0.6, then the body stalls: the body may only take the
    # 0.2 s that remain (not another whole read timeout).
    url = base + "/chunks?n=2&head_delay=0.4&gap_after=0&gap=2"
    error, elapsed = timed(lambda: call(mode, get(url), Timeout(read=5, total=0.6)))
    assert isinstance(error, APITimeoutError), error
    assert 0.5 < elapsed < 0.85, elapsed


@pytest.mark.parametrize("mode", MODES)
def test_stream_head_must_arrive_within_total(mode: str, base: str) -> None:
    error, elapsed = timed(lambda: call(mode, get(base + "/sleep?s=1.2"), Timeout(read=5, total=0.3), stream=True))
    assert isinstance(error, APITimeoutError), error
    assert 0.25 < elapsed < 0.7, elapsed


@pytest.mark.parametrize("mode", MODES)
def test_stream_body_is_bounded_per_read_not_by_total(mode: str, base: str) -> None:
    # Pieces 0.45 s apart (0.9 s in all) with total=0.3, read=1: total only bounded the head.
    (head, body), elapsed = timed(
        lambda: call(mode, get(base + "/chunks?n=3&every=0.45"), Timeout(read=1, total=0.3), stream=True)
    )
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert elapsed > 0.85
    # A silence longer than read breaks the stream after about read seconds.
    url = base + "/chunks?n=3&every=0.01&gap_after=0&gap=1.5"
    error, elapsed = timed(lambda: call(mode, get(url), Timeout(read=0.3, total=5), stream=True))
    assert isinstance(error, StreamInterruptedError), error
    assert 0.25 < elapsed < 0.8, elapsed


@pytest.mark.parametrize("mode", MODES)
def test_slow_head_is_a_timeout_error(mode: str, base: str) -> None:
    error, elapsed = timed(lambda: call(mode, get(base + "/sleep?s=1&key=sk-secret"), 0.2))
    assert isinstance(error, APITimeoutError) and not isinstance(error, PoolTimeoutError), error
    assert elapsed < 0.6
    assert "sk-secret" not in str(error) and "/sleep" not in str(error)


# -- the pool -------------------------------------------------------------------------------


def _six_sync(base: str, timeout: Timeout, fast_http: bool = True) -> List[Any]:
    results: List[Any] = [None] * 6
    with SyncHTTPTransport(max_connections=2, trust_env=False, fast_http=fast_http) as transport:

        def one(i: int) -> None:
            try:
                results[i] = transport.send(get(base + "/sleep?s=0.5&count=1"), timeout).status
            except Exception as exc:
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return results


def _six_async(base: str, timeout: Timeout) -> List[Any]:
    async def go() -> List[Any]:
        async with AsyncHTTPTransport(max_connections=2, trust_env=False) as transport:

            async def one() -> int:
                return (await transport.send(get(base + "/sleep?s=0.5&count=1"), timeout)).status

            return list(await asyncio.gather(*[one() for _ in range(6)], return_exceptions=True))

    return asyncio.run(go())


@pytest.mark.parametrize("six", [_six_sync, functools.partial(_six_sync, fast_http=False), _six_async], ids=MODES)
def test_pool_queues_calls_without_failing_them(
    six: Callable[[str, Timeout], List[Any]], base: str, server: _Server
) -> None:
    # 6 calls of 0.5 s on 2 connections take 3 rounds (1.5 s); total=0.8 starts with the slot.
    results, elapsed = timed(lambda: six(base, Timeout.of(0.8)))
    assert results == [200] * 6
    assert 1.4 < elapsed < 2.5, elapsed
    assert server.max_busy == 2


@pytest.mark.parametrize("six", [_six_sync, functools.partial(_six_sync, fast_http=False), _six_async], ids=MODES)
def test_pool_wait_beyond_pool_timeout_fails(six: Callable[[str, Timeout], List[Any]], base: str) -> None:
    results = six(base, Timeout(connect=0.8, read=0.8, write=0.8, total=0.8, pool=0.2))
    assert results.count(200) == 2
    errors = [r for r in results if r != 200]
    assert len(errors) == 4 and all(isinstance(e, PoolTimeoutError) for e in errors), errors
    assert isinstance(errors[0], APITimeoutError)
    assert "max_connections=" in str(errors[0]) and " 2 " in str(errors[0])


def test_open_stream_holds_its_slot_sync(base: str) -> None:
    short = Timeout(total=2, pool=0.1)
    with SyncHTTPTransport(max_connections=1, trust_env=False) as transport:
        with transport.stream(get(base + "/json"), short) as handle:
            assert handle.head.status == 200
            with pytest.raises(PoolTimeoutError):
                transport.send(get(base + "/json"), short)
        assert transport.send(get(base + "/json"), short).status == 200  # closed: slot back
        handle = transport.stream(get(base + "/json"), short)
        assert handle.read() == b'{"ok":true}'  # read to the end: slot back
        assert transport.send(get(base + "/json"), short).status == 200
        handle.close()
        assert transport.send(get(base + "/json"), short).status == 200  # close twice: no extra slot
        with transport.stream(get(base + "/json"), short):
            with pytest.raises(PoolTimeoutError):
                transport.send(get(base + "/json"), short)


def test_open_stream_holds_its_slot_async(base: str) -> None:
    short = Timeout(total=2, pool=0.1)

    async def go() -> None:
        async with AsyncHTTPTransport(max_connections=1, trust_env=False) as transport:
            async with await transport.stream(get(base + "/json"), short) as handle:
                assert handle.head.status == 200
                with pytest.raises(PoolTimeoutError):
                    await transport.send(get(base + "/json"), short)
            assert (await transport.send(get(base + "/json"), short)).status == 200
            handle = await transport.stream(get(base + "/json"), short)
            assert await handle.read() == b'{"ok":true}'
            assert (await transport.send(get(base + "/json"), short)).status == 200
            await handle.aclose()
            handle = await transport.stream(get(base + "/json"), short)
            with pytest.raises(PoolTimeoutError):
                await transport.send(get(base + "/json"), short)
            await handle.aclose()

    asyncio.run(go())


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_refused_connection_names_only_the_origin(mode: str) -> None:
    port = _closed_port()
    # With credentials in the URL (httpx sends those) and without (the plain http path).
    for url in (f"http://alice:hunter2@127.0.0.1:{port}/v1/chat/completions?key=sk-live-123", f"http://127.0.0.1:{port}/v1/chat/completions?key=sk-live-123"):
        for stream in (False, True):
            error, _ = timed(lambda: call(mode, WireRequest("POST", url, json={}), stream=stream))  # noqa: B023
            assert isinstance(error, APIConnectionError), error
            text = str(error)
            assert f"http://127.0.0.1:{port}" in text
            for secret in ("alice", "hunter2", "sk-live-123", "key=", "/v1", "completions"):
                assert secret not in text, text


@pytest.mark.parametrize("mode", MODES)
def test_a_header_value_with_a_line_break_is_refused_without_echoing_it(mode: str, base: str) -> None:
    for value in ("sk-secret\r\nX-Injected: 1", "sk-secret\n", "sk-secret\x00"):
        for stream in (False, True):
            error, _ = timed(lambda: call(mode, WireRequest("GET", base + "/json", {"X-Key": value}), stream=stream))  # noqa: B023
            assert isinstance(error, InvalidRequestError), error
            assert "sk-secret" not in str(error) and "X-Key" in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_reset_and_cut_connections(mode: str, base: str) -> None:
    error, _ = timed(lambda: call(mode, get(base + "/reset")))
    assert isinstance(error, APIConnectionError), error
    error, _ = timed(lambda: call(mode, get(base + "/cut")))
    assert isinstance(error, APIConnectionError), error
    # Once the head is in, a broken body is an interrupted stream.
    error, _ = timed(lambda: call(mode, get(base + "/cut"), stream=True))
    assert isinstance(error, StreamInterruptedError), error
    assert "/cut" not in str(error)


# -- connections, closing, TLS --------------------------------------------------------------


def test_connection_reuse_sync(base: str, server: _Server) -> None:
    with SyncHTTPTransport(trust_env=False) as transport:
        for _ in range(4):
            assert transport.send(get(base + "/json"), Timeout.of(5)).status == 200
        with transport.stream(get(base + "/chunks?n=2"), Timeout.of(5)) as handle:
            handle.read()
    assert len(server.peers) == 5
    assert len(set(server.peers)) == 1, server.peers


def test_connection_reuse_async(base: str, server: _Server) -> None:
    async def go() -> None:
        async with AsyncHTTPTransport(trust_env=False) as transport:
            for _ in range(4):
                assert (await transport.send(get(base + "/json"), Timeout.of(5))).status == 200
            async with await transport.stream(get(base + "/chunks?n=2"), Timeout.of(5)) as handle:
                await handle.read()

    asyncio.run(go())
    assert len(server.peers) == 5
    assert len(set(server.peers)) == 1, server.peers


def test_close_and_context_managers(base: str) -> None:
    transport = SyncHTTPTransport(trust_env=False)
    assert transport.send(get(base + "/json"), Timeout.of(5)).status == 200
    transport.close()
    with pytest.raises(RuntimeError):
        transport.send(get(base + "/json"), Timeout.of(5))

    import aiohttp

    made: List[aiohttp.ClientSession] = []

    def factory() -> aiohttp.ClientSession:
        made.append(aiohttp.ClientSession())
        return made[-1]

    async def go() -> None:
        async with AsyncHTTPTransport(session_factory=factory) as transport:
            assert (await transport.send(get(base + "/json"), Timeout.of(5))).status == 200
            assert (await transport.send(get(base + "/json"), Timeout.of(5))).status == 200
            assert len(made) == 1 and not made[0].closed
        assert made[0].closed
        # aclose() closes this loop's session; a later call opens a new one.
        assert (await transport.send(get(base + "/json"), Timeout.of(5))).status == 200
        assert len(made) == 2
        await transport.aclose()
        assert made[1].closed

    asyncio.run(go())


def test_http_builds_no_tls_context_https_builds_it_once(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    contexts: List[ssl.SSLContext] = []
    loads: List[Any] = []
    real_new, real_load = ssl.SSLContext.__new__, ssl.SSLContext.load_verify_locations

    def counting_new(cls: Any, *args: Any, **kwargs: Any) -> Any:
        context = real_new(cls, *args, **kwargs)
        contexts.append(context)
        return context

    def counting_load(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args or kwargs)
        real_load(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "__new__", counting_new)
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting_load)

    with SyncHTTPTransport(trust_env=False) as transport:
        for _ in range(2):
            assert transport.send(get(base + "/json"), Timeout.of(5)).status == 200
        with transport.stream(get(base + "/json"), Timeout.of(5)) as handle:
            handle.read()
        assert loads == []
        if tuple(int(p) for p in httpx.__version__.split(".")[:2]) >= (0, 28):
            assert contexts == []
        port = _closed_port()
        for _ in range(2):
            with pytest.raises(APIConnectionError):
                transport.send(get(f"https://127.0.0.1:{port}/x"), Timeout.of(2))
        assert len(loads) == 1  # the CA bundle, loaded once, on the first https:// call
        assert any(c.verify_mode == ssl.CERT_REQUIRED for c in contexts)


def test_sessions_close_with_their_loops_without_warnings(base: str) -> None:
    # One transport over two asyncio.run() calls and two threads' loops, then gc: aiohttp
    # must not report an unclosed session or connector.
    code = f"""
import asyncio, gc, threading
from modelport.provider import WireRequest
from modelport.transport import AsyncHTTPTransport, Timeout

transport = AsyncHTTPTransport(trust_env=False)

async def go():
    response = await transport.send(WireRequest("GET", "{base}/json"), Timeout.of(5))
    assert response.status == 200, response
    handle = await transport.stream(WireRequest("GET", "{base}/chunks?n=2"), Timeout.of(5))
    assert (await handle.read()).startswith(b"data: 0")
    handle = await transport.stream(WireRequest("GET", "{base}/chunks?n=2"), Timeout.of(5))
    await handle.aclose()  # closed before its end

asyncio.run(go())
asyncio.run(go())
threads = [threading.Thread(target=asyncio.run, args=(go(),)) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
del transport, threads
gc.collect()
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
    assert out.stderr == "", out.stderr
