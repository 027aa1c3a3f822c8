"""``Client``, ``AsyncClient`` and the module-level functions.

One request pipeline, written once as a generator that *yields* the I/O it needs
(send, sleep, report progress) and receives the results: the sync client drives it
with httpx, the async one with aiohttp. Retries, multi-step follow-ups and mock
responses live in the pipeline, so both clients behave identically by construction.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import TYPE_CHECKING, Any, Dict, Generator, Iterable, List, Mapping, Optional, Tuple, Union

from ._streaming import AsyncStream, Stream, chunk_type_for
from ._transport import AsyncTransport, SyncTransport, encode_json
from ._wire import Call, FollowUp, WireRequest, WireResponse, env_value, redact_headers, stamp_error
from .errors import (
    APIConnectionError,
    APITimeoutError,
    InvalidRequestError,
    ProviderError,
)
from .types import (
    ChatCompletion,
    Completion,
    EmbeddingResponse,
    ImageResponse,
    OpenAIObject,
    RerankResponse,
    Transcription,
)

if TYPE_CHECKING:
    from ._plugins import ProviderHooks, ProviderListing

__all__ = ["Client", "AsyncClient", "OPENAI_PARAMS", "CALL_OPTIONS"]

log = logging.getLogger("modelport")

#: Per-call options: they configure the call and never go into the request body.
CALL_OPTIONS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "timeout",
        "num_retries",
        "extra_headers",
        "extra_body",
        "drop_params",
        "mock_response",
        "on_progress",
    }
)

_CHAT_PARAMS = frozenset(
    {
        "messages", "model", "audio", "frequency_penalty", "function_call", "functions",
        "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata",
        "modalities", "n", "parallel_tool_calls", "prediction", "presence_penalty",
        "prompt_cache_key", "reasoning_effort", "response_format", "safety_identifier", "seed",
        "service_tier", "stop", "store", "stream", "stream_options", "temperature",
        "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
    }
)  # fmt: skip

#: OpenAI's own request parameters per operation; anything else is a provider extra.
OPENAI_PARAMS: Dict[str, frozenset] = {
    "chat": _CHAT_PARAMS,
    "text_completion": frozenset(
        {
            "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
            "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
            "suffix", "temperature", "top_p", "user",
        }
    ),  # fmt: skip
    "embedding": frozenset({"model", "input", "dimensions", "encoding_format", "user"}),
    "rerank": frozenset({"model", "query", "documents", "top_n", "return_documents"}),
    "transcription": frozenset(
        {"model", "language", "prompt", "response_format", "temperature", "timestamp_granularities"}
    ),
    "image_generation": frozenset(
        {"model", "prompt", "n", "size", "quality", "response_format", "style", "user", "background", "output_format"}
    ),
}

_RESULT_TYPES = {
    "chat": ChatCompletion,
    "text_completion": Completion,
    "embedding": EmbeddingResponse,
    "rerank": RerankResponse,
    "transcription": Transcription,
    "image_generation": ImageResponse,
}

_SEND, _SLEEP, _PROGRESS = "send", "sleep", "progress"
_MAX_RETRY_AFTER = 60.0


class _MockBody:
    """A mocked stream's head and body, wrapped into a handle by the driving client."""

    def __init__(self, head: WireResponse, payload: bytes) -> None:
        self.head = head
        self.payload = payload


class _MockHandle:
    def __init__(self, mock: _MockBody) -> None:
        self.head = mock.head
        self._payload = mock.payload

    def iter_bytes(self) -> Any:
        return iter((self._payload,))

    def close(self) -> None:
        return None


class _AsyncMockHandle(_MockHandle):
    async def iter_bytes(self) -> Any:  # type: ignore[override]
        yield self._payload

    async def close(self) -> None:  # type: ignore[override]
        return None


# --- preparing a call --------------------------------------------------------------------


def _registry() -> Any:
    # Imported on the first call, not by `import modelport`: pluggy and entry-point
    # scanning are only needed once a provider is actually used.
    from ._plugins import registry

    return registry


