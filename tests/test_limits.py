"""Rate limits of callers and router state shared across gateway processes.

Unit tests of the in-process limiter (windows, parallel release, tokens after usage),
then the gateway under uvicorn with the official openai SDK, then Redis (skipped unless
MODELPORT_TEST_REDIS_URL is set): two limiters and two routers on one Redis, Redis going
away mid-test, and two real gateway processes (and ``run_workers``) on one Redis.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

import httpx
import openai
import pytest

from helpers import run_server
from modelport.errors import RateLimitError
from modelport.routing import Router, load_config
from modelport.routing._redis import RedisRouterState, RedisSettings, redis_settings
from modelport.server._app import CallRecord, Identity, RateLimit, bearer_token
from modelport.server._limits import (
    InProcessLimits,
    RateLimiter,
    RedisLimits,
    build_app,
    shared_state_warning,
)
from modelport.testing.upstream import FakeUpstream

REDIS_URL = os.environ.get("MODELPORT_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="MODELPORT_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")
USER = [{"role": "user", "content": "hello"}]
#: Tokens the loopback upstream's echo reports for USER: 4 prompt words + "You said: hello".
HELLO_TOKENS = 7
MINUTE = 60_000 * 60.0  # a fake wall clock at the start of a minute




class Clock:
    def __init__(self, now: float = MINUTE) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def identity(*limits: RateLimit) -> Identity:
    return Identity(key_hash="h", rate_limits=limits)


def record(who: Identity, tokens: Optional[int] = None) -> CallRecord:
    usage = None if tokens is None else {"prompt_tokens": tokens - 1, "completion_tokens": 1, "total_tokens": tokens}
    return CallRecord("req_1", who, "chat", "m", 200, 0.1, usage)


def admit(limiter: RateLimiter, who: Identity) -> Any:
    return asyncio.run(limiter.admit(who, "chat", "m", {}))


def refused(limiter: RateLimiter, who: Identity) -> RateLimitError:
    with pytest.raises(RateLimitError) as caught:
        admit(limiter, who)
    return caught.value


# --- the limiter in one process ------------------------------------------------------------


def test_rpm_counts_per_minute_and_says_when_to_retry():
    clock = Clock(MINUTE + 45.2)
    limiter = RateLimiter(clock=clock)
    who = identity(RateLimit("key:abc", rpm=2))
    first, second = admit(limiter, who), admit(limiter, who)
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.headers["x-ratelimit-limit-requests"] == "2" and second.headers["x-ratelimit-reset-requests"] == "15s"
    error = refused(limiter, who)
    assert error.status == 429 and error.code == "rate_limit_exceeded" and not error.retryable
    assert error.retry_after == 15.0
    assert "2 requests per minute" in error.message and "abc" not in error.message  # no key material
    clock.now = MINUTE + 60.0  # the next minute
    assert admit(limiter, who).headers["x-ratelimit-remaining-requests"] == "1"


def test_tpm_counts_the_tokens_of_finished_calls():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    who = identity(RateLimit("team:t1", tpm=100))
    first = admit(limiter, who)
    assert first.headers["x-ratelimit-remaining-tokens"] == "100"
    second = admit(limiter, who)  # the first call's tokens are not known yet
    asyncio.run(first(record(who, 60)))
    assert admit(limiter, who).headers["x-ratelimit-remaining-tokens"] == "40"
    asyncio.run(second(record(who, 50)))  # 110 >= 100
    error = refused(limiter, who)
    assert "100 tokens per minute" in error.message and "team" in error.message and error.retry_after == 60.0
    asyncio.run(first(CallRecord("req_2", who, "chat", "m", 500, 0.1, None)))  # failed calls count no tokens
    clock.now += 60
    assert admit(limiter, who) is not None


def test_parallel_slots_are_given_back_when_the_call_ends():
    limiter = RateLimiter(clock=Clock())
    who = identity(RateLimit("user:u1", max_parallel_requests=2))
    held = [admit(limiter, who), admit(limiter, who)]
    error = refused(limiter, who)
    assert error.retry_after == 1.0 and "2 requests in parallel" in error.message
    asyncio.run(held.pop()(record(who, 5)))
    held.append(admit(limiter, who))
    assert limiter.local.usage("user:u1", MINUTE)[2] == 2


def test_a_call_counts_in_every_scope_or_in_none():
    limiter = RateLimiter(clock=Clock())
    who = identity(RateLimit("key:k", rpm=5, max_parallel_requests=5), RateLimit("team:t", rpm=1), RateLimit("key:k", rpm=3))
    admit(limiter, who)
    error = refused(limiter, who)
    assert "this team's limit of 1 requests per minute" in error.message
    assert limiter.local.usage("key:k", MINUTE) == (1, 0, 1)  # the refused call took nothing
    admission = admit(limiter, identity(RateLimit("key:k", rpm=3)))
    assert admission.headers["x-ratelimit-remaining-requests"] == "1"  # the lower of the two key limits


def test_callers_without_limits_cost_nothing():
    limiter = RateLimiter()
    assert admit(limiter, Identity(is_master=True)) is None
    assert admit(limiter, identity(RateLimit("key:x"))) is None
    assert limiter.local.usage("key:x", time.time()) == (0, 0, 0)


def test_idle_scopes_are_forgotten_when_the_minute_turns():
    limits = InProcessLimits()
    for number in range(100):
        limits.admit((RateLimit(f"key:{number}", rpm=1),), MINUTE)
    held = limits.admit((RateLimit("key:busy", max_parallel_requests=1),), MINUTE)
    assert held.admitted
    limits.admit((RateLimit("key:new", rpm=1),), MINUTE + 120)
    assert set(limits._counts) == {"key:busy", "key:new"}


def test_redis_settings_come_from_router_settings(monkeypatch):
    assert redis_settings({"num_retries": 1}) is None
    monkeypatch.setenv("TEST_REDIS_PASSWORD", "s3cret-pw")
    settings = redis_settings({"redis_host": "cache.internal", "redis_port": "6380", "redis_password": "os.environ/TEST_REDIS_PASSWORD"})
    assert settings is not None and (settings.host, settings.port, settings.password) == ("cache.internal", 6380, "s3cret-pw")
    assert "s3cret" not in repr(settings) and settings.where() == "cache.internal:6380"
    by_url = redis_settings({"redis_url": "redis://:s3cret-pw@cache.internal:6379/2", "redis_key_prefix": "gw1"})
    assert by_url is not None and by_url.key_prefix == "gw1"
    assert "s3cret" not in by_url.where() and "s3cret" not in repr(by_url)
    with pytest.raises(Exception, match="redis://"):
        redis_settings({"redis_url": "http://cache"})


def test_several_workers_without_redis_are_told_limits_hold_per_process():
    assert shared_state_warning({"redis_url": "redis://127.0.0.1:6379/0"}, 4) is None
    assert shared_state_warning({}, 1) is None
    warning = shared_state_warning({}, 4)
    assert warning is not None and "hold per process" in warning


# --- through the gateway -------------------------------------------------------------------


class KeyAuth:
    """A test Auth: bearer keys mapped to identities with rate limits."""

    def __init__(self, keys: Dict[str, Identity]) -> None:
        self.keys = keys

    async def identify(self, request: Any) -> Optional[Identity]:
        return self.keys.get(bearer_token(request) or "")


def gateway_app(upstream: FakeUpstream, keys: Dict[str, Identity], tmp_path: Any, router_settings: str = "{num_retries: 0}") -> Any:
    config = tmp_path / "limits.yaml"
    config.write_text(textwrap.dedent(f"""
        model_list:
          - model_name: chat-model
            params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: sk-up}}
        router_settings: {router_settings}
    """))
    with warnings.catch_warnings():  # load_config may call the redis_* keys ignored
        warnings.simplefilter("ignore", UserWarning)
        return build_app(str(config), auth=KeyAuth(keys))


@pytest.fixture
def serve_app() -> Iterator[Any]:
    servers: List[Any] = []

    def start(app: Any) -> str:
        server, thread, url = run_server(app)
        servers.append((server, thread))
        return url

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def test_the_gateway_answers_429_with_retry_after_for_a_limited_key(upstream, tmp_path, serve_app):
    keys = {"sk-limited": identity(RateLimit(f"key:{uuid.uuid4().hex}", rpm=2)), "sk-free": Identity(key_hash="free")}
    url = serve_app(gateway_app(upstream, keys, tmp_path, "{num_retries: 2}"))
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-limited", max_retries=0)
    for _ in range(2):
        assert sdk.chat.completions.create(model="chat-model", messages=USER).choices[0].message.content == "You said: hello"
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="chat-model", messages=USER)
    response = caught.value.response
    assert response.status_code == 429 and 1 <= int(response.headers["retry-after"]) <= 60
    assert "x-should-retry" not in response.headers  # the gateway did not retry; the SDK may
    body = response.json()["error"]
    assert body["code"] == "rate_limit_exceeded" and "2 requests per minute" in body["message"]
    assert len(upstream.requests) == 2  # the refused call never reached the upstream
    free = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-free", max_retries=0)
    assert free.chat.completions.create(model="chat-model", messages=USER).choices


def test_streamed_usage_counts_against_tpm(upstream, tmp_path, serve_app):
    keys = {"sk-tpm": identity(RateLimit(f"key:{uuid.uuid4().hex}", tpm=HELLO_TOKENS + 1))}
    url = serve_app(gateway_app(upstream, keys, tmp_path))
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-tpm", max_retries=0)
    chunks = list(sdk.chat.completions.create(model="chat-model", messages=USER, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.total_tokens == HELLO_TOKENS
    sdk.chat.completions.create(model="chat-model", messages=USER)  # 7 < 8: admitted
    with pytest.raises(openai.RateLimitError, match="tokens per minute"):
        sdk.chat.completions.create(model="chat-model", messages=USER)


# --- Redis ---------------------------------------------------------------------------------


def delete_keys(prefix: str) -> None:
    """Delete the keys of one test prefix (nothing else in the shared Redis is touched)."""
    if not REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test only; its keys are deleted afterwards."""
    name = f"modelport-test-{uuid.uuid4().hex[:10]}"
    yield name
    delete_keys(name)


