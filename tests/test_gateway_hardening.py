"""The gateway under load, faults, abandoned calls and hostile input, on loopback.

Each test runs the real app under uvicorn (or `modelport serve` as a process) against a
loopback upstream, with the official openai SDK or raw HTTP as the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List

import httpx
import openai
import pytest

from helpers import run_server
from modelport.server import app_from_config
from modelport.testing.upstream import FakeUpstream

MASTER = "sk-hardening-master"
AUTH = {"Authorization": f"Bearer {MASTER}"}
USER = [{"role": "user", "content": "hi"}]




class Gateway:
    def __init__(self, tmp_path: Any, config: str) -> None:
        path = tmp_path / "gateway.yaml"
        path.write_text(config + f"\ngeneral_settings: {{master_key: {MASTER}, max_request_size_mb: 1, max_upload_size_mb: 1}}\n")
        self.server, self.thread, self.url = run_server(app_from_config(str(path)))

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", AUTH)
        return httpx.post(f"{self.url}{path}", timeout=20, **kwargs)


@pytest.fixture
def gateway_for(tmp_path):
    made: List[Gateway] = []

    def make(config: str) -> Gateway:
        made.append(Gateway(tmp_path, config))
        return made[-1]

    yield make
    for gateway in made:
        gateway.close()


def _chat_model(base: str, name: str = "m", extra: str = "") -> str:
    return f"  - model_name: {name}\n    params: {{model: openai/up, api_base: {base}{extra}}}\n"


# --- routing and failover -------------------------------------------------------------------


def test_a_group_of_two_deployments_takes_turns(gateway_for):
    with FakeUpstream() as first, FakeUpstream() as second:
        gateway = gateway_for("model_list:\n" + _chat_model(first.base_url) + _chat_model(second.base_url))
        sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0)
        for _ in range(20):
            sdk.chat.completions.create(model="m", messages=USER)
        assert (len(first.requests), len(second.requests)) == (10, 10)


def test_a_deployment_with_an_unset_key_is_skipped_for_the_next(gateway_for, monkeypatch):
    monkeypatch.delenv("HARDENING_UNSET_KEY", raising=False)
    with FakeUpstream() as good:
        gateway = gateway_for(
            "model_list:\n" + _chat_model("http://127.0.0.1:9/v1", extra=", api_key: os.environ/HARDENING_UNSET_KEY")
            + _chat_model(good.base_url)
        )  # fmt: skip
        sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0)
        for _ in range(4):
            assert sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content == "You said: hi"
        assert len(good.requests) == 4


def test_credentials_in_the_base_url_become_basic_auth_or_yield_to_the_key(gateway_for):
    with FakeUpstream() as upstream:
        with_auth = upstream.base_url.replace("http://", "http://alice:s3cret@")
        gateway = gateway_for(
            "model_list:\n" + _chat_model(with_auth, "basic") + _chat_model(with_auth, "keyed", extra=", api_key: sk-up")
        )
        assert gateway.post("/v1/chat/completions", json={"model": "basic", "messages": USER}).status_code == 200
        assert upstream.last.headers["authorization"] == "Basic YWxpY2U6czNjcmV0"
        assert gateway.post("/v1/chat/completions", json={"model": "keyed", "messages": USER}).status_code == 200
        assert upstream.last.headers["authorization"] == "Bearer sk-up"


def _serve(config: Any, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelport", "serve", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_serve_refuses_a_config_it_cannot_serve_and_lists_every_problem(tmp_path, monkeypatch):
    monkeypatch.delenv("HARDENING_MISSING", raising=False)
    config = tmp_path / "broken.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: a\n    params: {model: nosuchprovider/x}\n"
        "  - model_name: b\n    params: {model: openai/y, api_key: os.environ/HARDENING_MISSING}\n"
    )
    result = _serve(config, "--port", "0")
    assert result.returncode == 2
    assert "model_list[0] (a: nosuchprovider/x)" in result.stderr and "unknown provider 'nosuchprovider'" in result.stderr
    assert "model_list[1] (b: openai/y): api_key reads the environment variable HARDENING_MISSING" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_taken_port_says_so(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text("model_list:\n  - model_name: m\n    params: {model: openai/x, api_base: http://127.0.0.1:9/v1}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(config, "--port", str(port))
    assert result.returncode == 2 and f"port {port}" in result.stderr and "Traceback" not in result.stderr


# --- capacity and abandoned work --------------------------------------------------------------


class SlowUpstream:
    """A raw loopback server answering after ``delay`` seconds; it records when a client
    hangs up before the answer (the gateway cancelling an abandoned call)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.abandoned: List[float] = []
        self.answered = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            started = time.monotonic()
            conn.settimeout(0.05)
            while time.monotonic() - started < self.delay:
                try:
                    if conn.recv(65536) == b"":  # the client hung up
                        self.abandoned.append(time.monotonic() - started)
                        return
                except TimeoutError:
                    continue
                except OSError:
                    self.abandoned.append(time.monotonic() - started)
                    return
            body = json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            self.answered += 1

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def test_a_client_that_disconnects_cancels_its_upstream_call(gateway_for):
    upstream = SlowUpstream(delay=4.0)
    try:
        gateway = gateway_for("model_list:\n" + _chat_model(upstream.base_url))
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "m", "messages": USER}, headers=AUTH, timeout=0.5)
        deadline = time.monotonic() + 3
        while not upstream.abandoned and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstream.abandoned and upstream.abandoned[0] < 2.0 and upstream.answered == 0
    finally:
        upstream.close()


