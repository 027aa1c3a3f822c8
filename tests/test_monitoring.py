"""Gateway observability under a real uvicorn server on 127.0.0.1: model retrieval, health
probes, Prometheus metrics (one process and several) and OpenTelemetry traces, driven by
the official openai SDK and raw HTTP against the loopback upstream."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import run_server
from modelport import AsyncClient
from modelport.server import Gateway, Identity, app_from_config
from modelport.server import feature_routes as server_feature_routes
from modelport.server._app import bearer_token
from modelport.testing.upstream import FakeUpstream, Reply

MASTER = "sk-monitoring-master-789"
AUTH = {"Authorization": f"Bearer {MASTER}"}
UPSTREAM_KEY = "sk-upstream-secret-456"
USER = [{"role": "user", "content": "hello there"}]

pytestmark = pytest.mark.filterwarnings("ignore:.*ignored \\(not implemented by modelport\\).*:UserWarning")




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(tmp_path, monkeypatch) -> Iterator[Any]:
    """serve(config_text) -> base URL of a gateway on that config (stopped after the test)."""
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)
    running: List[Any] = []

    def start(config: str, app: Any = None) -> str:
        if app is None:
            path = tmp_path / f"config{len(running)}.yaml"
            path.write_text(config)
            app = app_from_config(str(path), retry_backoff=0.01, max_retry_delay=0.02)
        server, thread, url = run_server(app)
        running.append((server, thread))
        return url

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(10)


def sdk(url: str, key: str = MASTER) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def scrape(url: str, headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """{(sample name, frozenset of labels): value} of one /metrics answer."""
    reply = httpx.get(f"{url}/metrics", headers=headers or {})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Dict[Any, float] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return {"samples": samples, "text": reply.text}


def value(scraped: Dict[str, Any], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in scraped["samples"].items() if n == name and wanted <= ls]
    assert found, f"no sample {name} {labels}"
    return sum(found)


# -- GET /v1/models/{id} ---------------------------------------------------------------------


def test_retrieve_model_through_the_sdk(serve, upstream):
    url = serve(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: {UPSTREAM_KEY}}}
    model_info: {{max_input_tokens: 128000, max_output_tokens: 4096}}
  - model_name: chat-model
    params: {{model: openai/gpt-up-2, api_base: {upstream.base_url}}}
    model_info: {{max_tokens: 32000}}
  - model_name: embedder
    params: {{model: hosted_vllm/bge, api_base: {upstream.base_url}}}
    model_info: {{owned_by: acme}}
  - model_name: "wild/*"
    params: {{model: "openai/*", api_base: {upstream.base_url}}}
router_settings: {{num_retries: 0, model_group_alias: {{gpt-alias: chat-model}}}}
general_settings: {{master_key: {MASTER}}}
""")
    client = sdk(url)
    model = client.models.retrieve("chat-model")
    assert (model.id, model.object, model.created, model.owned_by) == ("chat-model", "model", 0, "openai")
    assert model.model_extra == {"context_window": 32000, "max_output_tokens": 4096}  # the smallest of the group
    embedder = client.models.retrieve("embedder")
    assert embedder.owned_by == "acme" and not embedder.model_extra
    assert client.models.retrieve("gpt-alias").model_dump()["context_window"] == 32000
    assert client.models.retrieve("wild/any-model").id == "wild/any-model"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found" and info.value.status_code == 404
    assert "no-such-model" in info.value.message and info.value.param == "model"
    assert httpx.get(f"{url}/models/embedder", headers=AUTH).json()["id"] == "embedder"
    refused = httpx.get(f"{url}/v1/models/chat-model")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert upstream.requests == []  # answered from the config


def test_retrieve_hides_models_a_key_may_not_use(serve, upstream):
    class TeamKeys:
        async def identify(self, request: Any) -> Optional[Identity]:
            token = bearer_token(request)
            if token == MASTER:
                return Identity(is_master=True)
            if token == "sk-team":
                return Identity(key_alias="team-a", models=("chat-model",))
            return None

    client = AsyncClient.from_config({"model_list": [
        {"model_name": "chat-model", "params": {"model": "openai/gpt-up", "api_base": upstream.base_url}},
        {"model_name": "secret-model", "params": {"model": "openai/gpt-secret", "api_base": upstream.base_url}},
    ]})  # fmt: skip
    gateway = Gateway(client, auth=TeamKeys())
    url = serve("", app=gateway.app(server_feature_routes(gateway)))
    team = sdk(url, "sk-team")
    assert team.models.retrieve("chat-model").id == "chat-model"
    with pytest.raises(openai.NotFoundError):
        team.models.retrieve("secret-model")
    assert sdk(url).models.retrieve("secret-model").id == "secret-model"