def fresh_minute(margin: float = 4.0) -> None:
    """Wait for the next wall-clock minute when this one ends within ``margin`` seconds."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


def redis_limiter(prefix: str, url: Optional[str] = None, **options: Any) -> RateLimiter:
    return RateLimiter(RedisLimits(RedisSettings(url=url or REDIS_URL, key_prefix=prefix)), **options)


@needs_redis
def test_two_limiters_on_one_redis_share_every_limit(prefix):
    async def scenario() -> None:
        fresh_minute()
        a, b = redis_limiter(prefix), redis_limiter(prefix)
        rpm = identity(RateLimit("key:rpm", rpm=3))
        admitted = []
        for limiter in (a, b, a, b, a, b):
            try:
                admitted.append(await limiter.admit(rpm, "chat", "m", {}))
            except RateLimitError as error:
                assert 1 <= error.retry_after <= 60
        assert len(admitted) == 3
        assert [x.headers["x-ratelimit-remaining-requests"] for x in admitted] == ["2", "1", "0"]

        par = identity(RateLimit("key:par", max_parallel_requests=1))
        held = await a.admit(par, "chat", "m", {})
        with pytest.raises(RateLimitError, match="in parallel"):
            await b.admit(par, "chat", "m", {})
        await held(record(par, 3))
        await (await b.admit(par, "chat", "m", {}))(record(par, 3))

        tpm = identity(RateLimit("key:tpm", tpm=10))
        first = await a.admit(tpm, "chat", "m", {})
        second = await b.admit(tpm, "chat", "m", {})
        await first(record(tpm, 6))
        assert (await a.admit(tpm, "chat", "m", {})).headers["x-ratelimit-remaining-tokens"] == "4"
        await second(record(tpm, 6))
        with pytest.raises(RateLimitError, match="10 tokens per minute"):
            await b.admit(tpm, "chat", "m", {})
        assert a.local.usage("key:rpm", time.time()) == (0, 0, 0)  # all of it was in Redis
        await a.aclose()
        await b.aclose()

    asyncio.run(scenario())


def two_routers(prefix: str, config_text: Dict[str, Any], **options: Any) -> Tuple[Router, Router]:
    config = load_config(config_text)
    settings = RedisSettings(url=REDIS_URL, key_prefix=prefix)
    return Router(config, state=RedisRouterState(settings, **options)), Router(config, state=RedisRouterState(settings, **options))


@needs_redis
def test_two_routers_on_one_redis_share_turns_limits_cool_downs_and_usage(prefix):
    fresh_minute()
    config = {
        "model_list": [
            {"model_name": "m", "params": {"model": "openai/a", "rpm": 3, "max_parallel_requests": 2}},
            {"model_name": "m", "params": {"model": "openai/b"}},
        ],
        "router_settings": {"cooldown_time": 30},
    }
    a, b = two_routers(prefix, config, cache_seconds=0.0)
    assert [r.plan("m")[0].model for r in (a, b, a, b)] == ["openai/a", "openai/b", "openai/a", "openai/b"]

    limited = a.config.deployments[0]
    tickets = [a.begin(limited), b.begin(limited)]
    assert all(tickets) and a.begin(limited) is None  # two in flight across both routers
    b.end(tickets.pop(), result={"usage": {"total_tokens": 11}})
    tickets.append(a.begin(limited))  # the slot came back; three requests this minute
    assert tickets[-1] is not None
    a.end(tickets.pop(), result={"usage": {"total_tokens": 4}})
    assert b.begin(limited) is None  # rpm 3 reached, counted across both
    in_flight, requests, tokens, latency = b.state.load(limited.id, 0)
    assert (in_flight, requests, tokens) == (1, 3, 15) and latency is not None and latency >= 0

    a.end(tickets.pop(), error=RateLimitError("slow down", status=429))  # allowed_fails 0: cools down
    assert b.state.cooling(limited.id, time.monotonic())
    assert [d.model for d in b.plan("m")] == ["openai/b", "openai/a"]  # cooling ones go last
    b.state.recovered(limited.id)
    assert not a.state.cooling(limited.id, time.monotonic())


@needs_redis
def test_usage_based_routing_reads_the_shared_usage(prefix):
    fresh_minute()
    config = {
        "model_list": [
            {"model_name": "m", "params": {"model": "openai/a", "tpm": 1000}},
            {"model_name": "m", "params": {"model": "openai/b", "tpm": 1000}},
        ],
        "router_settings": {"routing_strategy": "usage-based-routing"},
    }
    a, b = two_routers(prefix, config)
    busy = a.config.deployments[0]
    a.end(a.begin(busy), result={"usage": {"total_tokens": 500}})
    assert b.plan("m")[0].model == "openai/b"


class Proxy:
    """A TCP proxy to Redis on loopback, to make Redis go away mid-test."""

    def __init__(self, target: Tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        for sock in [self.listener, *self.sockets]:  # shutdown wakes the accept() of the thread
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def redis_address() -> Tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(REDIS_URL or "")
    return parts.hostname or "127.0.0.1", parts.port or 6379


@needs_redis
def test_redis_going_away_falls_back_to_this_process_without_failing_requests(upstream, tmp_path, serve_app, prefix, caplog):
    fresh_minute()
    proxy = Proxy(redis_address())
    scope = f"key:{uuid.uuid4().hex}"
    keys = {"sk-a": identity(RateLimit(scope, rpm=3))}
    settings = f"{{num_retries: 0, redis_url: 'redis://127.0.0.1:{proxy.port}/0', redis_key_prefix: {prefix}}}"
    url = serve_app(gateway_app(upstream, keys, tmp_path, settings))
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-a", max_retries=0)
    import redis

    shared = redis.Redis.from_url(REDIS_URL or "")
    for _ in range(2):
        sdk.chat.completions.create(model="chat-model", messages=USER)
    window = int(time.time() // 60)
    assert int(shared.get(f"{prefix}:limits:req:{scope}:{window}") or 0) == 2  # counted in Redis
    assert int(shared.get(f"{prefix}:router:turn:chat-model") or 0) == 2  # router state too
    shared.close()

    proxy.close()  # Redis goes away
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="modelport.routing"):
        answers = []
        for _ in range(4):
            try:
                answers.append(sdk.chat.completions.create(model="chat-model", messages=USER).choices[0].message.content)
            except openai.RateLimitError as error:
                answers.append(error.status_code)
    # this process alone now: it had seen none of the minute's calls, so it allows 3 more
    assert answers == ["You said: hello"] * 3 + [429]
    assert time.monotonic() - started < 5
    warnings = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
    assert any("rate limits hold per process" in w for w in warnings)
    assert any("cool-downs, round-robin" in w for w in warnings)
    assert len(warnings) <= 2  # once a minute each, not once per call
    assert all(str(proxy.port) in w or "127.0.0.1" in w for w in warnings)


def test_an_unreachable_redis_never_fails_a_call(prefix):
    pytest.importorskip("redis")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()

    async def scenario() -> None:
        limiter = redis_limiter(prefix, url=f"redis://127.0.0.1:{port}/0")
        who = identity(RateLimit("key:x", rpm=1, max_parallel_requests=1))
        held = await limiter.admit(who, "chat", "m", {})
        assert held is not None and limiter.outage.down
        await held(record(who, 3))
        with pytest.raises(RateLimitError):  # limits still hold, in this process
            await limiter.admit(who, "chat", "m", {})
        await limiter.aclose()

    asyncio.run(scenario())
    state = RedisRouterState(RedisSettings(url=f"redis://127.0.0.1:{port}/0", key_prefix=prefix))
    assert state.next_turn("g") == 0 and state.begin("d", 0, (1, None, None)) and not state.begin("d", 0, (1, None, None))
    state.end("d", 0, 5, 0.1)
    assert state.load("d", 0) == (0, 1, 5, 0.1)


# --- two gateway processes on one Redis ----------------------------------------------------

GATEWAY_SCRIPT = """
import socket, sys
import uvicorn
from modelport.server._app import Identity, RateLimit, bearer_token
from modelport.server._limits import build_app

