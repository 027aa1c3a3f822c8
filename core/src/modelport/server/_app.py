"""The gateway app: one ``Gateway`` object holding the client, the settings and the
request pipeline (authenticate, read the body within limits, check it, run the
operation, answer or stream), which feature modules (other API shapes, admin routes,
metrics) reuse through ``Gateway.feature_routes``.

The policy seams: ``Gateway.auth`` decides who may call (the master key by default;
virtual keys plug in there), ``Gateway.observers`` see every call's outcome (metrics,
spend), both without touching the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
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
    Optional,
    Protocol,
    Set,
    Tuple,
)

import attrs

from ..client import CALL_OPTIONS, AsyncClient
from ..errors import InvalidRequestError, ModelportError
from ..transport import encode_json
from ._edge import (
    BodyTooLarge,
    check_param_types,
    client_error,
    error_json,
    limited_receive,
    parse_json_body,
    request_id_for,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["Gateway", "GatewaySettings", "Identity", "RateLimit", "Auth", "Guard", "CallRecord", "ModelNotServed", "OPERATIONS_BY_PATH"]

log = logging.getLogger("modelport.server")

_MB = 1024 * 1024
REQUIRED = {
    "chat": ("messages",),
    "text_completion": ("prompt",),
    "embedding": ("input",),
    "rerank": ("query", "documents"),
    "transcription": ("file",),
    "image_generation": ("prompt",),
}
STREAMING_OPERATIONS = frozenset({"chat", "text_completion"})
#: Call options a key may be allowed to set from a request body.
_CLIENT_OPTIONS = frozenset({"api_base", "base_url", "api_key", "extra_headers"})
_MULTIPART_NUMBERS = {"temperature": float}
#: OpenAI paths (also served without ``/v1``) and the operation behind each.
OPERATIONS_BY_PATH = (
    ("/chat/completions", "chat"),
    ("/completions", "text_completion"),
    ("/embeddings", "embedding"),
    ("/rerank", "rerank"),
    ("/audio/transcriptions", "transcription"),
    ("/images/generations", "image_generation"),
)


@attrs.frozen
class GatewaySettings:
    """Limits and switches of one gateway (``general_settings`` in the config, or CLI flags)."""

    #: JSON bodies above this are answered 413 before they are read whole (LiteLLM's key).
    max_request_size_mb: float = 16.0
    #: Multipart bodies (audio uploads) above this are answered 413.
    max_upload_size_mb: float = 32.0
    #: Upstream connections the gateway keeps open at most (its pool size).
    max_connections: int = 1000
    #: Origins a browser may call the gateway from (CORS); empty: no CORS headers.
    cors_allow_origins: Tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: Seconds in-flight requests (streams included) may take to finish after a shutdown signal.
    graceful_shutdown_seconds: float = 30.0


@attrs.frozen
class RateLimit:
    """Limits of one scope (``key:<hash>``, ``user:<id>``, ``team:<id>``); None: no limit."""

    scope: str
    rpm: Optional[int] = None
    tpm: Optional[int] = None
    max_parallel_requests: Optional[int] = None


@attrs.frozen
class Identity:
    """Who is calling: the master key, or a virtual key with what it may do."""

    is_master: bool = False
    key_hash: Optional[str] = None
    key_alias: Optional[str] = None
    user_id: Optional[str] = None
    team_id: Optional[str] = None
    #: Model names this caller may use (None: all).
    models: Optional[Tuple[str, ...]] = None
    #: Rate limits that apply to this caller (its key's, user's and team's).
    rate_limits: Tuple[RateLimit, ...] = ()
    #: The key may set call options (api_base, api_key, extra_headers) in request bodies.
    allow_client_options: bool = False
    metadata: Dict[str, Any] = attrs.field(factory=dict)


class Guard(Protocol):
    """Admits a call before it runs (rate limits, budgets): raise a ``ProviderError``
    (``RateLimitError`` with ``retry_after``, ...) to refuse it; the returned callable,
    if any, runs when the call is over (to release what ``admit`` took)."""

    async def admit(self, identity: Identity, operation: str, model: str, body: Dict[str, Any]) -> Optional[Callable[["CallRecord"], Awaitable[None]]]: ...


class Auth(Protocol):
    """Decides who a request comes from; None means: refuse it (401)."""

    async def identify(self, request: "Request") -> Optional[Identity]: ...


class MasterKeyAuth:
    """Every request carries the master key (``Authorization: Bearer`` or ``x-api-key``);
    without a master key the gateway is open."""

    def __init__(self, master_key: Optional[str]) -> None:
        self._key = master_key.encode() if master_key else None

    async def identify(self, request: "Request") -> Optional[Identity]:
        if self._key is None:
            return Identity(is_master=True)
        token = bearer_token(request)
        if token is not None and hmac.compare_digest(token.encode(), self._key):
            return Identity(is_master=True)
        return None


def bearer_token(request: "Request") -> Optional[str]:
    """The key a request presents: ``Authorization: Bearer <key>`` or ``x-api-key: <key>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