# -- health ----------------------------------------------------------------------------------


def test_liveliness_and_readiness_without_dependencies(serve, upstream):
    url = serve(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}}}
general_settings: {{otel: false}}
""")
    for path in ("/health/liveliness", "/health/liveness"):
        alive = httpx.get(f"{url}{path}")
        assert alive.status_code == 200 and alive.json() == "I'm alive!"
    ready = httpx.get(f"{url}/health/readiness")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "healthy" and body["config_loaded"] is True and body["models"] == 1
    assert body["db"] == "not configured" and body["redis"] == "not configured"
    assert body["callbacks"] == ["prometheus"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"  # _app's own, unchanged


def test_readiness_reports_the_embedded_teams_database(serve, upstream):
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("sqlalchemy", "alembic", "aiosqlite")):
        pytest.skip("the teams feature's database packages (modelport[server]) are not installed")
    # a master key and a config file: virtual keys on, in modelport.db beside the config
    url = serve(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}}}
general_settings: {{master_key: {MASTER}}}
""")
    ready = httpx.get(f"{url}/health/readiness")
    assert ready.status_code == 200 and ready.json()["db"] == "connected" and ready.json()["redis"] == "not configured"


def test_readiness_fails_when_a_configured_dependency_is_down(serve, upstream):
    dead = free_port()
    # no master key: virtual keys (which refuse to start without their database) stay off
    url = serve(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}}}
router_settings: {{redis_url: "redis://:redis-password-123@127.0.0.1:{dead}/0"}}
general_settings: {{database_url: "postgresql://admin:db-password-123@127.0.0.1:{dead}/gateway"}}
""")
    started = time.monotonic()
    ready = httpx.get(f"{url}/health/readiness")
    assert time.monotonic() - started < 3
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unhealthy"
    assert body["db"] == "unreachable (connection refused)" and body["redis"] == "unreachable (connection refused)"
    for secret in ("db-password-123", "redis-password-123", str(dead), "127.0.0.1"):
        assert secret not in ready.text


def test_readiness_probes_real_postgres_and_redis(serve, upstream):
    postgres, redis = os.environ.get("MODELPORT_TEST_POSTGRES_URL"), os.environ.get("MODELPORT_TEST_REDIS_URL")
    if not postgres or not redis:
        pytest.skip("MODELPORT_TEST_POSTGRES_URL and MODELPORT_TEST_REDIS_URL are not set (no database or Redis to probe)")
    url = serve(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}}}
router_settings: {{redis_url: "{redis}"}}
general_settings: {{database_url: "{postgres}"}}
""")
    ready = httpx.get(f"{url}/health/readiness")
    assert ready.status_code == 200, ready.text
    assert ready.json()["db"] == "connected" and ready.json()["redis"] == "connected"


def test_deployment_health_probes_each_deployment_and_caches(serve, upstream):
    dead = free_port()

    def refuse(recorded: Any) -> Reply:
        return Reply(status=401, json={"error": {"message": "Incorrect API key provided, see http://10.1.2.3/v1", "type": "invalid_request_error", "code": "invalid_api_key"}})

    refusing = FakeUpstream(handler=refuse).start()
    try:
        url = serve(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: {UPSTREAM_KEY}}}
  - model_name: broken
    params: {{model: openai/gpt-down, api_base: "http://127.0.0.1:{dead}/v1", api_key: sk-broken-secret-000}}
  - model_name: embedder
    params: {{model: hosted_vllm/bge, api_base: {upstream.base_url}}}
    model_info: {{mode: embedding, id: bge-1}}
  - model_name: refusing
    params: {{model: openai/gpt-refuse, api_base: {refusing.base_url}}}
  - model_name: imager
    params: {{model: openai/dall-e, api_base: {upstream.base_url}}}
    model_info: {{mode: image_generation}}
  - model_name: "wild/*"
    params: {{model: "openai/*", api_base: {upstream.base_url}}}
