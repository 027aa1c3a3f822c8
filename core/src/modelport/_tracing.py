"""OpenTelemetry tracing (extra ``modelport[otel]``): GenAI spans and W3C trace context.

Spans follow the OpenTelemetry GenAI semantic conventions. ``start_call`` opens the span
of one call (``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.provider.name``
and its older name ``gen_ai.system``, request parameters) and ``finish_call`` closes it
with the response (``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``gen_ai.response.finish_reasons``). ``TracingTransport`` wraps a
client's transport: every upstream attempt (a retry is another attempt) is a child span
of the call's, and the request carries the child's W3C ``traceparent`` upstream.

Nothing here is imported by ``import modelport``; without the ``opentelemetry`` packages
``available()`` is False and the gateway runs untraced. Error attributes hold codes
(``upstream_timeout``, ``rate_limit_exceeded``, the HTTP status), never messages, URLs or
Python class names.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import logging
import os
import re
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from .errors import APIConnectionError, APITimeoutError, ProviderError, StreamInterruptedError

if TYPE_CHECKING:
    from .provider._types import WireRequest, WireResponse
    from .transport import Timeout

__all__ = [
    "available",
    "wanted",
    "tracer_provider",
    "get_tracer",
    "CallSpan",
    "start_call",
    "finish_call",
    "current_call",
    "TracingTransport",
    "OPERATION_NAMES",
    "provider_name",
]

log = logging.getLogger("modelport.tracing")

#: modelport operations -> ``gen_ai.operation.name`` (the convention's names where it has one).
OPERATION_NAMES = {
    "chat": "chat",
    "text_completion": "text_completion",
    "embedding": "embeddings",
    "rerank": "rerank",
    "transcription": "transcription",
    "image_generation": "image_generation",
    "responses": "chat",
    "messages": "chat",
}
#: modelport provider prefixes -> ``gen_ai.provider.name`` (the convention's well-known values).
_PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "xai": "x_ai",
    "cohere": "cohere",
    "ibm": "ibm.watsonx.ai",
    "ollama": "ollama",
    "ollama_chat": "ollama",
}
#: Request parameters recorded on the call span (convention name -> body field).
_REQUEST_ATTRIBUTES = (
    ("gen_ai.request.max_tokens", "max_tokens"),
    ("gen_ai.request.max_tokens", "max_completion_tokens"),
    ("gen_ai.request.temperature", "temperature"),
    ("gen_ai.request.top_p", "top_p"),
    ("gen_ai.request.frequency_penalty", "frequency_penalty"),
    ("gen_ai.request.presence_penalty", "presence_penalty"),
    ("gen_ai.request.seed", "seed"),
    ("gen_ai.request.choice.count", "n"),
    ("gen_ai.request.encoding_formats", "encoding_format"),
)
#: Finish reasons in a response body: OpenAI's, Anthropic's and Gemini's spelling.
_FINISH = re.compile(rb'"(?:finish_reason|stop_reason|finishReason)"\s*:\s*"([A-Za-z_]{1,40})"')
_TEXT_OPERATIONS = frozenset({"chat", "text_completion"})


def available() -> bool:
    """The OpenTelemetry API is installed."""
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):
        return False


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def wanted(general: Mapping[str, Any], callbacks: Sequence[str] = ()) -> bool:
    """Tracing is asked for: ``general_settings.otel`` when given (``false`` wins), else
    LiteLLM's ``callbacks: ["otel"]`` or an ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``."""
    explicit = general.get("otel")
    if explicit is not None:
        return _truthy(explicit)
    if "otel" in callbacks:
        return True
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def tracer_provider() -> Tuple[Any, bool]:
    """(the tracer provider to use, whether modelport created it and must shut it down).

    An application (or ``opentelemetry-instrument``) that configured a global provider
    keeps it. Otherwise, with ``opentelemetry-sdk`` installed, a provider exporting over
    OTLP/HTTP (``opentelemetry-exporter-otlp-proto-http``, configured by the standard
    ``OTEL_EXPORTER_OTLP_*`` variables) becomes the global one; ``OTEL_SERVICE_NAME``
    names the service (default ``modelport``).
    """
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current, False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("tracing is on but opentelemetry-sdk is not installed (pip install 'modelport[otel]'): no spans are recorded")
        return current, False
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "modelport"}))
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning("tracing is on but no OTLP exporter is installed (pip install opentelemetry-exporter-otlp-proto-http): spans are recorded, not exported")
    else:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider, True