def test_calls_queued_behind_a_small_pool_are_not_failed_by_their_timeout(tmp_path):
    upstream = SlowUpstream(delay=0.4)
    try:
        path = tmp_path / "pool.yaml"
        path.write_text(
            "model_list:\n" + _chat_model(upstream.base_url, extra=", timeout: 0.9")
            + f"router_settings: {{num_retries: 0}}\ngeneral_settings: {{master_key: {MASTER}, max_connections: 2}}\n"
        )  # fmt: skip
        server, thread, url = run_server(app_from_config(str(path)))
        try:

            async def burst() -> List[int]:
                async with httpx.AsyncClient(timeout=30) as client:
                    replies = await asyncio.gather(*(
                        client.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": USER}, headers=AUTH) for _ in range(6)
                    ))  # fmt: skip
                return [r.status_code for r in replies]

            started = time.monotonic()
            assert asyncio.run(burst()) == [200] * 6  # 3 waves of 0.4 s behind a pool of 2, each within 0.9 s
            assert time.monotonic() - started >= 1.1
        finally:
            server.should_exit = True
            thread.join(10)
    finally:
        upstream.close()


def test_clients_are_told_not_to_retry_what_the_gateway_retried(tmp_path, gateway_for):
    with FakeUpstream() as upstream:
        upstream.reply(status=503, json={"error": {"message": "busy", "code": "overloaded"}}, headers={"Retry-After": "0"}, times=20)
        gateway = gateway_for("model_list:\n" + _chat_model(upstream.base_url) + "router_settings: {num_retries: 2}\n")
        sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER)  # the SDK's default 2 retries
        with pytest.raises(openai.InternalServerError) as info:
            sdk.chat.completions.create(model="m", messages=USER)
        assert len(upstream.requests) == 3  # the gateway's 1 + 2 retries, none multiplied by the SDK's
        assert info.value.response.headers["x-should-retry"] == "false"
        assert info.value.response.headers["retry-after"] == "0"


# --- hostile and malformed input ---------------------------------------------------------------