router_settings: {{num_retries: 2}}
general_settings: {{master_key: {MASTER}, health_check_cache_seconds: 60, health_check_concurrency: 2}}
""")
        assert httpx.get(f"{url}/health/deployments").status_code == 401
        reply = httpx.get(f"{url}/health/deployments", headers=AUTH, timeout=30)
        assert len(refusing.requests) == 1  # not retried
    finally:
        refusing.stop()
    assert reply.status_code == 200
    report = reply.json()
    healthy = {e["model_name"]: e for e in report["healthy_endpoints"]}
    unhealthy = {e["model_name"]: e for e in report["unhealthy_endpoints"]}
    skipped = {e["model_name"]: e for e in report["skipped_endpoints"]}
    assert sorted(healthy) == ["chat-model", "embedder"] and sorted(unhealthy) == ["broken", "refusing"]
    assert sorted(skipped) == ["imager", "wild/*"]
    assert report["healthy_count"] == 2 and report["unhealthy_count"] == 2
    assert healthy["chat-model"]["api_base"] == f"127.0.0.1:{upstream.port}" and healthy["chat-model"]["model"] == "openai/gpt-up"
    assert healthy["embedder"]["id"] == "bge-1" and healthy["chat-model"]["latency_ms"] >= 0
    assert unhealthy["broken"] == {
        "model_name": "broken", "model": "openai/gpt-down", "id": "broken#1", "api_base": f"127.0.0.1:{dead}",
        "error": "the upstream provider could not be reached", "code": "upstream_unreachable", "status": 502,
    }  # fmt: skip
    assert unhealthy["refusing"]["code"] == "invalid_api_key" and unhealthy["refusing"]["status"] == 401
    for secret in (UPSTREAM_KEY, "sk-broken-secret-000", "http://", "10.1.2.3"):
        assert secret not in reply.text
    probes = {r.json["model"]: r for r in upstream.requests}
    assert probes["gpt-up"].json == {"model": "gpt-up", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    assert probes["bge"].path == "/v1/embeddings" and probes["bge"].json["input"] == ["ping"]
    assert sorted(probes) == ["bge", "gpt-up"] and len(upstream.requests) == 2  # nothing for the skipped
    # cached: a second report runs no probe
    again = httpx.get(f"{url}/health/deployments", headers=AUTH).json()
    assert len(upstream.requests) == 2 and again["cache_age_seconds"] > 0
    assert again["healthy_endpoints"] == report["healthy_endpoints"]


def test_deployment_health_needs_the_master_key(serve, upstream):
    class Keys:
        async def identify(self, request: Any) -> Optional[Identity]:
            token = bearer_token(request)
            return Identity(is_master=True) if token == MASTER else Identity(key_alias="k") if token == "sk-virtual" else None

    client = AsyncClient.from_config({"model_list": [{"model_name": "m", "params": {"model": "openai/x", "api_base": upstream.base_url}}]})
    gateway = Gateway(client, auth=Keys())
    url = serve("", app=gateway.app(server_feature_routes(gateway)))
    refused = httpx.get(f"{url}/health/deployments", headers={"Authorization": "Bearer sk-virtual"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert httpx.get(f"{url}/health/deployments", headers=AUTH).json()["healthy_count"] == 1


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_count_calls_tokens_errors_and_cooldowns(serve, upstream):
    url = serve(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: {UPSTREAM_KEY}}}
  - model_name: flaky
    params: {{model: openai/gpt-flaky, api_base: {upstream.base_url}}}
  - model_name: "wild/*"
    params: {{model: "openai/*", api_base: {upstream.base_url}}}
router_settings: {{num_retries: 0, allowed_fails: 0, cooldown_time: 300}}
litellm_settings: {{callbacks: ["prometheus"]}}
general_settings: {{master_key: {MASTER}}}
""")
    client = sdk(url)
    input_tokens = output_tokens = 0
    for _ in range(2):
        usage = client.chat.completions.create(model="chat-model", messages=USER).usage
        input_tokens += usage.prompt_tokens
        output_tokens += usage.completion_tokens
    chunks = list(client.chat.completions.create(model="chat-model", messages=USER, stream=True, stream_options={"include_usage": True}))
    input_tokens += chunks[-1].usage.prompt_tokens
    output_tokens += chunks[-1].usage.completion_tokens
    upstream.reply(status=429, json={"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}, headers={"Retry-After": "0"})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="chat-model", messages=USER)
    upstream.reply(status=400, json={"error": {"message": "odd", "type": "invalid_request_error", "code": "user-chosen-code-1234"}})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat-model", messages=USER)
    upstream.reply(status=500, json={"error": {"message": "boom", "type": "server_error"}})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="flaky", messages=USER)
    client.chat.completions.create(model="wild/user-typed-name-xyz", messages=USER)
    with pytest.raises(openai.NotFoundError):  # refused before it is a call: not counted
        client.chat.completions.create(model="user-typed-unknown-abc", messages=USER)

    scraped = scrape(url)  # no key needed by default
    chat = {"model_group": "chat-model", "upstream_model": "openai/gpt-up"}
    assert value(scraped, "modelport_requests_total", **chat, key_alias="none", status="200") == 3
    assert value(scraped, "modelport_requests_total", **chat, status="429") == 1
    assert value(scraped, "modelport_requests_total", **chat, status="400") == 1
    assert value(scraped, "modelport_requests_total", model_group="flaky", upstream_model="openai/gpt-flaky", status="500") == 1
    assert value(scraped, "modelport_requests_total", model_group="wild/*", upstream_model="other", status="200") == 1
    assert value(scraped, "modelport_request_duration_seconds_count", **chat) == 5
    assert value(scraped, "modelport_time_to_first_token_seconds_count", **chat) == 1  # the stream alone
    assert 0 < value(scraped, "modelport_time_to_first_token_seconds_sum", **chat) < value(scraped, "modelport_request_duration_seconds_sum", **chat)
    assert value(scraped, "modelport_input_tokens_total", **chat) == input_tokens
    assert value(scraped, "modelport_output_tokens_total", **chat) == output_tokens
    assert value(scraped, "modelport_spend_usd_total", **chat) == 0
    assert value(scraped, "modelport_upstream_errors_total", **chat, code="rate_limit_exceeded") == 1
    assert value(scraped, "modelport_upstream_errors_total", **chat, code="upstream_error") == 1  # an unknown code, bounded
    assert value(scraped, "modelport_upstream_errors_total", model_group="flaky", code="upstream_server_error") == 1
    assert value(scraped, "modelport_deployments_in_cooldown", model_group="flaky") == 1
    assert value(scraped, "modelport_deployments_in_cooldown", model_group="chat-model") == 1  # the 429 cooled it down
    assert value(scraped, "modelport_deployments_in_cooldown", model_group="wild/*") == 0
    assert value(scraped, "modelport_requests_in_flight", model_group="chat-model") == 0
    for raw in ("user-typed-name-xyz", "user-typed-unknown-abc", "user-chosen-code-1234", UPSTREAM_KEY, MASTER):
        assert raw not in scraped["text"]


def test_in_flight_gauge_and_key_alias_labels(serve, upstream):
    class Keys:
        async def identify(self, request: Any) -> Optional[Identity]:
            token = bearer_token(request) or ""
            return Identity(key_alias=token[3:]) if token.startswith("sk-") else None

    client = AsyncClient.from_config({"model_list": [{"model_name": "slow", "params": {"model": "openai/gpt-slow", "api_base": upstream.base_url}}]})
    gateway = Gateway(client, auth=Keys())
    url = serve("", app=gateway.app(server_feature_routes(gateway)))
    upstream.reply(delay=1.0, json={
        "id": "c", "object": "chat.completion", "created": 0, "model": "gpt-slow",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "late"}, "finish_reason": "stop"}],
    })  # fmt: skip
    worker = threading.Thread(target=lambda: sdk(url, "sk-team-a").chat.completions.create(model="slow", messages=USER))
    worker.start()
    deadline = time.monotonic() + 5
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    during = scrape(url)
    worker.join(10)
    sdk(url, "sk-team-b").chat.completions.create(model="slow", messages=USER)
    after = scrape(url)
    assert value(during, "modelport_requests_in_flight", model_group="slow") == 1
    assert value(after, "modelport_requests_in_flight", model_group="slow") == 0
    assert value(after, "modelport_requests_total", key_alias="team-a", status="200") == 1
    assert value(after, "modelport_requests_total", key_alias="team-b", status="200") == 1
    assert value(after, "modelport_request_duration_seconds_sum", model_group="slow") >= 1.0


