"""``Client`` and ``AsyncClient``: thin drivers of the engine.

Everything a call decides is in ``_engine`` (one generator for sync and async); the
two classes here differ only in how they perform the engine's commands: blocking on
the httpx transport, or awaiting the aiohttp one. A client owns its transport and
closes it (``with`` / ``async with``, or ``close()`` / ``aclose()``); a client dropped
while still open warns with a ``ResourceWarning``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs

from ._engine import (
    Engine,
    OpenStream,
    Progress,
    RetryPolicy,
    Send,
    Sleep,
    estimate_prompt_tokens,
    prepared_request,
    run_call,
    run_routed,
)
from ._streaming import AsyncStream, Stream
from .errors import InvalidRequestError, ProviderError
from .provider import openai
from .provider._types import Call, FileUpload, WireRequest, WireResponse, env_value, redact_headers, redact_url
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
    from ._registry import ProviderHooks, ProviderListing
    from .routing import Router
    from .transport import AsyncHTTPTransport, SyncHTTPTransport

__all__ = ["Client", "AsyncClient", "OPENAI_PARAMS", "CALL_OPTIONS", "providers"]

log = logging.getLogger("modelport")

#: Per-call options: they configure the call and never go into the request body.
CALL_OPTIONS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "timeout",
        "num_retries",
        "max_retries",
        "extra_headers",
        "extra_body",
        "drop_params",
        "mock_response",
        "on_progress",
        "extra_query",
        "ssl_verify",
        "custom_llm_provider",
    }
)

#: OpenAI's own request parameters per operation; anything else is a provider extra.
OPENAI_PARAMS = openai.PARAMS

_RESULT_TYPES: Dict[str, Any] = {
    "chat": ChatCompletion,
    "text_completion": Completion,
    "embedding": EmbeddingResponse,
    "rerank": RerankResponse,
    "transcription": Transcription,
    "image_generation": ImageResponse,
}

Files = Optional[Dict[str, FileUpload]]


_REGISTRY: Any = None


def _registry() -> Any:
    # Imported on the first call, not by `import modelport`: pluggy and entry-point
    # scanning are only needed once a provider is actually used.
    global _REGISTRY
    if _REGISTRY is None:
        from ._registry import registry

        _REGISTRY = registry
    return _REGISTRY


def _split_model(model: Any, aliases: Optional[List[str]] = None) -> Tuple[str, str]:
    if not isinstance(model, str) or "/" not in model.strip("/"):
        installed = ", ".join(_registry().names()) or "none installed"
        known = f"; the config's model names: {', '.join(aliases) or 'none'}" if aliases is not None else ""
        raise InvalidRequestError(
            f"model {model!r} needs a provider prefix: '<provider>/<model id>',"
            f" e.g. 'openai/{model}' (providers: {installed}){known}",
            param="model",
        )
    provider, _, model_id = model.partition("/")
    return provider, model_id


def file_part(file: Any) -> FileUpload:
    """A multipart file from bytes, a path, a (name, bytes) pair or a binary file object."""
    content_type: Optional[str] = None
    if isinstance(file, tuple) and len(file) >= 2:
        name, content = file[0], file[1]
        content_type = file[2] if len(file) > 2 else None
    elif isinstance(file, (bytes, bytearray)):
        name, content = "audio", bytes(file)
    elif isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as handle:
            name, content = os.path.basename(str(file)), handle.read()
    elif hasattr(file, "read"):
        content = file.read()
        if isinstance(content, str):
            raise InvalidRequestError("file must be opened in binary mode ('rb')", param="file")
        name = os.path.basename(getattr(file, "name", "audio") or "audio")
    else:
        raise InvalidRequestError(
            f"file must be bytes, a path, a (name, bytes) pair or a binary file object, not {type(file).__name__}",
            param="file",
        )
    if content_type is None:
        import mimetypes

        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return str(name), bytes(content), content_type


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
    if "max_retries" in opts:  # the OpenAI SDK's name (LiteLLM takes both): never sent upstream
        given = opts.pop("max_retries")
        if opts.get("num_retries") is None:
            opts["num_retries"] = given
        elif given is not None and given != opts["num_retries"]:
            raise InvalidRequestError(
                f"num_retries={opts['num_retries']!r} and max_retries={given!r} disagree; pass one of them", param="max_retries"
            )
    retries = opts.get("num_retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise InvalidRequestError(f"num_retries must be a whole number >= 0, got {retries!r}", param="num_retries")
    for name in ("extra_headers", "extra_body", "extra_query"):
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


def _timeout(value: Any) -> Any:
    from .transport import Timeout

    return Timeout.of(value)


class _ClientBase:
    """Settings shared by Client and AsyncClient, and the call preparation that reads them."""

    def __init__(
        self,
        *,
        api_key: Optional[str] = None,
        api_base: Optional[str] = None,
        timeout: Any = 600.0,
        num_retries: int = 2,
        extra_headers: Optional[Mapping[str, str]] = None,
        retry_backoff: float = 0.5,
        max_retry_delay: float = 8.0,
        max_connections: int = 100,
        router: Optional["Router"] = None,
        providers: Optional[Mapping[str, "ProviderHooks"]] = None,
    ) -> None:
        if isinstance(num_retries, bool) or not isinstance(num_retries, int) or num_retries < 0:
            raise InvalidRequestError(f"num_retries must be a whole number >= 0, got {num_retries!r}", param="num_retries")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise InvalidRequestError(f"max_connections must be a whole number >= 1, got {max_connections!r}", param="max_connections")
        self._router = router
        self._providers: Dict[str, "ProviderHooks"] = dict(providers or {})
        self._api_key = api_key
        self.api_base = api_base
        self.timeout = _timeout(timeout)
        self.policy = RetryPolicy(num_retries, retry_backoff, max_retry_delay)
        self.extra_headers = dict(extra_headers or {})
        self.max_connections = max_connections

    def __repr__(self) -> str:
        key = repr("[REDACTED]") if self._api_key else "None"
        base = redact_url(self.api_base) if self.api_base else None
        return f"{type(self).__name__}(api_base={base!r}, api_key={key}, num_retries={self.policy.retries})"

    @classmethod
    def from_config(cls, source: Any, **defaults: Any) -> Any:
        """A client whose model names include the aliases of a config file (YAML or TOML).

        Aliases route to their deployments with cool-downs and fallbacks. Providers the
        file declares under ``providers:`` serve this client only.
        """
        from .routing import Router, declared_providers, load_config

        config = load_config(source)
        os.environ.update(config.environment_variables)  # LiteLLM's `environment_variables:`
        state = None
        if any(key.startswith("redis_") for key in config.router_settings):
            from .routing._redis import router_state_for  # shared by every process on that Redis

            state = router_state_for(config)
        return cls(router=Router(config, state=state), providers=declared_providers(config), **defaults)

    @property
    def router(self) -> Optional["Router"]:
        """The config router (``from_config``), or None."""
        return self._router

    @property
    def model_names(self) -> List[str]:
        """The config's model aliases (empty without a config)."""
        return self._router.model_names if self._router is not None else []

    def _split_model(self, model: Any) -> Tuple[str, str]:
        return _split_model(model, self._router.model_names if self._router is not None else None)

    def provider_hooks(self, provider: str) -> "ProviderHooks":
        """The hooks serving ``provider`` for this client (config-declared ones first)."""
        hooks = self._providers.get(provider)
        return hooks if hooks is not None else _registry().hooks(provider)

    def _prepare(
        self, operation: str, model: Any, body: Dict[str, Any], kwargs: Dict[str, Any], files: Files
    ) -> Tuple["ProviderHooks", Call, Dict[str, Any]]:
        prefix = kwargs.pop("custom_llm_provider", None)
        if prefix and not (isinstance(model, str) and model.startswith(f"{prefix}/")):
            model = f"{prefix}/{model}"  # LiteLLM's way of naming the provider beside a bare model
        provider, model_id = self._split_model(model)
        hooks = self.provider_hooks(provider)
        info = hooks.info
        if operation not in info.operations:
            raise InvalidRequestError(
                f"provider {info.name!r} does not support {operation}; it supports: {', '.join(sorted(info.operations))}",
                param="model",
            )
        opts: Dict[str, Any] = {}
        provider_options: Dict[str, Any] = {}
        for key in list(kwargs):
            if key in CALL_OPTIONS:
                opts[key] = kwargs.pop(key)
            elif key in info.options:
                provider_options[key] = kwargs.pop(key)
        if "api_version" in kwargs:  # LiteLLM passes it to every call; only some providers use it
            raise InvalidRequestError(
                f"provider {info.name!r} takes no api_version (it configures azure deployments)", param="api_version"
            )
        for key, value in kwargs.items():  # non-OpenAI keywords are provider body fields
            if value is not None:
                body[key] = _to_json(value)
        if info.params is not None:
            known = OPENAI_PARAMS.get(operation, frozenset())
            required = openai.REQUIRED_INPUTS.get(operation, ())
            unsupported = sorted(k for k in body if k in known and k not in info.params and k != "model" and k not in required)
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
            files=dict(files or {}),
            extra_query=dict(opts.get("extra_query") or {}),
        )
        return hooks, call, opts

    def _engine(
        self, operation: str, model: Any, body: Dict[str, Any], kwargs: Dict[str, Any], files: Files, pricing: Dict[str, Any]
    ) -> Engine:
        router = self._router
        if router is not None and model in router:

            def attempt(deployment: Any) -> Engine:
                pricing["deployment"] = deployment
                target, merged = router.call_arguments(deployment, kwargs)
                return self._engine_one(operation, target, merged, dict(body), files, pricing)

            tokens = estimate_prompt_tokens(body) if router.config.enable_pre_call_checks else None
            return run_routed(router, model, attempt, tokens)
        return self._engine_one(operation, model, kwargs, body, files, pricing)

    def _engine_one(
        self, operation: str, model: Any, kwargs: Dict[str, Any], body: Dict[str, Any], files: Files, pricing: Dict[str, Any]
    ) -> Engine:
        hooks, call, opts = self._prepare(operation, model, body, dict(kwargs), files)
        pricing["model"] = f"{call.provider}/{call.model}"
        pricing["options"] = call.options
        policy = self.policy
        if opts.get("num_retries") is not None:
            policy = policy.with_retries(opts["num_retries"])
        timeout = _timeout(opts["timeout"]) if "timeout" in opts else self.timeout
        verify = opts.get("ssl_verify")
        if verify is not None and not isinstance(verify, (bool, str)):
            raise InvalidRequestError("ssl_verify must be True, False or the path of a CA bundle", param="ssl_verify")
        return run_call(hooks, call, policy, timeout=timeout, mock=opts.get("mock_response"), verify=verify)

    def build_request(self, operation: str, model: str, **kwargs: Any) -> WireRequest:
        """The exact HTTP request a call would send, without sending it (``--dry-run``).

        ``operation`` is one of ``chat``, ``text_completion``, ``embedding``, ``rerank``,
        ``transcription``, ``image_generation``; ``kwargs`` are the call's arguments.
        """
        return self._built(operation, model, kwargs)[1]

    def describe_request(self, operation: str, model: str, **kwargs: Any) -> str:
        """``build_request`` as text with every secret the provider declares redacted."""
        import json

        hooks, request = self._built(operation, model, kwargs)
        info = hooks.info
        from .provider._types import redact_fields

        lines = [f"{request.method} {redact_url(request.url, info.secret_fields)}"]
        lines += [f"{k}: {v}" for k, v in redact_headers(request.headers, info.secret_headers).items()]
        lines.append("")
        if request.json is not None:
            lines.append(json.dumps(redact_fields(request.json, info.secret_fields), indent=2, ensure_ascii=False))
        elif request.data is not None or request.files:
            form = redact_fields(dict(request.data or {}), info.secret_fields)
            lines.append(json.dumps({"form": form, "files": sorted(request.files or {})}, indent=2))
        return "\n".join(lines)

    def _built(self, operation: str, model: str, kwargs: Dict[str, Any]) -> Tuple["ProviderHooks", WireRequest]:
        kwargs = dict(kwargs)
        router = self._router
        if router is not None and model in router:
            model, kwargs = router.call_arguments(router.deployments(model)[0], kwargs)
        body: Dict[str, Any] = {}
        if operation == "chat":
            body["messages"] = _check_messages(kwargs.pop("messages", None))
        files = {"file": file_part(kwargs.pop("file"))} if operation == "transcription" and "file" in kwargs else None
        kwargs.pop("on_progress", None)
        hooks, call, _ = self._prepare(operation, model, body, kwargs, files)
        return hooks, prepared_request(hooks, attrs.evolve(call, dry_run=True))

    def _finish(self, operation: str, result: Any, stream_class: Any, pricing: Dict[str, Any]) -> Any:
        if isinstance(result, OpenStream):
            return stream_class(result.handle, result.parser, result.call)
        typed = _RESULT_TYPES[operation].from_dict(result)
        # What the cost is computed from, when ``typed.cost`` is first read.
        typed._pricing = (pricing.get("model"), pricing.get("deployment"), pricing.get("options"))
        return typed


