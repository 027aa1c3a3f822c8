"""Gateway observability and model endpoints: ``GET /v1/models/{id}``, health probes,
Prometheus metrics and OpenTelemetry traces.

- ``/v1/models/{id}`` (and ``/models/{id}``): one model as OpenAI answers it, or a 404
  ``model_not_found``; ``context_window`` / ``max_output_tokens`` when ``model_info`` gives them.
- ``/health/liveliness`` (and ``/health/liveness``): the process answers.
- ``/health/readiness``: the config is loaded and the database and Redis answer when
  configured (each probed with a short timeout); 503 otherwise.
- ``/health/deployments`` (master key): every deployment probed with a tiny call, the
  answers cached for ``general_settings.health_check_cache_seconds``.
- ``/metrics``: Prometheus exposition (``prometheus-client``), on unless
  ``general_settings.metrics: false``; labels are bounded by the config.
- Traces: one span per call and a child per upstream attempt (``modelport._tracing``),
  on with ``general_settings.otel: true`` or an ``OTEL_EXPORTER_OTLP_ENDPOINT``.

The request path pays for what is on: a guard (calls in flight, the call's state), an
observer (counters, histograms) and a transport wrapper (time to first token, the
upstream model actually called); label children are cached, nothing per request does I/O.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import ssl
import time
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
)
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from ..client import AsyncClient
from ..errors import ModelportError, ProviderError
from ._app import CallRecord, Gateway, Identity
from ._edge import client_error, error_code, error_json, request_id_for

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..routing import Deployment, Router

__all__ = ["routes", "model_card", "MonitoringSettings", "Monitoring"]

log = logging.getLogger("modelport.server")

#: ``model_info.mode`` (LiteLLM's names) -> the operation a health check runs.
_MODES = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embedding",
    "rerank": "rerank",
    "audio_transcription": "transcription",
    "image_generation": "image_generation",
}
_PROBE_BODIES: Dict[str, Dict[str, Any]] = {
    "chat": {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1},
    "text_completion": {"prompt": "ping", "max_tokens": 1},
    "embedding": {"input": ["ping"]},
    "rerank": {"query": "ping", "documents": ["ping"]},
}
#: OpenAI's and the gateway's error codes; any other upstream code is counted as its class.
_KNOWN_CODES = frozenset(
    {"rate_limit_exceeded", "context_length_exceeded", "content_filter", "insufficient_quota", "model_not_found",
     "model_not_allowed", "invalid_api_key", "invalid_request", "invalid_request_error", "invalid_value",
     "unsupported_parameter", "unsupported_value", "invalid_prompt", "content_policy_violation", "request_too_large",
     "upstream_timeout", "upstream_unreachable", "upstream_stream_interrupted", "upstream_malformed_response",
     "upstream_task_failed", "upstream_error", "upstream_server_error", "server_error", "server_configuration_error",
     "internal_error", "permission_denied", "budget_exceeded", "service_unavailable", "overloaded", "not_found"}
)  # fmt: skip
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_MAX_ALIASES = 1000
#: Fields a CallRecord may gain (the first token's time, the call's price): read when there.
_RECORD_HAS_FIRST_TOKEN = "first_token_seconds" in attrs.fields_dict(CallRecord)
_RECORD_HAS_COST = "cost" in attrs.fields_dict(CallRecord)
_READINESS_TIMEOUT = 1.0


# -- settings ------------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _number(general: Mapping[str, Any], name: str, default: float, minimum: float) -> float:
    value = general.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        log.warning("general_settings.%s must be a number >= %s, got %r; using %s", name, minimum, value, default)
        return default
    return float(value)


def _litellm_settings(config: Any) -> Mapping[str, Any]:
    """``litellm_settings`` as written (LiteLLM's ``callbacks``): from the config once it
    keeps the section, until then from its file again (read once, at start)."""
    for name in ("litellm_settings", "litellm"):
        kept = getattr(config, name, None)
        if isinstance(kept, Mapping):
            return kept
    path = getattr(config, "path", "") or ""
    if not path or not os.path.isfile(path):
        return {}
    try:
        import pathlib

        from ..routing._config import _read

        section = _read(pathlib.Path(path)).get("litellm_settings")
    except (OSError, ModelportError, ValueError):
        return {}
    return section if isinstance(section, dict) else {}


def _database_url(config: Any) -> Tuple[Optional[str], bool]:
    """(the database the gateway uses, whether it is the embedded SQLite file): the teams
    feature's ``general_settings.database_url``, ``DATABASE_URL``, or the embedded file of
    a config with a master key."""
    if config is None:
        return os.environ.get("DATABASE_URL") or None, False
    try:
        from ..teams import database_url_for

        return database_url_for(config)
    except (ImportError, ModelportError):
        return None, False


def _redis_url(config: Any) -> Optional[str]:
    """The Redis the router shares its state through (``router_settings.redis_url`` or
    ``redis_host`` / ``redis_port`` / ``redis_password``), as one URL."""
    if config is None:
        return None
    try:
        from ..routing._redis import redis_settings

        found = redis_settings(config)
    except (ImportError, ModelportError):
        return None
    if found is None:
        return None
    if found.url:
        return found.url
    from urllib.parse import quote

    credentials = f":{quote(found.password, safe='')}@" if found.password else ""
    return f"redis://{credentials}{found.host}:{found.port}"


@attrs.frozen
class MonitoringSettings:
    """``general_settings`` keys of this module (LiteLLM's where it has them)."""

    metrics: bool = True
    metrics_require_auth: bool = False
    otel: bool = False
    health_check_cache_seconds: float = 60.0
    health_check_concurrency: int = 8
    health_check_timeout: float = 10.0
    database_url: Optional[str] = attrs.field(default=None, repr=False)
    #: The database is the embedded SQLite file (made by the teams feature when it is on).
    database_embedded: bool = False
    redis_url: Optional[str] = attrs.field(default=None, repr=False)

    @classmethod
    def of(cls, gateway: Gateway) -> "MonitoringSettings":
        from .._tracing import wanted

        router = gateway.client.router
        config = router.config if router is not None else None
        general: Mapping[str, Any] = config.general if config is not None else {}
        litellm = _litellm_settings(config)
        callbacks = litellm.get("callbacks") or []
        callbacks = [str(c) for c in (callbacks if isinstance(callbacks, list) else [callbacks])]
        database = _database_url(config)
        metrics = general.get("metrics")
        require = general.get("metrics_require_auth", litellm.get("require_auth_for_metrics_endpoint"))
        return cls(
            metrics=_truthy(metrics) if metrics is not None else True,
            metrics_require_auth=_truthy(require) if require is not None else False,
            otel=wanted(general, callbacks),
            health_check_cache_seconds=_number(general, "health_check_cache_seconds", 60.0, 0),
            health_check_concurrency=int(_number(general, "health_check_concurrency", 8, 1)),
            health_check_timeout=_number(general, "health_check_timeout", 10.0, 0.1),
            database_url=database[0],
            database_embedded=database[1],
            redis_url=_redis_url(config),
        )


# -- models --------------------------------------------------------------------------------


def _positive_int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def model_card(gateway: Gateway, name: str) -> Optional[Dict[str, Any]]:
    """The OpenAI model object for a name the gateway serves (None when it serves none).

    ``owned_by``: ``model_info.owned_by``, else the provider its deployments share, else
    ``modelport``. ``context_window``: the smallest ``model_info.max_input_tokens`` (or
    ``max_tokens``) of its deployments; ``max_output_tokens`` likewise.
    """
    if not gateway.serves(name):
        return None
    router = gateway.client.router
    group = router.group_of(name) if router is not None else None
    members = [d for d in router.config.deployments if d.model_name == group] if router is not None and group else []
    card: Dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": "modelport"}
    if not members:  # a direct provider/model string (allow_direct_models)
        card["owned_by"] = name.split("/", 1)[0]
        return card
    infos = [d.info for d in members]
    owners = [str(i["owned_by"]) for i in infos if i.get("owned_by")]
    providers = {d.model.split("/", 1)[0] for d in members}
    card["owned_by"] = owners[0] if owners else providers.pop() if len(providers) == 1 else "modelport"
    created = [c for c in (_positive_int(i.get("created")) for i in infos) if c is not None]
    if created:
        card["created"] = min(created)
    windows = [w for w in (_positive_int(i.get("max_input_tokens")) or _positive_int(i.get("max_tokens")) for i in infos) if w]
    if windows:
        card["context_window"] = min(windows)
    outputs = [w for w in (_positive_int(i.get("max_output_tokens")) for i in infos) if w]
    if outputs:
        card["max_output_tokens"] = min(outputs)
    return card


# -- metrics -------------------------------------------------------------------------------


class _CallState:
    """What one call's guard, transport wrapper and observer share (in a context variable)."""

    __slots__ = ("started", "first_token", "sent_model")

    def __init__(self, started: float) -> None:
        self.started = started
        self.first_token: Optional[float] = None
        self.sent_model: Optional[str] = None


_STATE: contextvars.ContextVar[Optional[_CallState]] = contextvars.ContextVar("modelport_call_state", default=None)


def _sent_model(request: Any) -> Optional[str]:
    body = request.json
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


class _MeteredTransport:
    """Notes, for the current call, the upstream model each attempt names and when the
    first bytes of a streamed answer arrive."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, request: Any, timeout: Any) -> Any:
        state = _STATE.get()
        if state is not None:
            state.sent_model = _sent_model(request)
        return await self._inner.send(request, timeout)

    async def stream(self, request: Any, timeout: Any) -> Any:
        state = _STATE.get()
        if state is None:
            return await self._inner.stream(request, timeout)
        state.sent_model = _sent_model(request)
        handle = await self._inner.stream(request, timeout)
        if state.first_token is not None or handle.head.status >= 400:
            return handle
        return _FirstBytes(handle, state)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _FirstBytes:
    def __init__(self, handle: Any, state: _CallState) -> None:
        self._handle = handle
        self._state = state
        self.head = handle.head

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        state = self._state
        async for piece in self._handle.aiter_bytes():
            if piece and state.first_token is None:
                state.first_token = time.monotonic()
            yield piece

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def aclose(self) -> None:
        await self._handle.aclose()

    async def __aenter__(self) -> "_FirstBytes":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


class _Series:
    """The label children of one (group, upstream, key alias, status)."""

    __slots__ = ("requests", "latency", "ttft", "input_tokens", "output_tokens", "spend")

    def __init__(self, metrics: "_Metrics", group: str, upstream: str, alias: str, status: str) -> None:
        self.requests = metrics.requests.labels(group, upstream, alias, status)
        self.latency = metrics.latency.labels(group, upstream)
        self.ttft = metrics.ttft.labels(group, upstream)
        self.input_tokens = metrics.input_tokens.labels(group, upstream, alias)
        self.output_tokens = metrics.output_tokens.labels(group, upstream, alias)
        self.spend = metrics.spend.labels(group, upstream, alias)


class _Metrics:
    """The gateway's Prometheus metrics; also its observer (``record``) and guard (``admit``)."""

    def __init__(self, gateway: Gateway) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.gateway = gateway
        router = gateway.client.router
        self.router: Optional["Router"] = router
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        if self.multiprocess_dir:
            os.makedirs(self.multiprocess_dir, exist_ok=True)
        self.registry = registry = CollectorRegistry(auto_describe=True)
        series = ("model_group", "upstream_model", "key_alias")
        self.requests = Counter("modelport_requests", "Calls through the gateway, by outcome (HTTP status).", (*series, "status"), registry=registry)
        self.latency = Histogram("modelport_request_duration_seconds", "Time from a call's start to its answer (a stream's end).",
                                 ("model_group", "upstream_model"), buckets=_LATENCY_BUCKETS, registry=registry)  # fmt: skip
        self.ttft = Histogram("modelport_time_to_first_token_seconds", "Streams: time from the call's start to the first bytes of the upstream's answer.",
                              ("model_group", "upstream_model"), buckets=_TTFT_BUCKETS, registry=registry)  # fmt: skip
        self.input_tokens = Counter("modelport_input_tokens", "Prompt (input) tokens the upstreams reported.", series, registry=registry)
        self.output_tokens = Counter("modelport_output_tokens", "Completion (output) tokens the upstreams reported.", series, registry=registry)
        self.spend = Counter("modelport_spend_usd", "Spend in USD, as priced for each call.", series, registry=registry)
        self.errors = Counter("modelport_upstream_errors", "Failed calls by OpenAI error code.", ("model_group", "upstream_model", "code"), registry=registry)
        self.in_flight = Gauge("modelport_requests_in_flight", "Calls running now.", ("model_group",), registry=registry, multiprocess_mode="livesum")
        self.cooldown = _CooldownCollector(router)
        registry.register(self.cooldown)
        # Bounded label values: the config's names; anything else is "other".
        self._groups: Dict[str, str] = {}
        self._upstreams: Dict[str, str] = {}
        if router is not None:
            for name in router.model_names:
                group = router.group_of(name)
                if group is not None:
                    self._groups[name] = group
            for deployment in router.config.deployments:
                if "*" in deployment.model:
                    continue
                self._upstreams.setdefault(deployment.model, deployment.model)
                self._upstreams.setdefault(deployment.model.split("/", 1)[-1], deployment.model)
        self._prefixes = sorted(self._upstreams, key=len, reverse=True)
        self._upstream_seen: Dict[str, str] = {}
        self._aliases: Dict[str, str] = {}
        self._series: Dict[Tuple[str, str, str, str], _Series] = {}
        self._flights: Dict[str, Any] = {}

    # labels

    def group_label(self, model: str) -> str:
        group = self._groups.get(model)
        if group is not None:
            return group
        router = self.router
        found = router.group_of(model) if router is not None else None
        return found if found is not None else "other"

    def upstream_label(self, sent: Optional[str], answered: Optional[str]) -> str:
        if sent is not None:
            known = self._upstreams.get(sent)
            if known is not None:
                return known
        if answered is None:
            return "other" if sent is not None else "none"
        label = self._upstream_seen.get(answered)
        if label is None:
            label = self._upstreams.get(answered) or next((self._upstreams[p] for p in self._prefixes if answered.startswith(p)), "other")
            if len(self._upstream_seen) < 4096:
                self._upstream_seen[answered] = label
        return label

    def alias_label(self, identity: Identity) -> str:
        alias = identity.key_alias
        if not alias:
            return "none"
        label = self._aliases.get(alias)
        if label is None:
            label = alias if len(self._aliases) < _MAX_ALIASES else "other"
            if label != "other":
                self._aliases[alias] = label
        return label

    # the guard: calls in flight, the call's state

    async def admit(self, identity: Identity, operation: str, model: str, body: Dict[str, Any]) -> Callable[[CallRecord], Awaitable[None]]:
        _STATE.set(_CallState(time.monotonic()))
        group = self.group_label(model)
        gauge = self._flights.get(group)
        if gauge is None:
            gauge = self._flights[group] = self.in_flight.labels(group)
        gauge.inc()

        async def release(record: CallRecord) -> None:
            gauge.dec()

        return release

    # the observer

    def record(self, record: CallRecord) -> None:
        state = _STATE.get()
        group = self.group_label(record.model)
        upstream = self.upstream_label(state.sent_model if state is not None else None, record.upstream_model)
        alias = self.alias_label(record.identity)
        key = (group, upstream, alias, str(record.status))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self, *key)
        series.requests.inc()
        series.latency.observe(record.seconds)
        if record.stream and record.status == 200:
            first = getattr(record, "first_token_seconds", None) if _RECORD_HAS_FIRST_TOKEN else None
            if first is None and state is not None and state.first_token is not None:
                first = state.first_token - state.started
            if first is not None:
                series.ttft.observe(first)
        usage = record.usage
        cost = getattr(record, "cost", None) if _RECORD_HAS_COST else None
        if usage:
            prompt = usage.get("prompt_tokens")
            if prompt is None:
                prompt = usage.get("input_tokens")
            completion = usage.get("completion_tokens")
            if completion is None:
                completion = usage.get("output_tokens")
            if isinstance(prompt, int) and prompt > 0:
                series.input_tokens.inc(prompt)
            if isinstance(completion, int) and completion > 0:
                series.output_tokens.inc(completion)
            if cost is None:
                cost = usage.get("cost")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost > 0:
            series.spend.inc(cost)
        if record.error is not None and isinstance(record.error, ProviderError):
            code = error_code(record.error, record.status)
            if code not in _KNOWN_CODES:
                code = "upstream_error" if record.status < 500 else "upstream_server_error"
            self.errors.labels(group, upstream, code).inc()

    # exposition

    def render(self, accept: str) -> Tuple[bytes, str]:
        """(body, content type) of one scrape (blocking: run it off the event loop)."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        registry = self.registry
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            collector: Any = multiprocess.MultiProcessCollector  # untyped in prometheus-client
            collector(registry, path=self.multiprocess_dir)
            registry.register(self.cooldown)
        return encoder(registry), content_type

    def process_gone(self) -> None:
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            gone: Any = multiprocess.mark_process_dead  # untyped in prometheus-client
            gone(os.getpid(), self.multiprocess_dir)


class _CooldownCollector:
    """``modelport_deployments_in_cooldown{model_group}``, read from the router's state at scrape time."""

    def __init__(self, router: Optional["Router"]) -> None:
        self.router = router

    def _family(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        return GaugeMetricFamily("modelport_deployments_in_cooldown", "Deployments cooling down after failures.", labels=["model_group"])

    def describe(self) -> Iterable[Any]:
        return [self._family()]

    def collect(self) -> Iterable[Any]:
        family = self._family()
        router = self.router
        if router is not None:
            now = getattr(router, "_clock", time.monotonic)()
            counts: Dict[str, int] = {}
            for deployment in router.config.deployments:
                cooling = 0
                try:
                    cooling = int(bool(router.state.cooling(deployment.id, now)))
                except Exception:  # a shared state that cannot be read now
                    log.warning("metrics: the router state could not be read", exc_info=True)
                counts[deployment.model_name] = counts.get(deployment.model_name, 0) + cooling
            for group, count in counts.items():
                family.add_metric([group], count)
        return [family]


# -- traces --------------------------------------------------------------------------------


class _Tracing:
    """The guard that opens one span per call (its attempts' spans are the transport's)."""

    def __init__(self, gateway: Gateway, tracer: Any) -> None:
        from .._tracing import provider_name

        self.tracer = tracer
        self._providers: Dict[str, Optional[str]] = {}
        router = gateway.client.router
        if router is not None:
            for name in router.model_names:
                group = router.group_of(name)
                prefixes = {d.model.split("/", 1)[0] for d in router.config.deployments if d.model_name == group}
                self._providers[name] = provider_name(prefixes.pop()) if len(prefixes) == 1 else None
        self._direct = gateway.allow_direct_models

    async def admit(self, identity: Identity, operation: str, model: str, body: Dict[str, Any]) -> Callable[[CallRecord], Awaitable[None]]:
        from .._tracing import finish_call, provider_name, start_call

        provider = self._providers.get(model)
        if provider is None and self._direct and model not in self._providers and "/" in model:
            provider = provider_name(model.split("/", 1)[0])
        call = start_call(self.tracer, operation, model, body, provider=provider)

        async def release(record: CallRecord) -> None:
            code: Optional[str] = None
            if record.status == 499:
                code = "client_disconnected"
            elif record.error is not None:
                code = error_code(record.error, record.status)
            elif record.status >= 400:
                code = str(record.status)
            finish_call(call, status=record.status, usage=record.usage, response_model=record.upstream_model, error_code=code,
                        attributes={"modelport.request_id": record.request_id})  # fmt: skip

        return release


# -- health --------------------------------------------------------------------------------


def _host(url: Optional[str]) -> Optional[str]:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    return f"[{host}]:{port}" if ":" in host and port else f"{host}:{port}" if port else host


async def _open(host: str, port: int, use_tls: bool, timeout: float) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = ssl.create_default_context() if use_tls else None
    return await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), timeout)