def _split_model(model: Any) -> Tuple[str, str]:
    if not isinstance(model, str) or "/" not in model.strip("/"):
        registry = _registry()
        installed = ", ".join(registry.names()) or "none installed"
        raise InvalidRequestError(
            f"model {model!r} needs a provider prefix: '<provider>/<model id>',"
            f" e.g. 'openai/{model}' (providers: {installed})",
            param="model",
        )
    provider, _, model_id = model.partition("/")
    return provider, model_id


def _file_part(file: Any) -> Tuple[str, bytes, str]:
    """A multipart file from bytes, a path, a (name, bytes) pair or a binary file object."""
    if isinstance(file, tuple) and len(file) >= 2:
        name, content = file[0], file[1]
        content_type = file[2] if len(file) > 2 else None
    elif isinstance(file, (bytes, bytearray)):
        name, content, content_type = "audio", bytes(file), None
    elif isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as handle:
            name, content, content_type = os.path.basename(str(file)), handle.read(), None
    elif hasattr(file, "read"):
        content = file.read()
        if isinstance(content, str):
            raise InvalidRequestError("file must be opened in binary mode ('rb')", param="file")
        name = os.path.basename(getattr(file, "name", "audio") or "audio")
        content_type = None
    else:
        raise InvalidRequestError(
            f"file must be bytes, a path, a (name, bytes) pair or a binary file object, not {type(file).__name__}",
            param="file",
        )
    if content_type is None:
        import mimetypes

        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, bytes(content), content_type