def _error_response(head: WireResponse, content: bytes, request: WireRequest) -> WireResponse:
    return WireResponse(head.status, head.headers, content, request)


class Client(_ClientBase):
    """A sync client holding pooled, kept-alive connections; safe to share between threads.

    ``transport`` replaces the network layer (any object with the ``SyncHTTPTransport``
    methods); ``httpx_transport`` (e.g. ``httpx.MockTransport``) is handed to the default one.
    """

    def __init__(self, *, transport: Optional["SyncHTTPTransport"] = None, httpx_transport: Any = None, **defaults: Any) -> None:
        super().__init__(**defaults)
        self._transport = transport
        self._httpx_transport = httpx_transport
        self._by_verify: Dict[Any, "SyncHTTPTransport"] = {}
        self._shared = False  # the module functions' client lives as long as the process

    @property
    def transport(self) -> "SyncHTTPTransport":
        """The network layer (built on first use); assign one with the same methods to
        replace it (a wrapper that records or traces, a test double)."""
        if self._transport is None:
            from .transport import SyncHTTPTransport

            self._transport = SyncHTTPTransport(max_connections=self.max_connections, httpx_transport=self._httpx_transport)
        return self._transport

    @transport.setter
    def transport(self, value: "SyncHTTPTransport") -> None:
        self._transport = value

    def _run(self, operation: str, model: Any, body: Dict[str, Any], kwargs: Dict[str, Any], files: Files = None) -> Any:
        on_progress = kwargs.pop("on_progress", None)
        pricing: Dict[str, Any] = {}
        result = self._drive(self._engine(operation, model, body, kwargs, files, pricing), on_progress)
        return self._finish(operation, result, Stream, pricing)

    def _drive(self, engine: Engine, on_progress: Optional[Callable[[str, float], None]]) -> Any:
        try:
            command = next(engine)
            while True:
                reply: Any = None
                try:
                    if type(command) is Send:
                        reply = self._send(command)
                    elif type(command) is Sleep:
                        time.sleep(command.seconds)
                    elif type(command) is Progress and on_progress is not None:
                        on_progress(command.status, command.elapsed)
                except ProviderError as exc:
                    command = engine.throw(exc)
                    continue
                command = engine.send(reply)
        except StopIteration as stop:
            return stop.value
        finally:
            engine.close()

    def _transport_for(self, verify: Any) -> "SyncHTTPTransport":
        if verify is None:
            return self.transport
        transport = self._by_verify.get(verify)
        if transport is None:
            from .transport import SyncHTTPTransport

            transport = self._by_verify[verify] = SyncHTTPTransport(max_connections=self.max_connections, verify=verify)
        return transport

    def _send(self, command: Send) -> Any:
        transport = self._transport_for(command.verify)
        if not command.stream:
            return transport.send(command.request, command.timeout)
        handle = transport.stream(command.request, command.timeout)
        if handle.head.status < 400:
            return handle
        try:
            content = handle.read()
        finally:
            handle.close()
        return _error_response(handle.head, content, command.request)

    def completion(self, model: str, messages: List[Any], **kwargs: Any) -> Any:
        """Chat completion: a ``ChatCompletion``, or a ``Stream`` of chunks with ``stream=True``."""
        return self._run("chat", model, {"messages": _check_messages(messages)}, kwargs)

    def text_completion(self, model: str, prompt: Any, **kwargs: Any) -> Any:
        """Legacy ``/completions``: a ``Completion``, or a ``Stream`` of them with ``stream=True``."""
        return self._run("text_completion", model, {"prompt": prompt}, kwargs)

    def embedding(self, model: str, input: Any, **kwargs: Any) -> EmbeddingResponse:
        return self._run("embedding", model, {"input": input}, kwargs)  # type: ignore[no-any-return]

    def rerank(self, model: str, query: str, documents: List[Any], **kwargs: Any) -> RerankResponse:
        return self._run("rerank", model, {"query": query, "documents": documents}, kwargs)  # type: ignore[no-any-return]

    def transcription(self, model: str, file: Any, **kwargs: Any) -> Transcription:
        """Audio transcription: ``file`` is bytes, a path, a (name, bytes) pair or a binary file."""
        return self._run("transcription", model, {}, kwargs, {"file": file_part(file)})  # type: ignore[no-any-return]

    def image_generation(self, model: str, prompt: str, **kwargs: Any) -> ImageResponse:
        return self._run("image_generation", model, {"prompt": prompt}, kwargs)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for extra in self._by_verify.values():
            extra.close()
        self._by_verify.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_transport", None) is not None and not getattr(self, "_shared", True):
            warnings.warn(f"{self!r} was not closed; use `with Client() as client:` or call close()", ResourceWarning, stacklevel=2)