def _unreachable(error: BaseException) -> str:
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return "unreachable (timed out)"
    if isinstance(error, ConnectionRefusedError):
        return "unreachable (connection refused)"
    if isinstance(error, OSError) and type(error).__name__ == "gaierror":
        return "unreachable (host not found)"
    if isinstance(error, ssl.SSLError):
        return "unreachable (TLS handshake failed)"
    return "unreachable"


async def _probe_redis(url: str, timeout: float) -> str:
    """Redis answers ``PING`` (after ``AUTH`` when the URL holds credentials)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "misconfigured (not a redis:// URL)"

    def command(*args: str) -> bytes:
        encoded = [a.encode() for a in args]
        return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in encoded)

    async def run() -> str:
        if parts.scheme == "unix":
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(unquote(parts.path)), timeout)
        else:
            reader, writer = await _open(parts.hostname or "localhost", parts.port or 6379, parts.scheme == "rediss", timeout)
        try:
            if parts.password is not None or parts.username:
                password = unquote(parts.password or "")
                writer.write(command("AUTH", unquote(parts.username), password) if parts.username else command("AUTH", password))
                if not (await reader.readline()).startswith(b"+OK"):
                    return "unreachable (authentication failed)"
            writer.write(command("PING"))
            await writer.drain()
            answer = await reader.readline()
            if answer.startswith(b"+PONG"):
                return "connected"
            return "unreachable (authentication required)" if answer.startswith(b"-NOAUTH") else "unreachable (unexpected answer)"
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(run(), timeout)
    except Exception as error:
        return _unreachable(error)


async def _probe_database(url: str, timeout: float) -> str:
    """PostgreSQL: see ``_probe_postgres``; SQLite: its file is there."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1].split("?", 1)[0]
        if not path or path == ":memory:":
            return "connected"
        there = await asyncio.to_thread(os.path.exists, path)
        return "connected" if there else "unreachable (the database file is missing)"
    return await _probe_postgres(url, timeout)