def get_tracer(provider: Any = None) -> Any:
    from opentelemetry import trace

    from . import __version__

    return (provider or trace.get_tracer_provider()).get_tracer("modelport", __version__)


def provider_name(prefix: str) -> str:
    """``gen_ai.provider.name`` for a modelport provider prefix (the prefix itself when the
    convention has no well-known value for it)."""
    return _PROVIDERS.get(prefix, prefix)


class CallSpan:
    """The span of one call and what its attempts learn (finish reasons)."""

    __slots__ = ("span", "context", "outer", "operation", "finish_reasons")

    def __init__(self, span: Any, context: Any, outer: Any, operation: str) -> None:
        self.span = span
        self.context = context
        self.outer = outer
        self.operation = operation
        self.finish_reasons: Tuple[str, ...] = ()


_CURRENT: contextvars.ContextVar[Optional[CallSpan]] = contextvars.ContextVar("modelport_call_span", default=None)


def current_call() -> Optional[CallSpan]:
    return _CURRENT.get()


def start_call(
    tracer: Any, operation: str, model: str, body: Mapping[str, Any], *, provider: Optional[str] = None, server: bool = True
) -> CallSpan:
    """Open the span of one call and make it the current span of this task's context:
    the transport's attempt spans become its children. End it with ``finish_call``."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    name = OPERATION_NAMES.get(operation, operation)
    attributes: Dict[str, Any] = {"gen_ai.operation.name": name, "gen_ai.request.model": model[:256]}
    if provider:
        attributes["gen_ai.provider.name"] = provider
        attributes["gen_ai.system"] = provider
    for attribute, field in _REQUEST_ATTRIBUTES:
        value = body.get(field)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            attributes[attribute] = value if not isinstance(value, str) else [value]
    stop = body.get("stop")
    if isinstance(stop, str):
        attributes["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attributes["gen_ai.request.stop_sequences"] = stop
    if body.get("stream") is True:
        attributes["gen_ai.request.stream"] = True
    kind = trace.SpanKind.SERVER if server else trace.SpanKind.CLIENT
    outer = otel_context.get_current()
    span = tracer.start_span(f"{name} {model[:256]}", context=outer, kind=kind, attributes=attributes)
    context = trace.set_span_in_context(span, outer)
    otel_context.attach(context)  # this task's later work (other instrumentation too) sees the call span
    call = CallSpan(span, context, outer, operation)
    _CURRENT.set(call)
    return call


def finish_call(
    call: CallSpan,
    *,
    status: int,
    usage: Optional[Mapping[str, Any]] = None,
    response_model: Optional[str] = None,
    error_code: Optional[str] = None,
    attributes: Optional[Mapping[str, Any]] = None,
) -> None:
    """Close the call's span with what the call returned."""
    from opentelemetry import context as otel_context
    from opentelemetry.trace import Status, StatusCode

    span = call.span
    if _CURRENT.get() is call:  # a later call of this task is not this one's child
        _CURRENT.set(None)
        otel_context.attach(call.outer)
    values: Dict[str, Any] = {"http.response.status_code": status, **(attributes or {})}
    if response_model:
        values["gen_ai.response.model"] = response_model[:256]
    if usage:
        for attribute, names in (
            ("gen_ai.usage.input_tokens", ("prompt_tokens", "input_tokens")),
            ("gen_ai.usage.output_tokens", ("completion_tokens", "output_tokens")),
        ):
            for key in names:
                value = usage.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    values[attribute] = value
                    break
    if call.finish_reasons:
        values["gen_ai.response.finish_reasons"] = list(call.finish_reasons)
    if error_code is not None:
        values["error.type"] = error_code
        span.set_status(Status(StatusCode.ERROR, error_code))
    span.set_attributes(values)
    span.end()


def _error_type(error: BaseException) -> str:
    if isinstance(error, APITimeoutError):
        return "upstream_timeout"
    if isinstance(error, APIConnectionError):
        return "upstream_unreachable"
    if isinstance(error, StreamInterruptedError):
        return "upstream_stream_interrupted"
    if isinstance(error, ProviderError):
        return "upstream_error"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    return "cancelled" if isinstance(error, asyncio.CancelledError) else "internal_error"


def _reasons(content: bytes) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(m.decode() for m in _FINISH.findall(content)))