class AsyncClient(_ClientBase):
    """An async client on aiohttp; one connection pool per event loop."""

    def __init__(self, *, transport: Optional["AsyncHTTPTransport"] = None, **defaults: Any) -> None:
        super().__init__(**defaults)
        self._transport = transport
        self._by_verify: Dict[Any, "AsyncHTTPTransport"] = {}

    @property
    def transport(self) -> "AsyncHTTPTransport":
        """The network layer (built on first use); assignable, as on ``Client``."""
        if self._transport is None:
            from .transport import AsyncHTTPTransport

            self._transport = AsyncHTTPTransport(max_connections=self.max_connections)
        return self._transport

    @transport.setter
    def transport(self, value: "AsyncHTTPTransport") -> None:
        self._transport = value

    async def _run(self, operation: str, model: Any, body: Dict[str, Any], kwargs: Dict[str, Any], files: Files = None) -> Any:
        on_progress = kwargs.pop("on_progress", None)
        pricing: Dict[str, Any] = {}
        result = await self._drive(self._engine(operation, model, body, kwargs, files, pricing), on_progress)
        return self._finish(operation, result, AsyncStream, pricing)

    async def _drive(self, engine: Engine, on_progress: Optional[Callable[[str, float], None]]) -> Any:
        import asyncio

        try:
            command = next(engine)
            while True:
                reply: Any = None
                try:
                    if type(command) is Send:
                        reply = await self._send(command)
                    elif type(command) is Sleep:
                        await asyncio.sleep(command.seconds)
                    elif type(command) is Progress and on_progress is not None:
                        on_progress(command.status, command.elapsed)
                except ProviderError as exc:
                    command = engine.throw(exc)
                    continue
                command = engine.send(reply)
        except StopIteration as stop:
            return stop.value
        finally:
            engine.close()

    def _transport_for(self, verify: Any) -> "AsyncHTTPTransport":
        if verify is None:
            return self.transport
        transport = self._by_verify.get(verify)
        if transport is None:
            from .transport import AsyncHTTPTransport

            transport = self._by_verify[verify] = AsyncHTTPTransport(max_connections=self.max_connections, verify=verify)
        return transport

    async def _send(self, command: Send) -> Any:
        transport = self._transport_for(command.verify)
        if not command.stream:
            return await transport.send(command.request, command.timeout)
        handle = await transport.stream(command.request, command.timeout)
        if handle.head.status < 400:
            return handle
        try:
            content = await handle.read()
        finally:
            await handle.aclose()
        return _error_response(handle.head, content, command.request)

    async def completion(self, model: str, messages: List[Any], **kwargs: Any) -> Any:
        return await self._run("chat", model, {"messages": _check_messages(messages)}, kwargs)

    async def text_completion(self, model: str, prompt: Any, **kwargs: Any) -> Any:
        return await self._run("text_completion", model, {"prompt": prompt}, kwargs)

    async def embedding(self, model: str, input: Any, **kwargs: Any) -> EmbeddingResponse:
        return await self._run("embedding", model, {"input": input}, kwargs)  # type: ignore[no-any-return]

    async def rerank(self, model: str, query: str, documents: List[Any], **kwargs: Any) -> RerankResponse:
        return await self._run("rerank", model, {"query": query, "documents": documents}, kwargs)  # type: ignore[no-any-return]

    async def transcription(self, model: str, file: Any, **kwargs: Any) -> Transcription:
        return await self._run("transcription", model, {}, kwargs, {"file": file_part(file)})  # type: ignore[no-any-return]

    async def image_generation(self, model: str, prompt: str, **kwargs: Any) -> ImageResponse:
        return await self._run("image_generation", model, {"prompt": prompt}, kwargs)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close this client's connections (on the running event loop)."""
        if self._transport is not None:
            await self._transport.aclose()
        for extra in self._by_verify.values():
            await extra.aclose()

    #: The v1 name of ``aclose``.
    close = aclose

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


def providers(*, load: bool = True) -> List["ProviderListing"]:
    """Installed providers; ``load=False`` reads entry-point metadata only (imports nothing)."""
    return _registry().listing(load=load)  # type: ignore[no-any-return]