async def _probe_postgres(url: str, timeout: float) -> str:
    """A PostgreSQL server answers the protocol's TLS negotiation (``S`` or ``N``):
    reachable and speaking PostgreSQL, without needing its credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") and not parts.scheme.startswith("postgresql+"):
        return "misconfigured (not a postgresql:// URL)"
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = parts.port or int(query.get("port", ["5432"])[0])

    async def run() -> str:
        if host.startswith("/"):
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}"), timeout)
        else:
            reader, writer = await _open(host, port, False, timeout)
        try:
            writer.write((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))  # SSLRequest
            await writer.drain()
            answer = await reader.read(1)
            return "connected" if answer in (b"S", b"N") else "unreachable (unexpected answer)"
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(run(), timeout)
    except Exception as error:
        return _unreachable(error)


# -- the feature ---------------------------------------------------------------------------


class Monitoring:
    """This module's state for one gateway: settings, metrics, tracing, health cache."""

    def __init__(self, gateway: Gateway, settings: Optional[MonitoringSettings] = None) -> None:
        self.gateway = gateway
        self.settings = settings or MonitoringSettings.of(gateway)
        self.metrics: Optional[_Metrics] = None
        self.tracing: Optional[_Tracing] = None
        self._guards: List[Any] = []
        self._owned_provider: Any = None
        self._health: Optional[Tuple[float, float, Dict[str, Any]]] = None  # (monotonic, unix time, report)
        self._probing: Optional["asyncio.Future[Dict[str, Any]]"] = None
        self._prober: Optional[AsyncClient] = None
        if self.settings.metrics:
            self._install_metrics()
        if self.settings.otel:
            self._install_tracing()
        if self._guards:
            gateway.guards.extend(self._guards)
            gateway.on_startup.append(self._guards_last)
        gateway.on_shutdown.append(self._shutdown)

    def _install_metrics(self) -> None:
        try:
            self.metrics = metrics = _Metrics(self.gateway)
        except ImportError:
            log.warning("metrics are on but prometheus-client is not installed (pip install 'modelport[server]'): /metrics is off")
            return
        self.gateway.observers.append(metrics)
        self._guards.append(metrics)
        client = self.gateway.client
        client.transport = _MeteredTransport(client.transport)  # type: ignore[assignment]

    def _install_tracing(self) -> None:
        from .. import _tracing

        if not _tracing.available():
            log.warning("tracing is on but opentelemetry is not installed (pip install 'modelport[otel]'): no spans")
            return
        provider, owned = _tracing.tracer_provider()
        self._owned_provider = provider if owned else None
        tracer = _tracing.get_tracer(provider)
        self.tracing = _Tracing(self.gateway, tracer)
        self._guards.append(self.tracing)
        client = self.gateway.client
        client.transport = _tracing.TracingTransport(client.transport, tracer)  # type: ignore[assignment]

    async def _guards_last(self) -> None:
        # Guards of other features (rate limits, budgets) decide first: a call they refuse
        # is never counted in flight and never opens a span that could not be closed.
        for guard in self._guards:
            if guard in self.gateway.guards:
                self.gateway.guards.remove(guard)
            self.gateway.guards.append(guard)

    async def _shutdown(self) -> None:
        if self.metrics is not None:
            self.metrics.process_gone()
        if self._owned_provider is not None:
            await asyncio.to_thread(self._owned_provider.shutdown)

    # -- answers --------------------------------------------------------------------------

    def _refused(self, request_id: str) -> "Response":
        payload = error_json("this endpoint needs the master key", 403, "permission_denied")
        return self.gateway.json_response(payload, 403, {"x-request-id": request_id})

    async def _master(self, request: "Request", request_id: str) -> Optional["Response"]:
        """None when the request holds the master key, else the answer refusing it."""
        identity = await self.gateway.auth.identify(request)
        if identity is None:
            return self.gateway.unauthorised(request_id)
        return None if identity.is_master else self._refused(request_id)

    async def retrieve_model(self, request: "Request") -> "Response":
        request_id = request_id_for(request.headers)
        try:
            identity = await self.gateway.auth.identify(request)
            if identity is None:
                return self.gateway.unauthorised(request_id)
            name = str(request.path_params["model_id"])
            card = model_card(self.gateway, name) if identity.models is None or name in identity.models else None
            if card is None:
                message = f"The model '{name[:200]}' does not exist or you do not have access to it; see GET /v1/models"
                return self.gateway.json_response(error_json(message, 404, "model_not_found", "model"), 404, {"x-request-id": request_id})
            return self.gateway.json_response(card, headers={"x-request-id": request_id})
        except Exception as error:
            return self.gateway.failure(error, request_id)

    async def liveliness(self, request: "Request") -> "Response":
        return self.gateway.json_response("I'm alive!")

    async def readiness(self, request: "Request") -> "Response":
        from .. import __version__

        settings = self.settings
        client = self.gateway.client
        checks: Dict[str, Awaitable[str]] = {}
        database = settings.database_url
        if database and settings.database_embedded and not await asyncio.to_thread(os.path.exists, database.split(":///", 1)[-1]):
            database = None  # the teams feature makes the embedded file: it is off
        if database:
            checks["db"] = _probe_database(database, _READINESS_TIMEOUT)
        if settings.redis_url:
            checks["redis"] = _probe_redis(settings.redis_url, _READINESS_TIMEOUT)
        extra: Mapping[str, Callable[[], Awaitable[Any]]] = getattr(self.gateway, "readiness_checks", None) or {}
        for name, check in extra.items():
            checks[name] = self._custom_check(check)
        results = dict(zip(checks, await asyncio.gather(*checks.values()))) if checks else {}
        loaded = client.router is not None
        serving = bool(client.model_names) or self.gateway.allow_direct_models
        ready = serving and all(value == "connected" for value in results.values())
        callbacks = [name for name, on in (("prometheus", self.metrics is not None), ("otel", self.tracing is not None)) if on]
        payload: Dict[str, Any] = {
            "status": "healthy" if ready else "unhealthy",
            "config_loaded": loaded,
            "models": len(client.model_names),
            "db": results.get("db", "not configured"),
            "redis": results.get("redis", "not configured"),
            **{name: results[name] for name in extra},
            "callbacks": callbacks,
            "version": __version__,
        }
        return self.gateway.json_response(payload, 200 if ready else 503)

    @staticmethod
    async def _custom_check(check: Callable[[], Awaitable[Any]]) -> str:
        try:
            await asyncio.wait_for(check(), _READINESS_TIMEOUT)
        except Exception as error:
            return _unreachable(error)
        return "connected"

    async def deployments(self, request: "Request") -> "Response":
        request_id = request_id_for(request.headers)
        refused = await self._master(request, request_id)
        if refused is not None:
            return refused
        report = await self.deployment_health()
        return self.gateway.json_response(report, headers={"x-request-id": request_id, "cache-control": "no-store"})

    async def deployment_health(self) -> Dict[str, Any]:
        """The probes' report, at most ``health_check_cache_seconds`` old; concurrent
        requests share one round of probes."""
        cached = self._health
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.settings.health_check_cache_seconds:
            return {**cached[2], "checked_at": int(cached[1]), "cache_age_seconds": round(now - cached[0], 3)}
        probing = self._probing
        if probing is None or probing.done():
            probing = self._probing = asyncio.ensure_future(self._probe_all())
        report = await asyncio.shield(probing)
        cached = self._health
        checked = int(cached[1]) if cached is not None else int(time.time())
        return {**report, "checked_at": checked, "cache_age_seconds": 0.0}

    async def _probe_all(self) -> Dict[str, Any]:
        router = self.gateway.client.router
        deployments = list(router.config.deployments) if router is not None else []
        slots = asyncio.Semaphore(self.settings.health_check_concurrency)

        async def bounded(deployment: "Deployment") -> Tuple[str, Dict[str, Any]]:
            async with slots:
                return await self._probe(deployment)

        started = time.monotonic()
        outcomes = await asyncio.gather(*(bounded(d) for d in deployments))
        report: Dict[str, Any] = {
            "healthy_endpoints": [e for kind, e in outcomes if kind == "healthy"],
            "unhealthy_endpoints": [e for kind, e in outcomes if kind == "unhealthy"],
            "skipped_endpoints": [e for kind, e in outcomes if kind == "skipped"],
        }
        report["healthy_count"] = len(report["healthy_endpoints"])
        report["unhealthy_count"] = len(report["unhealthy_endpoints"])
        self._health = (started, time.time(), report)
        return report

    def _operation(self, deployment: "Deployment") -> Tuple[Optional[str], Optional[str]]:
        """(the operation a health check runs, or None with the reason it is skipped)."""
        mode = deployment.info.get("mode")
        if mode is not None:
            operation = _MODES.get(str(mode))
            if operation is None:
                return None, f"model_info.mode {str(mode)[:40]!r} is not probed"
        else:
            operations = self.gateway.client.provider_hooks(deployment.model.split("/", 1)[0]).info.operations
            operation = next((op for op in ("chat", "embedding", "text_completion", "rerank") if op in operations), None)
            if operation is None:
                return None, "its provider offers no operation cheap enough to probe"
        if operation not in _PROBE_BODIES:
            return None, f"a {operation} call costs too much to run as a health check"
        return operation, None

    def _probe_client(self) -> AsyncClient:
        """A client without the router (a probe calls one deployment, never its group, a
        wildcard group or a fallback) on the gateway's own transport and providers."""
        if self._prober is None:
            from ..routing import declared_providers

            client = self.gateway.client
            router = client.router
            providers = declared_providers(router.config) if router is not None else {}
            self._prober = AsyncClient(transport=client.transport, providers=providers, max_connections=client.max_connections)
        return self._prober

    async def _probe(self, deployment: "Deployment") -> Tuple[str, Dict[str, Any]]:
        client = self.gateway.client
        router = client.router
        assert router is not None
        entry: Dict[str, Any] = {"model_name": deployment.model_name, "model": deployment.model, "id": deployment.id, "api_base": None}
        try:
            params = deployment.call_kwargs()
            entry["api_base"] = _host(params.get("api_base") or params.get("base_url"))
        except ModelportError:
            pass
        if deployment.is_wildcard:
            return "skipped", {**entry, "reason": "a wildcard deployment names no model to probe"}
        timeout = self.settings.health_check_timeout
        started = time.monotonic()
        try:
            operation, reason = self._operation(deployment)
            if operation is None:
                return "skipped", {**entry, "reason": reason}
            model, kwargs = router.call_arguments(deployment, {"num_retries": 0, "timeout": timeout, "drop_params": True})
            body = {k: (list(v) if isinstance(v, list) else v) for k, v in _PROBE_BODIES[operation].items()}
            await asyncio.wait_for(self._probe_client()._run(operation, model, body, kwargs), timeout + 1.0)
        except Exception as error:
            if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
                from ..errors import APITimeoutError

                error = APITimeoutError("the health check timed out")
            status, payload, _ = client_error(error, f"health-check:{deployment.id}")
            inner = payload["error"]
            return "unhealthy", {**entry, "error": inner["message"], "code": inner["code"], "status": status}
        return "healthy", {**entry, "latency_ms": round((time.monotonic() - started) * 1000, 1)}

    async def scrape(self, request: "Request") -> "Response":
        from starlette.responses import Response

        metrics = self.metrics
        assert metrics is not None
        if self.settings.metrics_require_auth:
            refused = await self._master(request, request_id_for(request.headers))
            if refused is not None:
                return refused
        body, content_type = await asyncio.to_thread(metrics.render, request.headers.get("accept", ""))
        return Response(body, headers={"content-type": content_type})

    def routes(self) -> List[Any]:
        from starlette.routing import Route

        found: List[Any] = [
            Route("/v1/models/{model_id:path}", self.retrieve_model, methods=["GET"]),
            Route("/models/{model_id:path}", self.retrieve_model, methods=["GET"]),
            Route("/health/liveliness", self.liveliness, methods=["GET"]),
            Route("/health/liveness", self.liveliness, methods=["GET"]),
            Route("/health/readiness", self.readiness, methods=["GET"]),
            Route("/health/deployments", self.deployments, methods=["GET"]),
        ]
        if self.metrics is not None:
            found.append(Route("/metrics", self.scrape, methods=["GET"]))
        return found


def routes(gateway: Gateway) -> List[Any]:
    """This feature's routes; installs the metrics observer and tracing when they are on."""
    return Monitoring(gateway).routes()