def test_metrics_can_be_turned_off_or_put_behind_the_master_key(serve, upstream):
    entry = f"model_list:\n  - model_name: m\n    params: {{model: openai/x, api_base: {upstream.base_url}}}\n"
    off = serve(entry + f"general_settings: {{master_key: {MASTER}, metrics: false}}\n")
    assert httpx.get(f"{off}/metrics").status_code == 404
    assert httpx.get(f"{off}/health/readiness").json()["callbacks"] == []
    guarded = serve(entry + f"general_settings: {{master_key: {MASTER}, metrics_require_auth: true}}\n")
    refused = httpx.get(f"{guarded}/metrics")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert "# TYPE modelport_requests_in_flight gauge" in scrape(guarded, AUTH)["text"]
    litellm_style = serve(entry + f"litellm_settings: {{require_auth_for_metrics_endpoint: true}}\ngeneral_settings: {{master_key: {MASTER}}}\n")
    assert httpx.get(f"{litellm_style}/metrics").status_code == 401


def test_metrics_add_up_across_worker_processes(tmp_path, upstream):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}}}
""")  # no master key: no embedded teams database for the two workers to share
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    ports = [free_port(), free_port()]
    workers = [subprocess.Popen([sys.executable, "-m", "modelport", "serve", "--config", str(config), "--port", str(port), "--no-access-log", "--log-level", "warning"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for port in ports]  # fmt: skip
    try:
        for port, worker in zip(ports, workers):
            deadline = time.monotonic() + 30
            while True:
                assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "a worker did not start"
                time.sleep(0.05)
        first, second = (sdk(f"http://127.0.0.1:{port}") for port in ports)
        first.chat.completions.create(model="chat-model", messages=USER)
        for _ in range(2):
            second.chat.completions.create(model="chat-model", messages=USER)
        for port in ports:  # whichever worker answers the scrape reports all three
            scraped = scrape(f"http://127.0.0.1:{port}")
            assert value(scraped, "modelport_requests_total", model_group="chat-model", status="200") == 3
            assert value(scraped, "modelport_requests_in_flight", model_group="chat-model") == 0
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(10)
    assert list(folder.iterdir())  # the workers wrote their values there


# -- traces ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spans() -> Any:
    """An in-memory exporter on the global tracer provider (set once per process)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.add_span_processor(SimpleSpanProcessor(exporter))
    elif isinstance(current, trace.ProxyTracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    else:
        pytest.skip("another tracer provider is installed globally in this process")
    return exporter


def traced_config(upstream: FakeUpstream, retries: int = 1) -> str:
    return f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: {UPSTREAM_KEY}}}