class TracingTransport:
    """Wraps an async transport: each request is a CLIENT span (a child of the current
    call's span) and carries its W3C ``traceparent`` (and ``tracestate``) upstream.

    ``gateway.client.transport = TracingTransport(gateway.client.transport)``
    """

    def __init__(self, inner: Any, tracer: Any = None) -> None:
        self._inner = inner
        self._tracer = tracer if tracer is not None else get_tracer()
        from opentelemetry import propagate, trace
        from opentelemetry.trace import Status, StatusCode

        self._propagate: Any = propagate
        self._trace: Any = trace
        self._status: Any = Status
        self._error_code: Any = StatusCode.ERROR

    def _error_status(self, code: str) -> Any:
        return self._status(self._error_code, code)

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _start(self, request: "WireRequest") -> Tuple[Any, "WireRequest", Optional[CallSpan]]:
        call = _CURRENT.get()
        attributes: Dict[str, Any] = {"http.request.method": request.method}
        parts = urlsplit(request.url)
        if parts.hostname:
            attributes["server.address"] = parts.hostname
        if parts.port:
            attributes["server.port"] = parts.port
        body = request.json
        model = body.get("model") if isinstance(body, dict) else None
        operation = OPERATION_NAMES.get(call.operation, call.operation) if call is not None else None
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model[:256]
        if operation is not None:
            attributes["gen_ai.operation.name"] = operation
        name = f"{operation} {model[:256]}" if operation and isinstance(model, str) else request.method
        span = self._tracer.start_span(
            name, context=call.context if call is not None else None, kind=self._trace.SpanKind.CLIENT, attributes=attributes
        )
        carrier: Dict[str, str] = {}
        self._propagate.inject(carrier, context=self._trace.set_span_in_context(span))
        if call is not None:
            call.finish_reasons = ()
        return span, request.with_headers(carrier), call

    def _failed(self, span: Any, error: BaseException) -> None:
        code = _error_type(error)
        span.set_attribute("error.type", code)
        span.set_status(self._error_status(code))
        span.end()

    def _answered(self, span: Any, status: int) -> None:
        span.set_attribute("http.response.status_code", status)
        if status >= 400:
            span.set_attribute("error.type", str(status))
            span.set_status(self._error_status(str(status)))

    async def send(self, request: "WireRequest", timeout: "Timeout") -> "WireResponse":
        span, request, call = self._start(request)
        try:
            response: "WireResponse" = await self._inner.send(request, timeout)
        except BaseException as error:
            self._failed(span, error)
            raise
        self._answered(span, response.status)
        if call is not None and response.status < 400 and call.operation in _TEXT_OPERATIONS:
            call.finish_reasons = _reasons(response.content)
        span.end()
        return response

    async def stream(self, request: "WireRequest", timeout: "Timeout") -> Any:
        span, request, call = self._start(request)
        try:
            handle = await self._inner.stream(request, timeout)
        except BaseException as error:
            self._failed(span, error)
            raise
        status = handle.head.status
        self._answered(span, status)
        scan = call if call is not None and status < 400 and call.operation in _TEXT_OPERATIONS else None
        return _TracedHandle(handle, span, scan, self)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _TracedHandle:
    """A stream handle whose span ends when the stream is closed or read to its end."""

    def __init__(self, handle: Any, span: Any, call: Optional[CallSpan], transport: TracingTransport) -> None:
        self._handle = handle
        self._span: Any = span
        self._call = call
        self._transport = transport
        self.head = handle.head

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        call = self._call
        reasons: List[str] = []
        try:
            async for piece in self._handle.aiter_bytes():
                if call is not None and (b"inish" in piece or b"stop_reason" in piece):
                    reasons.extend(m.decode() for m in _FINISH.findall(piece))
                yield piece
        except GeneratorExit:  # the reader stopped early: the stream is being closed
            self._end(None)
            raise
        except BaseException as error:
            self._end(error)
            raise
        finally:
            if call is not None and reasons:
                call.finish_reasons = tuple(dict.fromkeys(reasons))
        self._end(None)

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    def _end(self, error: Optional[BaseException]) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        if error is not None:
            self._transport._failed(span, error)
        else:
            span.end()

    async def aclose(self) -> None:
        try:
            await self._handle.aclose()
        finally:
            self._end(None)

    async def __aenter__(self) -> "_TracedHandle":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