KEYS = {
    "sk-rpm": Identity(key_hash="rpm", rate_limits=(RateLimit(sys.argv[2] + ":rpm", rpm=3),)),
    "sk-tpm": Identity(key_hash="tpm", rate_limits=(RateLimit(sys.argv[2] + ":tpm", tpm=%d),)),
    "sk-par": Identity(key_hash="par", rate_limits=(RateLimit(sys.argv[2] + ":par", max_parallel_requests=1),)),
    "sk-open": Identity(key_hash="open"),
}

class TestAuth:
    async def identify(self, request):
        return KEYS.get(bearer_token(request) or "")

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
server = uvicorn.Server(uvicorn.Config(build_app(sys.argv[1], auth=TestAuth()), log_level="warning"))
server.run(sockets=[sock])
""" % (HELLO_TOKENS + 3)


def write_config(path: Any, upstream: FakeUpstream, redis_line: str) -> str:
    path.write_text(textwrap.dedent(f"""
        model_list:
          - model_name: limited
            params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: sk-up, rpm: 5}}
          - model_name: open
            params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: sk-up}}
        router_settings: {{num_retries: 0{redis_line}}}
    """))  # no master key: the test Auth (or no auth) decides, and virtual keys stay off
    return str(path)


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else "the gateway exited"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("the gateway did not start")


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        _, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err or ""


@pytest.fixture(scope="module")
def two_gateways(_server, tmp_path_factory) -> Iterator[Tuple[str, str]]:
    """Two gateway processes on one Redis, the same config (tests use distinct keys and models)."""
    if not REDIS_URL:
        pytest.skip("MODELPORT_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    tmp_path = tmp_path_factory.mktemp("two-gateways")
    prefix = f"modelport-test-{uuid.uuid4().hex[:10]}"
    config = write_config(tmp_path / "shared.yaml", _server, f", redis_url: '{REDIS_URL}', redis_key_prefix: {prefix}")
    script = tmp_path / "gateway.py"
    script.write_text(GATEWAY_SCRIPT)
    scope = f"key:{uuid.uuid4().hex}"  # the same keys in both processes
    processes = [
        subprocess.Popen([sys.executable, str(script), config, scope], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        urls = []
        for process in processes:
            assert process.stdout is not None
            urls.append(f"http://127.0.0.1:{int(process.stdout.readline())}")
        for url, process in zip(urls, processes):
            wait_healthy(url, process)
        yield urls[0], urls[1]
    finally:
        for process in processes:
            stop(process)
        delete_keys(prefix)


def sdk_for(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def spread(urls: Tuple[str, ...], key: str, model: str, calls: int) -> List[Any]:
    """``calls`` chat calls, alternating over ``urls``: each the answer text or the 429."""
    outcomes: List[Any] = []
    for number in range(calls):
        try:
            result = sdk_for(urls[number % len(urls)], key).chat.completions.create(model=model, messages=USER)
            outcomes.append(result.choices[0].message.content)
        except openai.RateLimitError as error:
            outcomes.append(error.response)
    return outcomes


def assert_five_of_eight(outcomes: List[Any]) -> None:
    answered = [o for o in outcomes if isinstance(o, str)]
    limited = [o for o in outcomes if not isinstance(o, str)]
    assert answered == ["You said: hello"] * 5 and len(limited) == 3
    for response in limited:
        assert response.status_code == 429 and 1 <= int(response.headers["retry-after"]) <= 60
        assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_deployment_rpm_holds_across_two_gateway_processes(two_gateways, _server):
    fresh_minute()
    _server.clear()
    assert_five_of_eight(spread(two_gateways, "sk-open", "limited", 8))
    assert len(_server.requests) == 5  # the 3 refused calls never reached the upstream


def test_key_limits_hold_across_two_gateway_processes(two_gateways, _server):
    fresh_minute()
    a, b = two_gateways
    _server.clear()
    outcomes = spread(two_gateways, "sk-rpm", "open", 5)
    assert [isinstance(o, str) for o in outcomes] == [True, True, True, False, False]
    assert "3 requests per minute" in outcomes[3].json()["error"]["message"]

    # tpm: the tokens a call used in one process count in the other
    spread((a, b), "sk-tpm", "open", 2)  # 2 * 7 tokens >= 10
    with pytest.raises(openai.RateLimitError, match="tokens per minute"):
        sdk_for(a, "sk-tpm").chat.completions.create(model="open", messages=USER)

    # parallel: a slow call in one process holds the key's only slot in the other
    _server.clear()
    _server.reply(delay=1.5, json={"id": "x", "object": "chat.completion", "created": 0, "model": "gpt-up",
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "slow"}, "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})  # fmt: skip
    slow: List[Any] = []
    thread = threading.Thread(target=lambda: slow.append(sdk_for(a, "sk-par").chat.completions.create(model="open", messages=USER)))
    thread.start()
    deadline = time.monotonic() + 10
    while not _server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(openai.RateLimitError, match="in parallel") as caught:
        sdk_for(b, "sk-par").chat.completions.create(model="open", messages=USER)
    assert caught.value.response.headers["retry-after"] == "1"
    thread.join(10)
    assert slow[0].choices[0].message.content == "slow"
    assert sdk_for(b, "sk-par").chat.completions.create(model="open", messages=USER).choices


WORKERS_SCRIPT = """
import socket, sys
from modelport.server._limits import run_workers