router_settings: {{num_retries: {retries}}}
general_settings: {{master_key: {MASTER}, otel: true}}
"""


def test_one_span_per_request_and_one_child_per_upstream_attempt(serve, upstream, spans):
    from opentelemetry.trace import SpanKind, StatusCode

    url = serve(traced_config(upstream))
    spans.clear()
    upstream.reply(status=503, json={"error": {"message": "overloaded", "type": "server_error"}}, headers={"Retry-After": "0"})
    result = sdk(url).chat.completions.create(model="chat-model", messages=USER, temperature=0.2, max_tokens=50)
    finished = spans.get_finished_spans()
    parents = [s for s in finished if s.kind == SpanKind.SERVER]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.name == "chat chat-model" and parent.parent is None
    attributes = dict(parent.attributes)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "chat-model"
    assert attributes["gen_ai.provider.name"] == "openai" and attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.request.temperature"] == 0.2 and attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.response.model"] == "gpt-up"
    assert attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["http.response.status_code"] == 200 and parent.status.status_code != StatusCode.ERROR
    children = sorted((s for s in finished if s.parent is not None and s.parent.span_id == parent.context.span_id), key=lambda s: s.start_time)
    assert len(children) == 2 and all(c.kind == SpanKind.CLIENT for c in children)
    assert [c.attributes["http.response.status_code"] for c in children] == [503, 200]
    assert children[0].status.status_code == StatusCode.ERROR and children[0].attributes["error.type"] == "503"
    assert children[1].name == "chat gpt-up" and children[1].attributes["gen_ai.request.model"] == "gpt-up"
    assert children[1].attributes["server.address"] == "127.0.0.1" and children[1].attributes["server.port"] == upstream.port
    # the upstream saw each attempt's W3C traceparent: the parent's trace, the child's span
    assert len(upstream.requests) == 2
    for recorded, child in zip(upstream.requests, children):
        version, trace_id, span_id, flags = recorded.headers["traceparent"].split("-")
        assert version == "00" and int(flags, 16) & 1  # sampled
        assert int(trace_id, 16) == parent.context.trace_id and int(span_id, 16) == child.context.span_id


def test_streams_and_errors_are_traced(serve, upstream, spans):
    from opentelemetry.trace import SpanKind, StatusCode

    url = serve(traced_config(upstream, retries=0))
    spans.clear()
    chunks = list(sdk(url).chat.completions.create(model="chat-model", messages=USER, stream=True, stream_options={"include_usage": True}))
    upstream.reply(status=429, json={"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}})
    with pytest.raises(openai.RateLimitError):
        sdk(url).chat.completions.create(model="chat-model", messages=USER)
    parents = sorted((s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER), key=lambda s: s.start_time)
    assert len(parents) == 2
    streamed, failed = (dict(p.attributes) for p in parents)
    assert streamed["gen_ai.request.stream"] is True and streamed["gen_ai.response.finish_reasons"] == ("stop",)
    assert streamed["gen_ai.usage.output_tokens"] == chunks[-1].usage.completion_tokens
    assert failed["error.type"] == "rate_limit_exceeded" and failed["http.response.status_code"] == 429
    assert parents[1].status.status_code == StatusCode.ERROR
    stream_children = [s for s in spans.get_finished_spans() if s.parent is not None and s.parent.span_id == parents[0].context.span_id]
    assert len(stream_children) == 1 and stream_children[0].end_time <= parents[0].end_time


def test_tracing_is_off_unless_configured(serve, upstream, spans):
    url = serve(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}}}
general_settings: {{master_key: {MASTER}}}
""")
    spans.clear()
    sdk(url).chat.completions.create(model="chat-model", messages=USER)
    assert "traceparent" not in upstream.last.headers
    assert spans.get_finished_spans() == ()