@pytest.fixture
def echo_gateway(gateway_for):
    with FakeUpstream() as upstream:
        gateway = gateway_for(
            "model_list:\n" + _chat_model(upstream.base_url)
            + f"  - model_name: emb\n    params: {{model: hosted_vllm/e, api_base: {upstream.base_url}}}\n"
            + f"  - model_name: asr\n    params: {{model: hosted_vllm/w, api_base: {upstream.base_url}}}\n"
        )  # fmt: skip
        yield gateway, upstream


def _assert_openai_error(reply: httpx.Response, status: int, *, contains: str = "") -> Dict[str, Any]:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and contains in error["message"]
    assert "Traceback" not in reply.text and "Error:" not in error["code"] and reply.headers["x-request-id"]
    return error


def test_hostile_json_bodies_are_4xx_and_the_gateway_stays_up(echo_gateway):
    gateway, upstream = echo_gateway
    post = lambda **kw: gateway.post("/v1/chat/completions", **kw)  # noqa: E731
    # A body key that is a Python keyword argument name goes upstream like any other extra.
    assert post(json={"model": "m", "messages": USER, "self": 1}).status_code == 200 and upstream.last.json["self"] == 1
    _assert_openai_error(post(content=b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'), 400, contains="surrogate")
    _assert_openai_error(post(content=b'{"a":' * 6000 + b"1" + b"}" * 6000), 400, contains="nested too deeply")
    error = _assert_openai_error(post(json={"model": "m", "messages": USER, "stream": "false"}), 400, contains="'stream' must be true or false")
    assert error["param"] == "stream"
    _assert_openai_error(post(json={"model": "m", "messages": USER, "temperature": "hot"}), 400, contains="'temperature' must be a number")
    _assert_openai_error(post(json={"model": "m", "messages": USER, "n": 1.5}), 400, contains="'n' must be an integer")
    _assert_openai_error(gateway.post("/v1/embeddings", json={"model": "emb", "input": "x", "stream": True}), 400, contains="streaming is not offered")
    _assert_openai_error(httpx.get(f"{gateway.url}/v1/nope", headers=AUTH), 404)
    _assert_openai_error(httpx.get(f"{gateway.url}/v1/chat/completions", headers=AUTH), 405)
    assert post(json={"model": "m", "messages": USER}).status_code == 200


def test_hostile_multipart_bodies_are_4xx(echo_gateway):
    gateway, _ = echo_gateway
    url = "/v1/audio/transcriptions"
    _assert_openai_error(gateway.post(url, content=b"garbage", headers={**AUTH, "content-type": "multipart/form-data"}), 400, contains="multipart")
    _assert_openai_error(gateway.post(url, content=b"--x\r\ngarbage", headers={**AUTH, "content-type": "multipart/form-data; boundary=x"}), 400)
    many = {f"f{i}": "v" for i in range(300)}
    _assert_openai_error(gateway.post(url, data={"model": "asr", **many}, files={"file": ("a.wav", b"RIFF")}), 400, contains="multipart")
    _assert_openai_error(gateway.post(url, data={"model": "asr", "temperature": "abc"}, files={"file": ("a.wav", b"RIFF")}), 400, contains="'temperature' must be a number")
    _assert_openai_error(gateway.post(url, data={"model": "asr", "stream": "true"}, files={"file": ("a.wav", b"RIFF")}), 400, contains="streaming")
    _assert_openai_error(gateway.post(url, json={"model": "asr", "file": "x"}), 400, contains="uploaded file")


def test_bodies_over_the_limit_are_413_before_they_are_read_whole(echo_gateway):
    gateway, upstream = echo_gateway
    big = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * (2 * 1024 * 1024) + b'"}]}'
    _assert_openai_error(gateway.post("/v1/chat/completions", content=big), 413, contains="larger than this gateway accepts")

    def chunked():  # no content-length: the limit applies while reading
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    _assert_openai_error(gateway.post("/v1/chat/completions", content=chunked()), 413)
    upload = {"file": ("a.wav", b"R" * (2 * 1024 * 1024))}
    _assert_openai_error(gateway.post("/v1/audio/transcriptions", data={"model": "asr"}, files=upload), 413)
    assert upstream.requests == []


def test_connections_that_never_finish_their_headers_do_not_starve_real_requests(echo_gateway):
    gateway, _ = echo_gateway
    host, port = gateway.url.removeprefix("http://").split(":")
    idle = []
    try:
        for _ in range(300):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            idle.append(sock)
        started = time.monotonic()
        reply = gateway.post("/v1/chat/completions", json={"model": "m", "messages": USER})
        assert reply.status_code == 200 and time.monotonic() - started < 2.0
    finally:
        for sock in idle:
            sock.close()


# --- secrets and internal detail ----------------------------------------------------------------


def test_errors_shown_to_clients_carry_no_upstream_urls_hosts_or_class_names(gateway_for, caplog):
    gateway = gateway_for(
        "model_list:\n" + _chat_model("http://admin:hunter2@127.0.0.1:9/v1") + "router_settings: {num_retries: 0}\n"
    )
    with caplog.at_level("WARNING", logger="modelport.server"):
        reply = gateway.post("/v1/chat/completions", json={"model": "m", "messages": USER}, headers={**AUTH, "x-request-id": "trace-42"})
    error = _assert_openai_error(reply, 502, contains="could not be reached")
    assert reply.headers["x-request-id"] == "trace-42" and error["code"] == "upstream_unreachable"
    for leaked in ("127.0.0.1", ":9", "hunter2", "admin", "ConnectError", "APIConnectionError", "http://"):
        assert leaked not in reply.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "trace-42" in logged and "hunter2" not in logged


def test_serve_logs_json_and_redacts_keys_in_the_access_log(tmp_path):
    with FakeUpstream() as upstream:
        config = tmp_path / "logs.yaml"
        config.write_text("model_list:\n" + _chat_model(upstream.base_url))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "modelport", "serve", "--config", str(config), "--port", str(port), "--log-format", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    reply = httpx.get(f"http://127.0.0.1:{port}/health?api_key=sk-leaky-123", timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert reply.status_code == 200
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=10)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line["message"] for line in lines if "/health" in line["message"]]
    assert access and "sk-leaky-123" not in stderr and "api_key=[REDACTED]" in access[0]


def test_cors_is_off_by_default_and_follows_the_configured_origins(tmp_path):
    with FakeUpstream() as upstream:
        for origins, allowed in (("[]", None), ('["https://app.example"]', "https://app.example")):
            path = tmp_path / "cors.yaml"
            path.write_text("model_list:\n" + _chat_model(upstream.base_url) + f"general_settings: {{cors_allow_origins: {origins}}}\n")
            server, thread, url = run_server(app_from_config(str(path)))
            try:
                preflight = httpx.options(f"{url}/v1/chat/completions", headers={
                    "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type"})  # fmt: skip
                assert preflight.headers.get("access-control-allow-origin") == allowed
            finally:
                server.should_exit = True
                thread.join(10)


def test_a_shutdown_lets_in_flight_streams_finish(tmp_path):
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    with FakeUpstream() as upstream:
        upstream.reply(sse=[{**head, "choices": [{"index": 0, "delta": {"content": f"{i} "}, "finish_reason": None}]} for i in range(20)], chunk_delay=0.1)
        config = tmp_path / "graceful.yaml"
        config.write_text("model_list:\n" + _chat_model(upstream.base_url) + "general_settings: {graceful_shutdown_seconds: 10}\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        process = subprocess.Popen([sys.executable, "-m", "modelport", "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="any", max_retries=0)
            stream = sdk.chat.completions.create(model="m", messages=USER, stream=True)
            first = next(iter(stream))
            process.send_signal(signal.SIGTERM)  # mid-stream: the stream must still complete
            rest = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
            assert text == "".join(f"{i} " for i in range(20))
            assert process.wait(15) is not None
        finally:
            if process.poll() is None:
                process.kill()