def _check_messages(messages: Any) -> List[Dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list of messages", param="messages")
    out = []
    for position, message in enumerate(messages):
        if isinstance(message, OpenAIObject):
            message = message.to_dict()
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequestError(
                f"messages[{position}] must be an object with a 'role' (got {message!r:.80})",
                param=f"messages[{position}]",
            )
        out.append(message)
    return out


def _check_options(opts: Dict[str, Any]) -> None:
    """Per-call options of the wrong type fail here, named, instead of deep in a transport."""
    timeout = opts.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise InvalidRequestError(f"timeout must be a positive number of seconds or None, got {timeout!r}", param="timeout")
    retries = opts.get("num_retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise InvalidRequestError(f"num_retries must be a whole number >= 0, got {retries!r}", param="num_retries")
    for name in ("extra_headers", "extra_body"):
        value = opts.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise InvalidRequestError(f"{name} must be a mapping, got {type(value).__name__}", param=name)
    headers = opts.get("extra_headers") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise InvalidRequestError("extra_headers keys and values must be strings", param="extra_headers")


def _to_json(value: Any) -> Any:
    if isinstance(value, OpenAIObject):
        return value.to_dict()
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


class _Defaults:
    """Settings shared by Client and AsyncClient, and the call preparation that reads them."""

    def __init__(
        self,
        *,
        api_key: Optional[str] = None,
        api_base: Optional[str] = None,
        timeout: Optional[float] = 600.0,
        num_retries: int = 2,
        extra_headers: Optional[Mapping[str, str]] = None,
        retry_backoff: float = 0.5,
        max_retry_delay: float = 8.0,
        router: Any = None,
    ) -> None:
        self._router = router
        self._api_key = api_key
        self.api_base = api_base
        self.timeout = timeout
        self.num_retries = num_retries
        self.extra_headers = dict(extra_headers or {})
        self.retry_backoff = retry_backoff
        self.max_retry_delay = max_retry_delay

    def __repr__(self) -> str:
        key = "'[REDACTED]'" if self._api_key else "None"
        return f"{type(self).__name__}(api_base={self.api_base!r}, api_key={key}, num_retries={self.num_retries})"

    @classmethod
    def from_config(cls, source: Any, **defaults: Any) -> Any:
        """A client whose model names include the aliases of a config file (YAML or TOML).

        Aliases route to their deployments with cool-downs and fallbacks; providers the
        file declares under ``providers:`` are registered; other model strings work as usual.
        """
        from ._config import Router, load_config, register_declared_providers

        config = load_config(source)
        register_declared_providers(config)
        return cls(router=Router(config), **defaults)

    @property
    def router(self) -> Any:
        """The config router (``from_config``), or None."""
        return self._router

    @property
    def model_names(self) -> List[str]:
        """The config's model aliases (empty without a config)."""
        return self._router.model_names if self._router is not None else []

    def _prepare(
        self, operation: str, model: Any, body: Dict[str, Any], kwargs: Dict[str, Any]
    ) -> Tuple[ProviderHooks, Call, Dict[str, Any]]:
        files = kwargs.pop("_files", None) or {}
        provider, model_id = _split_model(model)
        hooks = _registry().hooks(provider)
        info = hooks.info
        if operation not in info.operations:
            raise InvalidRequestError(
                f"provider {info.name!r} does not support {operation};"
                f" it supports: {', '.join(sorted(info.operations))}",
                param="model",
            )
        opts = {}
        provider_options = {}
        for key in list(kwargs):
            if key in CALL_OPTIONS:
                opts[key] = kwargs.pop(key)
            elif key in info.options:
                provider_options[key] = kwargs.pop(key)
        for key, value in kwargs.items():  # non-OpenAI keywords are provider body fields
            if value is not None:
                body[key] = _to_json(value)
        if info.params is not None:
            known = OPENAI_PARAMS.get(operation, frozenset())
            unsupported = sorted(k for k in body if k in known and k not in info.params and k != "model")
            if unsupported:
                if not opts.get("drop_params"):
                    raise InvalidRequestError(
                        f"provider {info.name!r} does not support {', '.join(unsupported)};"
                        " remove it or pass drop_params=True to drop unsupported parameters",
                        param=unsupported[0],
                    )
                log.debug("drop_params: dropped %s for provider %s", unsupported, info.name)
                for key in unsupported:
                    del body[key]
        _check_options(opts)
        extra_body = opts.get("extra_body")
        if extra_body:
            body.update(extra_body)
        headers = dict(self.extra_headers)
        headers.update(opts.get("extra_headers") or {})
        call = Call(
            operation=operation,
            provider=info.name,
            model=model_id,
            body={"model": model_id, **body},
            info=info,
            stream=bool(body.get("stream")),
            api_key=opts.get("api_key") or self._api_key or env_value(info.api_key_env),
            api_base=opts.get("api_base") or opts.get("base_url") or self.api_base,
            options=provider_options,
            extra_headers=headers,
            timeout=opts.get("timeout", self.timeout),
            files=files,
        )
        return hooks, call, opts

    # -- the pipeline ---------------------------------------------------------------------

    def _retry_delay(self, attempt: int, response: Optional[WireResponse]) -> float:
        if response is not None:
            after = _retry_after(response.headers)
            if after is not None:
                return after
        base = min(self.max_retry_delay, self.retry_backoff * (2 ** (attempt - 1)))
        return base * (0.5 + random.random() / 2)

    def _pipeline(
        self, hooks: ProviderHooks, call: Call, opts: Dict[str, Any]
    ) -> Generator[Tuple[Any, ...], Any, Any]:
        endpoint = hooks.resolve_endpoint(call)
        request = hooks.transform_request(call, endpoint)
        if call.extra_headers:
            request.headers.update(call.extra_headers)
        retries = opts.get("num_retries", self.num_retries)
        mock = opts.get("mock_response")
        started = time.monotonic()
        attempt = 0
        if isinstance(mock, dict) and call.operation not in ("chat", "text_completion"):
            # A mocked embedding / rerank / image result is the final answer: multi-step
            # operations (submit, then poll) have no single upstream response to stand for.
            return mock
        while True:
            if mock is not None:
                response: Any = _mock_response(call, request, mock)
                if isinstance(response, _MockBody):
                    return response
            else:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s %s headers=%s", request.method, request.url, redact_headers(request.headers))
                try:
                    response = yield (_SEND, request, call.stream)
                except (APIConnectionError, APITimeoutError) as exc:
                    stamp_error(exc, call)
                    if attempt < retries:
                        attempt += 1
                        delay = self._retry_delay(attempt, None)
                        log.info("retry %d/%d in %.2fs after %s", attempt, retries, delay, type(exc).__name__)
                        yield (_SLEEP, delay)
                        continue
                    raise
                if not isinstance(response, WireResponse):
                    return response  # an open stream with a 2xx status
            if response.status >= 400:
                error = hooks.map_error(call, response) or _fallback_error(call, response)
                stamp_error(error, call)
                if error.retryable and attempt < retries:
                    attempt += 1
                    delay = self._retry_delay(attempt, response)
                    log.info("retry %d/%d in %.2fs after %s", attempt, retries, delay, type(error).__name__)
                    yield (_SLEEP, delay)
                    continue
                raise error
            result = hooks.transform_response(call, response)
            if isinstance(result, FollowUp):
                yield (_PROGRESS, result.status, time.monotonic() - started)
                if result.delay:
                    yield (_SLEEP, result.delay)
                request = result.request
                if call.extra_headers:
                    request.headers.update(call.extra_headers)
                attempt = 0
                mock = None
                continue
            return result

    def build_request(self, operation: str, model: str, **kwargs: Any) -> WireRequest:
        """The exact HTTP request a call would send, without sending it (``--dry-run``).

        ``operation`` is one of ``chat``, ``text_completion``, ``embedding``, ``rerank``,
        ``transcription``, ``image_generation``; ``kwargs`` are the call's arguments.
        """
        body: Dict[str, Any] = {}
        if self._router is not None and model in self._router:
            model, kwargs = self._router.call_arguments(self._router.plan(model)[0], kwargs)
        if operation == "chat":
            body["messages"] = _check_messages(kwargs.pop("messages", None))
        if operation == "transcription" and "file" in kwargs:
            kwargs["_files"] = {"file": _file_part(kwargs.pop("file"))}
        hooks, call, _ = self._prepare(operation, model, body, kwargs)
        call.dry_run = True
        request = hooks.transform_request(call, hooks.resolve_endpoint(call))
        request.headers.update(call.extra_headers)
        return request

    def _finish(self, hooks: ProviderHooks, call: Call, result: Any) -> Any:
        return _RESULT_TYPES[call.operation].from_dict(result)


def _fallback_error(call: Call, response: WireResponse) -> ProviderError:
    from .openai_wire import build_error

    return build_error(call, response)


def _retry_after(headers: Mapping[str, str]) -> Optional[float]:
    value = headers.get("retry-after-ms")
    if value:
        try:
            return min(_MAX_RETRY_AFTER, max(0.0, float(value) / 1000))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return min(_MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        import email.utils

        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if parsed is None:
            return None
        return min(_MAX_RETRY_AFTER, max(0.0, parsed.timestamp() - time.time()))


def _mock_response(call: Call, request: WireRequest, mock: Any) -> Union[WireResponse, _MockBody]:
    """What the upstream would have answered, without the network: runs the response hooks."""
    if isinstance(mock, BaseException):
        raise mock
    created = int(time.time())
    if isinstance(mock, dict):
        body = mock
    elif call.operation == "text_completion":
        body = {
            "id": "cmpl-mock", "object": "text_completion", "created": created, "model": call.model,
            "choices": [{"index": 0, "text": str(mock), "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }  # fmt: skip
    elif call.operation == "chat":
        body = {
            "id": "chatcmpl-mock", "object": "chat.completion", "created": created, "model": call.model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": str(mock), "refusal": None}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }  # fmt: skip
    else:
        raise InvalidRequestError(
            f"mock_response for {call.operation} must be a full response dict", param="mock_response"
        )
    if not call.stream:
        return WireResponse(200, {"content-type": "application/json"}, encode_json(body), request)
    events = [encode_json(chunk) for chunk in _chunks_of(body, call)]
    payload = b"".join(b"data: " + event + b"\n\n" for event in events) + b"data: [DONE]\n\n"
    return _MockBody(WireResponse(200, {"content-type": "text/event-stream"}, b"", request), payload)


def _chunks_of(body: Dict[str, Any], call: Call) -> Iterable[Dict[str, Any]]:
    head: Dict[str, Any] = {k: body[k] for k in ("id", "created", "model") if k in body}
    if call.operation == "text_completion":
        for choice in body.get("choices", []):
            for piece in _pieces(choice.get("text") or ""):
                yield {**head, "object": "text_completion", "choices": [{"index": choice.get("index", 0), "text": piece, "logprobs": None, "finish_reason": None}]}
            yield {**head, "object": "text_completion", "choices": [{"index": choice.get("index", 0), "text": "", "logprobs": None, "finish_reason": choice.get("finish_reason")}]}
    else:
        for choice in body.get("choices", []):
            index = choice.get("index", 0)
            message = choice.get("message") or {}
            yield {**head, "object": "chat.completion.chunk", "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]}
            for piece in _pieces(message.get("content") or ""):
                yield {**head, "object": "chat.completion.chunk", "choices": [{"index": index, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}]}
            yield {**head, "object": "chat.completion.chunk", "choices": [{"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason", "stop")}]}
    if (call.body.get("stream_options") or {}).get("include_usage") and body.get("usage"):
        yield {**head, "object": "chat.completion.chunk" if call.operation == "chat" else "text_completion", "choices": [], "usage": body["usage"]}


def _pieces(text: str) -> List[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)] if text else []


# --- the clients -------------------------------------------------------------------------


class Client(_Defaults):
    """A sync client holding pooled, kept-alive connections; safe to share between threads.

    ``httpx_transport`` (e.g. ``httpx.MockTransport``) or ``http_client`` replace the
    network layer, for tests.
    """

    def __init__(self, *, http_client: Any = None, httpx_transport: Any = None, **defaults: Any) -> None:
        super().__init__(**defaults)
        self._http_client = http_client
        self._httpx_transport = httpx_transport
        self._transport: Optional[SyncTransport] = None

    @property
    def transport(self) -> SyncTransport:
        if self._transport is None:
            self._transport = SyncTransport(self._http_client, httpx_transport=self._httpx_transport)
        return self._transport

    def _run(self, operation: str, model: Any, body: Dict[str, Any], kwargs: Dict[str, Any]) -> Any:
        if self._router is not None and model in self._router:
            return self._router.run(model, lambda target, merged: self._run_one(operation, target, dict(body), merged), kwargs)
        return self._run_one(operation, model, body, kwargs)

    def _run_one(self, operation: str, model: Any, body: Dict[str, Any], kwargs: Dict[str, Any]) -> Any:
        hooks, call, opts = self._prepare(operation, model, body, kwargs)
        on_progress = opts.get("on_progress")
        pipeline = self._pipeline(hooks, call, opts)
        result: Any = None
        try:
            action = next(pipeline)
            while True:
                kind = action[0]
                result = None
                if kind == _SEND:
                    try:
                        result = self._send(action[1], action[2], call.timeout)
                    except ProviderError as exc:
                        action = pipeline.throw(exc)
                        continue
                elif kind == _SLEEP:
                    time.sleep(action[1])
                elif on_progress is not None:
                    on_progress(action[1], action[2])
                action = pipeline.send(result)
        except StopIteration as stop:
            result = stop.value
        if call.stream:
            handle = _MockHandle(result) if isinstance(result, _MockBody) else result
            return Stream(handle, hooks, call, chunk_type_for(operation))
        return self._finish(hooks, call, result)

    def _send(self, request: WireRequest, stream: bool, timeout: Optional[float]) -> Any:
        if not stream:
            return self.transport.send(request, timeout)
        handle = self.transport.stream(request, timeout)
        if handle.head.status < 400:
            return handle
        try:
            content = handle.read()
        finally:
            handle.close()
        return WireResponse(handle.head.status, handle.head.headers, content, request)

    def completion(self, model: str, messages: List[Any], **kwargs: Any) -> Any:
        """Chat completion: a ``ChatCompletion``, or a ``Stream`` of chunks with ``stream=True``."""
        return self._run("chat", model, {"messages": _check_messages(messages)}, kwargs)

    def text_completion(self, model: str, prompt: Any, **kwargs: Any) -> Any:
        """Legacy ``/completions``: a ``Completion``, or a ``Stream`` of them with ``stream=True``."""
        return self._run("text_completion", model, {"prompt": prompt}, kwargs)

    def embedding(self, model: str, input: Any, **kwargs: Any) -> EmbeddingResponse:
        return self._run("embedding", model, {"input": input}, kwargs)

    def rerank(self, model: str, query: str, documents: List[Any], **kwargs: Any) -> RerankResponse:
        return self._run("rerank", model, {"query": query, "documents": documents}, kwargs)

    def transcription(self, model: str, file: Any, **kwargs: Any) -> Transcription:
        """Audio transcription: ``file`` is bytes, a path, a (name, bytes) pair or a binary file."""
        kwargs["_files"] = {"file": _file_part(file)}
        return self._run("transcription", model, {}, kwargs)

    def image_generation(self, model: str, prompt: str, **kwargs: Any) -> ImageResponse:
        return self._run("image_generation", model, {"prompt": prompt}, kwargs)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncClient(_Defaults):
    """An async client on aiohttp, one connection pool per event loop."""

    def __init__(self, *, session: Any = None, **defaults: Any) -> None:
        super().__init__(**defaults)
        self._session = session
        self._transport: Optional[AsyncTransport] = None

    @property
    def transport(self) -> AsyncTransport:
        if self._transport is None:
            self._transport = AsyncTransport(self._session)
        return self._transport

    async def _run(self, operation: str, model: Any, body: Dict[str, Any], kwargs: Dict[str, Any]) -> Any:
        if self._router is not None and model in self._router:
            return await self._router.arun(model, lambda target, merged: self._run_one(operation, target, dict(body), merged), kwargs)
        return await self._run_one(operation, model, body, kwargs)

    async def _run_one(self, operation: str, model: Any, body: Dict[str, Any], kwargs: Dict[str, Any]) -> Any:
        import asyncio

        hooks, call, opts = self._prepare(operation, model, body, kwargs)
        on_progress = opts.get("on_progress")
        pipeline = self._pipeline(hooks, call, opts)
        result: Any = None
        try:
            action = next(pipeline)
            while True:
                kind = action[0]
                result = None
                if kind == _SEND:
                    try:
                        result = await self._send(action[1], action[2], call.timeout)
                    except ProviderError as exc:
                        action = pipeline.throw(exc)
                        continue
                elif kind == _SLEEP:
                    await asyncio.sleep(action[1])
                elif on_progress is not None:
                    on_progress(action[1], action[2])
                action = pipeline.send(result)
        except StopIteration as stop:
            result = stop.value
        finally:
            pipeline.close()
        if call.stream:
            handle = _AsyncMockHandle(result) if isinstance(result, _MockBody) else result
            return AsyncStream(handle, hooks, call, chunk_type_for(operation))
        return self._finish(hooks, call, result)

    async def _send(self, request: WireRequest, stream: bool, timeout: Optional[float]) -> Any:
        if not stream:
            return await self.transport.send(request, timeout)
        handle = await self.transport.stream(request, timeout)
        if handle.head.status < 400:
            return handle
        try:
            content = await handle.read()
        finally:
            await handle.close()
        return WireResponse(handle.head.status, handle.head.headers, content, request)

    async def completion(self, model: str, messages: List[Any], **kwargs: Any) -> Any:
        return await self._run("chat", model, {"messages": _check_messages(messages)}, kwargs)

    async def text_completion(self, model: str, prompt: Any, **kwargs: Any) -> Any:
        return await self._run("text_completion", model, {"prompt": prompt}, kwargs)

    async def embedding(self, model: str, input: Any, **kwargs: Any) -> EmbeddingResponse:
        return await self._run("embedding", model, {"input": input}, kwargs)

    async def rerank(self, model: str, query: str, documents: List[Any], **kwargs: Any) -> RerankResponse:
        return await self._run("rerank", model, {"query": query, "documents": documents}, kwargs)

    async def transcription(self, model: str, file: Any, **kwargs: Any) -> Transcription:
        kwargs["_files"] = {"file": _file_part(file)}
        return await self._run("transcription", model, {}, kwargs)

    async def image_generation(self, model: str, prompt: str, **kwargs: Any) -> ImageResponse:
        return await self._run("image_generation", model, {"prompt": prompt}, kwargs)

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


def providers(*, load: bool = True) -> List["ProviderListing"]:
    """Installed providers; ``load=False`` reads entry-point metadata only (imports nothing)."""
    return _registry().listing(load=load)