def test_spans_are_exported_over_otlp(tmp_path, upstream):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}}}
""")
    upstream.reply(status=200, body=b"", content_type="application/x-protobuf", path="/v1/traces", times=5)
    port = free_port()
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": upstream.url, "OTEL_SERVICE_NAME": "gateway-under-test", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    worker = subprocess.Popen([sys.executable, "-m", "modelport", "serve", "--config", str(config), "--port", str(port), "--no-access-log", "--log-level", "warning"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sdk(f"http://127.0.0.1:{port}").chat.completions.create(model="chat-model", messages=USER)
    finally:
        worker.terminate()  # a graceful stop flushes the spans still queued
        worker.wait(10)
    exports = [r for r in upstream.requests if r.path == "/v1/traces"]
    assert exports and exports[0].headers["content-type"] == "application/x-protobuf"
    names = []
    for recorded in exports:
        message = ExportTraceServiceRequest()
        message.ParseFromString(recorded.body)
        for resource in message.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
            assert service == "gateway-under-test"
            names += [span.name for scope in resource.scope_spans for span in scope.spans]
    assert sorted(names) == ["chat chat-model", "chat gpt-up"]
    chat = next(r for r in upstream.requests if r.path == "/v1/chat/completions")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]", chat.headers["traceparent"])


def test_litellm_otel_callback_turns_tracing_on(serve, upstream, spans):
    url = serve(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}}}
litellm_settings: {{callbacks: ["otel"]}}
general_settings: {{master_key: {MASTER}}}
""")
    spans.clear()
    sdk(url).chat.completions.create(model="chat-model", messages=USER)
    names = sorted(s.name for s in spans.get_finished_spans())
    assert names == ["chat chat-model", "chat gpt-up"]
    assert upstream.last.headers["traceparent"].startswith("00-")