@attrs.frozen
class CallRecord:
    """What observers learn about one call through the gateway."""

    request_id: str
    identity: Identity
    operation: str
    model: str
    status: int
    seconds: float
    usage: Optional[Dict[str, Any]] = None
    upstream_model: Optional[str] = None
    error: Optional[BaseException] = None
    stream: bool = False
    #: A guard refused the call before it ran (rate limit, budget): nothing was sent upstream.
    refused: bool = False
    #: Streams: seconds from the call's start to its first chunk.
    first_token_seconds: Optional[float] = None
    #: The typed result of a non-streaming call (its ``cost`` is computed on first read).
    result: Any = attrs.field(default=None, repr=False, eq=False)

    @property
    def cost(self) -> Optional[float]:
        """What the call cost (None: unknown, or a stream)."""
        cost = getattr(self.result, "cost", None)
        return cost if isinstance(cost, float) else None


class Observer(Protocol):
    def record(self, record: CallRecord) -> None: ...


class ModelNotServed(Exception):
    def __init__(self, model: str, known: List[str]) -> None:
        super().__init__(model)
        self.model = model
        self.known = known


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _until_disconnected(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(receive: Any, work: Awaitable[Any]) -> Any:
    """``work``'s result, or ``ClientGone`` (with ``work`` cancelled, which frees its
    upstream connection) when the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone()


class Gateway:
    """One gateway: its client, settings, auth, observers and routes."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        master_key: Optional[str] = None,
        allow_direct_models: bool = False,
        settings: Optional[GatewaySettings] = None,
        auth: Optional[Auth] = None,
    ) -> None:
        self.client = client
        #: The master key (None: an open gateway); admin features check it.
        self.master_key = master_key
        self.settings = settings or GatewaySettings()
        self.allow_direct_models = allow_direct_models
        self.auth: Auth = auth or MasterKeyAuth(master_key)
        self.observers: List[Observer] = []
        self.guards: List[Guard] = []
        self.on_startup: List[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: List[Callable[[], Awaitable[None]]] = []
        self._json_limit = int(self.settings.max_request_size_mb * _MB)
        self._upload_limit = int(self.settings.max_upload_size_mb * _MB)
        router = client.router
        self._retries = router.config.num_retries if router is not None and router.config.num_retries is not None else client.policy.retries

    # -- answers ----------------------------------------------------------------------------

    @staticmethod
    def json_response(payload: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> "Response":
        from starlette.responses import Response

        return Response(encode_json(payload), status_code=status, media_type="application/json", headers=headers)

    def failure(self, error: BaseException, request_id: str) -> "Response":
        """Any exception as an OpenAI-shaped error safe for clients."""
        if isinstance(error, ModelNotServed):
            message = f"model {error.model!r} is not served here; models: {', '.join(error.known) or 'none'}"
            return self.json_response(error_json(message, 404, "model_not_found", "model"), 404, {"x-request-id": request_id})
        status, payload, headers = client_error(error, request_id, retried=self._retries > 0)
        return self.json_response(payload, status, headers)

    def unauthorised(self, request_id: str) -> "Response":
        payload = error_json("invalid or missing API key (Authorization: Bearer <key>)", 401, "invalid_api_key")
        return self.json_response(payload, 401, {"x-request-id": request_id})

    # -- reading requests -------------------------------------------------------------------

    async def read_body(self, request: "Request") -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """(fields, uploaded files) of a JSON or multipart body, within the limits."""
        from starlette.datastructures import UploadFile
        from starlette.exceptions import HTTPException
        from starlette.requests import Request

        content_type = request.headers.get("content-type", "")
        multipart = content_type.startswith("multipart/form-data")
        limit = self._upload_limit if multipart else self._json_limit
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit)
        bounded = Request(request.scope, limited_receive(request.receive, limit))
        if not multipart:
            return parse_json_body(await bounded.body()), {}
        try:
            form = await bounded.form(max_files=8, max_fields=256, max_part_size=_MB)
        except BodyTooLarge:
            raise
        except Exception as exc:  # python-multipart / starlette parse errors
            detail = exc.detail if isinstance(exc, HTTPException) else "it could not be parsed"
            raise InvalidRequestError(f"the multipart body is malformed: {detail}") from None
        fields: Dict[str, Any] = {}
        files: Dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[key] = (value.filename or key, await value.read(), value.content_type or "application/octet-stream")
            elif key.endswith("[]"):  # OpenAI's repeated array fields, e.g. timestamp_granularities[]
                fields.setdefault(key[:-2], []).append(value)
            elif key in _MULTIPART_NUMBERS:
                try:
                    fields[key] = _MULTIPART_NUMBERS[key](value)
                except ValueError:
                    raise InvalidRequestError(f"'{key}' must be a number, got {value[:40]!r}", param=key) from None
            elif key == "stream":
                raise InvalidRequestError("streaming is not offered for this endpoint", param="stream")
            else:
                fields[key] = value
        return fields, files

    def _provider_options(self, model: str) -> Iterable[str]:
        client, router = self.client, self.client.router
        targets = [d.model for d in router.deployments(model)] if router is not None and model in router else [model]
        names: Set[str] = set()
        for target in targets:
            try:
                names.update(client.provider_hooks(target.split("/", 1)[0]).info.options)
            except ModelportError:
                continue
        return names

    def serves(self, model: str) -> bool:
        router = self.client.router
        return (router is not None and model in router) or (self.allow_direct_models and "/" in model)

    def prepare(self, operation: str, body: Dict[str, Any], identity: Identity) -> Tuple[str, List[str], Dict[str, Any]]:
        """Check ``body`` for ``operation``: the model it names, the call options it held
        that are ignored, and those the caller's key may set (taken out of the body)."""
        model = body.pop("model", None)
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("'model' is required", param="model")
        if not self.serves(model):
            raise ModelNotServed(model, self.client.model_names)
        if identity.models is not None and model not in identity.models:
            from ..errors import PermissionDeniedError

            raise PermissionDeniedError(f"this key may not use model {model!r}; it may use: {', '.join(identity.models) or 'none'}", status=403, code="model_not_allowed")
        check_param_types(body)
        if body.get("stream") and operation not in STREAMING_OPERATIONS:
            raise InvalidRequestError("streaming is not offered for this endpoint; leave 'stream' out", param="stream")
        blocked = (CALL_OPTIONS | set(self._provider_options(model))) & set(body)
        options: Dict[str, Any] = {}
        if identity.allow_client_options:  # such a key's own options become call options
            options = {name: body.pop(name) for name in blocked & _CLIENT_OPTIONS}
            blocked -= set(options)
        for name in blocked:
            del body[name]
        return model, sorted(blocked), options

    # -- calling ----------------------------------------------------------------------------

    def observe(self, record: CallRecord) -> None:
        for observer in self.observers:
            try:
                observer.record(record)
            except Exception:  # an observer must never break a call
                log.exception("observer %r failed", observer)

    async def call(
        self,
        request: "Request",
        identity: Identity,
        operation: str,
        model: str,
        body: Dict[str, Any],
        upload: Any = None,
        *,
        request_id: str,
        options: Optional[Dict[str, Any]] = None,
        response_headers: Optional[Dict[str, str]] = None,
    ) -> Any:
        """Run one operation for a client: the typed result, or an open stream (then the
        call is observed when the stream ends). Cancels the upstream call when the client leaves."""
        started = time.monotonic()
        stream = bool(body.get("stream"))
        options = options or {}
        releases: List[Callable[[CallRecord], Awaitable[None]]] = []
        try:
            for guard in self.guards:
                release = await guard.admit(identity, operation, model, body)
                if release is not None:
                    releases.append(release)
                    if response_headers is not None:  # e.g. x-ratelimit-remaining-requests
                        response_headers.update(getattr(release, "headers", None) or {})
        except BaseException as refusal:  # give back what earlier guards took
            status = client_error(refusal, request_id)[0]
            record = CallRecord(request_id, identity, operation, model, status, 0.0, error=refusal, stream=stream, refused=True)
            await self.finish(record, releases)
            raise
        try:
            if stream:
                opened = await self.client._run(operation, model, body, dict(options), upload)
                record = CallRecord(request_id, identity, operation, model, 200, 0.0, stream=True)
                return _ObservedStream(opened, self, record, started, releases)
            result = await unless_disconnected(request.receive, self.client._run(operation, model, body, dict(options), upload))
        except BaseException as error:
            status = 499 if isinstance(error, ClientGone) else client_error(error, request_id)[0]
            await self.finish(CallRecord(request_id, identity, operation, model, status, time.monotonic() - started, error=error, stream=stream), releases)
            raise
        usage: Any = result.get("usage") if hasattr(result, "get") else None
        usage_dict = usage.to_dict() if usage is not None and hasattr(usage, "to_dict") else usage
        upstream = result.get("model") if hasattr(result, "get") else None
        record = CallRecord(request_id, identity, operation, model, 200, time.monotonic() - started, usage_dict, upstream, result=result)
        await self.finish(record, releases)
        return result

    async def finish(self, record: CallRecord, releases: List[Callable[[CallRecord], Awaitable[None]]]) -> None:
        """A call is over: give back what guards took, tell the observers."""
        for release in releases:
            try:
                await release(record)
            except Exception:
                log.exception("releasing a guard failed")
        self.observe(record)

    def stream_response(
        self, stream: Any, headers: Dict[str, str], request_id: str, alias: Optional[str] = None, hide_usage: bool = False
    ) -> "Response":
        """Server-sent events of ``stream``'s chunks (the ``model`` field set to ``alias``;
        ``hide_usage``: the usage-only chunk the gateway asked for is not passed on)."""
        from starlette.responses import StreamingResponse

        async def events() -> AsyncIterator[bytes]:
            try:
                async for chunk in stream:
                    if hide_usage and not chunk.choices and chunk.usage:
                        continue
                    payload = chunk.to_dict()
                    if alias is not None and "model" in payload:
                        payload["model"] = alias
                    yield b"data: " + encode_json(payload) + b"\n\n"
            except ModelportError as error:
                yield b"data: " + encode_json(client_error(error, request_id)[1]) + b"\n\n"
                return
            finally:
                await stream.aclose()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache", **headers})

    def endpoint(self, operation: str) -> Callable[["Request"], Awaitable["Response"]]:
        """The handler of one OpenAI endpoint."""
        from starlette.responses import Response

        required = REQUIRED[operation]

        async def handle(request: "Request") -> "Response":
            request_id = request_id_for(request.headers)
            try:
                identity = await self.auth.identify(request)
                if identity is None:
                    return self.unauthorised(request_id)
                body, files = await self.read_body(request)
                model, ignored, options = self.prepare(operation, body, identity)
                for name in required:
                    if name not in body and name not in files:
                        raise InvalidRequestError(f"'{name}' is required", param=name)
                if operation == "transcription" and "file" not in files:
                    raise InvalidRequestError("'file' must be an uploaded file (multipart/form-data)", param="file")
                headers = {"x-request-id": request_id}
                if ignored:
                    headers["x-modelport-ignored-params"] = ",".join(ignored)
                upload = {"file": files["file"]} if operation == "transcription" else None
                hide_usage = False
                if body.get("stream"):  # ask for usage (spend, metrics); hide it if the client did not
                    given = body.get("stream_options")
                    stream_options: Dict[str, Any] = given if isinstance(given, dict) else {}
                    if not stream_options.get("include_usage"):
                        body["stream_options"] = {**stream_options, "include_usage": True}
                        hide_usage = True
                result = await self.call(
                    request, identity, operation, model, body, upload, request_id=request_id, options=options, response_headers=headers
                )
                if isinstance(result, _ObservedStream):
                    return self.stream_response(result, headers, request_id, alias=model, hide_usage=hide_usage)
                if operation == "transcription" and body.get("response_format") in ("text", "srt", "vtt"):
                    return Response(result.text, media_type="text/plain", headers=headers)
                payload = result.to_dict()
                if "model" in payload and isinstance(payload["model"], str):
                    headers["x-modelport-upstream-model"] = payload["model"]
                    payload["model"] = model  # the name the client asked for, as LiteLLM's proxy answers
                return self.json_response(payload, headers=headers)
            except ClientGone:
                log.info("request %s: the client disconnected; its upstream call was cancelled", request_id)
                return Response(status_code=499)
            except Exception as error:  # every failure becomes an OpenAI-shaped error
                return self.failure(error, request_id)

        return handle

    # -- the app ----------------------------------------------------------------------------

    def routes(self) -> List[Any]:
        from starlette.routing import Route

        routes = []
        for path, operation in OPERATIONS_BY_PATH:
            handler = self.endpoint(operation)
            routes += [Route(f"/v1{path}", handler, methods=["POST"]), Route(path, handler, methods=["POST"])]
        routes += [
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/models", self._models, methods=["GET"]),
            Route("/health", self._health, methods=["GET"]),
        ]
        return routes

    async def _models(self, request: "Request") -> "Response":
        request_id = request_id_for(request.headers)
        try:
            identity = await self.auth.identify(request)
        except Exception as error:
            return self.failure(error, request_id)
        if identity is None:
            return self.unauthorised(request_id)
        names = [n for n in self.client.model_names if identity.models is None or n in identity.models]
        from ._monitoring import model_card

        data = [model_card(self, name) or {"id": name, "object": "model", "created": 0, "owned_by": "modelport"} for name in names]
        return self.json_response({"object": "list", "data": data}, headers={"x-request-id": request_id})

    async def _health(self, request: "Request") -> "Response":
        return self.json_response({"status": "ok", "models": len(self.client.model_names)})

    async def _http_error(self, request: "Request", exc: Exception) -> "Response":
        from starlette.exceptions import HTTPException

        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            payload = error_json(f"no route {request.url.path}; see /v1/models and the OpenAI API paths", 404, "unknown_route")
        elif status == 405:
            payload = error_json(f"{request.method} is not allowed on {request.url.path}", 405, "method_not_allowed")
        else:
            payload = error_json("the request could not be handled", status, "invalid_request")
        return self.json_response(payload, status, {"x-request-id": request_id_for(request.headers)})

    def app(self, extra_routes: Iterable[Any] = ()) -> Any:
        """The Starlette app: the OpenAI routes, then ``extra_routes`` (feature modules)."""
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            for start in self.on_startup:
                await start()
            try:
                yield
            finally:
                for stop in self.on_shutdown:
                    await stop()
                await self.client.aclose()

        middleware = []
        if self.settings.cors_allow_origins:
            from starlette.middleware import Middleware
            from starlette.middleware.cors import CORSMiddleware

            middleware.append(Middleware(
                CORSMiddleware,
                allow_origins=list(self.settings.cors_allow_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["authorization", "content-type", "x-api-key", "x-request-id", "anthropic-version", "openai-beta"],
                expose_headers=["x-request-id", "retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"],
            ))  # fmt: skip
        return Starlette(
            routes=[*self.routes(), *extra_routes],
            lifespan=lifespan,
            exception_handlers={HTTPException: self._http_error},
            middleware=middleware,
        )


class _ObservedStream:
    """An open stream that tells the gateway's observers how it went when it ends."""

    def __init__(self, stream: Any, gateway: Gateway, record: CallRecord, started: float, releases: List[Any]) -> None:
        self._stream = stream
        self._gateway = gateway
        self._record = record
        self._started = started
        self._releases = releases
        self._usage: Optional[Dict[str, Any]] = None
        self._upstream: Optional[str] = None
        self._error: Optional[BaseException] = None
        self._first: Optional[float] = None

    def __aiter__(self) -> "_ObservedStream":
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            raise
        except BaseException as error:
            self._error = error
            raise
        if self._first is None:
            self._first = time.monotonic() - self._started
        if chunk.usage:
            self._usage = chunk.usage.to_dict()
        if self._upstream is None and isinstance(chunk.model, str):
            self._upstream = chunk.model
        return chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            status = 200 if self._error is None else client_error(self._error, self._record.request_id)[0]
            record = attrs.evolve(self._record, status=status, seconds=time.monotonic() - self._started, usage=self._usage,
                                  upstream_model=self._upstream, error=self._error, first_token_seconds=self._first)  # fmt: skip
            await self._gateway.finish(record, self._releases)