if __name__ == "__main__":  # the workers are spawned: they import this file again
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    sys.exit(run_workers(sys.argv[1], sock, 2, log_level="warning", access_log=False))
"""


def start_workers(tmp_path: Any, config: str) -> Tuple[str, subprocess.Popen]:
    script = tmp_path / "workers.py"
    script.write_text(WORKERS_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), config], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = f"http://127.0.0.1:{int(process.stdout.readline())}"
    wait_healthy(url, process, timeout=30)
    return url, process


@needs_redis
def test_workers_share_one_port_and_the_redis_state(_server, tmp_path, prefix):
    config = write_config(tmp_path / "workers.yaml", _server, f", redis_url: '{REDIS_URL}', redis_key_prefix: {prefix}")
    url, process = start_workers(tmp_path, config)
    try:
        fresh_minute()
        assert_five_of_eight(spread((url,), "sk-any", "limited", 8))
    finally:
        err = stop(process)
    assert "hold per process" not in err


def test_workers_without_redis_say_at_start_that_limits_hold_per_process(_server, tmp_path):
    config = write_config(tmp_path / "workers.yaml", _server, "")
    script = tmp_path / "workers.py"
    script.write_text(WORKERS_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), config], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # said before the workers start
    finally:
        stop(process)
    assert "2 workers without router_settings.redis_url" in first and "hold per process" in first
