"""The OpenAI-compatible gateway (``modelport serve``, extra ``modelport[server]``).

A Starlette app over an ``AsyncClient`` built from a config file: the official OpenAI
SDK pointed at it works unchanged. Requests name config aliases as their ``model``;
``Authorization: Bearer`` is checked against ``general_settings.master_key``; errors
come back in OpenAI's ``{"error": {...}}`` shape with the upstream's status, an OpenAI
``code`` and an ``x-request-id`` (the client's own, echoed, or a new one).

Callers cannot steer the server's own credentials: call options (``api_key``,
``api_base``, ``extra_headers``, ...) and provider options (``region``, ...) in a
request body are ignored and reported in the ``x-modelport-ignored-params`` header.
Bodies are read within limits, parameter types are checked at the edge, and a client
that disconnects cancels its upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import Any, AsyncIterator, Awaitable, Dict, Iterable, List, Optional, Set, Tuple

import attrs

from ..client import CALL_OPTIONS, AsyncClient
from ..errors import ConfigError, InvalidRequestError, ModelportError
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

__all__ = ["GatewaySettings", "create_app", "app_from_config", "check_config", "serve", "error_body"]

log = logging.getLogger("modelport.server")

_MB = 1024 * 1024


@attrs.frozen
class GatewaySettings:
    """Limits and switches of one gateway (``general_settings`` in the config, or CLI flags)."""

    #: JSON bodies above this are answered 413 before they are read whole (LiteLLM's key).
    max_request_size_mb: float = 16.0
    #: Multipart bodies (audio uploads) above this are answered 413.
    max_upload_size_mb: float = 32.0
    #: Upstream connections the gateway keeps open at most (its pool size).
    max_connections: int = 1000


def error_body(error: BaseException, request_id: str = "") -> Tuple[int, Dict[str, Any], Dict[str, str]]:
    """(status, OpenAI error JSON, headers) for any exception, safe to send to a client."""
    return client_error(error, request_id or "req_unknown")


class _ModelNotFound(Exception):
    def __init__(self, model: str, known: List[str]) -> None:
        super().__init__(model)
        self.model = model
        self.known = known


class _ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _until_disconnected(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_disconnected(receive: Any, work: Awaitable[Any]) -> Any:
    """``work``'s result, or ``_ClientGone`` (with ``work`` cancelled, which frees its
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
    raise _ClientGone()


_REQUIRED = {
    "chat": ("messages",),
    "text_completion": ("prompt",),
    "embedding": ("input",),
    "rerank": ("query", "documents"),
    "transcription": ("file",),
    "image_generation": ("prompt",),
}
_STREAMS = frozenset({"chat", "text_completion"})
_MULTIPART_NUMBERS = {"temperature": float}


def create_app(
    client: AsyncClient,
    *,
    master_key: Optional[str] = None,
    allow_direct_models: bool = False,
    settings: Optional[GatewaySettings] = None,
) -> Any:
    """The ASGI app. ``allow_direct_models`` also accepts ``provider/model`` strings."""
    from starlette.applications import Starlette
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    settings = settings or GatewaySettings()
    json_limit = int(settings.max_request_size_mb * _MB)
    upload_limit = int(settings.max_upload_size_mb * _MB)
    router = client.router
    retries = router.config.num_retries if router is not None and router.config.num_retries is not None else client.policy.retries

    def json_response(payload: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> Response:
        return Response(encode_json(payload), status_code=status, media_type="application/json", headers=headers)

    def failure(error: BaseException, request_id: str) -> Response:
        status, payload, headers = client_error(error, request_id, retried=retries > 0)
        return json_response(payload, status, headers)

    def authorised(request: Request) -> bool:
        if not master_key:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), master_key.encode())

    def unauthorised(request_id: str) -> Response:
        payload = error_json("invalid or missing API key (Authorization: Bearer <master key>)", 401, "invalid_api_key")
        return json_response(payload, 401, {"x-request-id": request_id})

    def provider_options(model: str) -> Iterable[str]:
        targets = [d.model for d in router.deployments(model)] if router is not None and model in router else [model]
        names: Set[str] = set()
        for target in targets:
            try:
                names.update(client.provider_hooks(target.split("/", 1)[0]).info.options)
            except ModelportError:
                continue
        return names

    async def read_body(request: Request) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """(fields, uploaded files) of a JSON or multipart body, within the limits."""
        content_type = request.headers.get("content-type", "")
        multipart = content_type.startswith("multipart/form-data")
        limit = upload_limit if multipart else json_limit
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

    def prepare(operation: str, body: Dict[str, Any]) -> Tuple[str, List[str]]:
        model = body.pop("model", None)
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("'model' is required", param="model")
        known = client.model_names
        if model not in known and not (allow_direct_models and "/" in model):
            raise _ModelNotFound(model, known)
        check_param_types(body)
        if body.get("stream") and operation not in _STREAMS:
            raise InvalidRequestError("streaming is not offered for this endpoint; leave 'stream' out", param="stream")
        blocked = (CALL_OPTIONS | set(provider_options(model))) & set(body)
        for name in blocked:
            del body[name]
        return model, sorted(blocked)

    def endpoint(operation: str) -> Any:
        required = _REQUIRED[operation]

        async def handle(request: Request) -> Response:
            request_id = request_id_for(request.headers)
            if not authorised(request):
                return unauthorised(request_id)
            try:
                body, files = await read_body(request)
                model, ignored = prepare(operation, body)
                for name in required:
                    if name not in body and name not in files:
                        raise InvalidRequestError(f"'{name}' is required", param=name)
                if operation == "transcription" and "file" not in files:
                    raise InvalidRequestError("'file' must be an uploaded file (multipart/form-data)", param="file")
                headers = {"x-request-id": request_id}
                if ignored:
                    headers["x-modelport-ignored-params"] = ",".join(ignored)
                upload = {"file": files["file"]} if operation == "transcription" else None
                if body.get("stream"):
                    stream = await client._run(operation, model, body, {}, upload)
                    return stream_response(stream, headers, request_id)
                result = await _unless_disconnected(request.receive, client._run(operation, model, body, {}, upload))
                if operation == "transcription" and body.get("response_format") in ("text", "srt", "vtt"):
                    return Response(result.text, media_type="text/plain", headers=headers)
                return json_response(result.to_dict(), headers=headers)
            except _ModelNotFound as missing:
                message = f"model {missing.model!r} is not served here; models: {', '.join(missing.known) or 'none'}"
                return json_response(error_json(message, 404, "model_not_found", "model"), 404, {"x-request-id": request_id})
            except _ClientGone:
                log.info("request %s: the client disconnected; its upstream call was cancelled", request_id)
                return Response(status_code=499)
            except Exception as error:  # every failure becomes an OpenAI-shaped error
                return failure(error, request_id)

        return handle

    def stream_response(stream: Any, headers: Dict[str, str], request_id: str) -> Response:
        async def events() -> AsyncIterator[bytes]:
            try:
                async for chunk in stream:
                    yield b"data: " + encode_json(chunk.to_dict()) + b"\n\n"
            except ModelportError as error:
                yield b"data: " + encode_json(client_error(error, request_id)[1]) + b"\n\n"
                return
            finally:
                await stream.aclose()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache", **headers})

    async def models(request: Request) -> Response:
        request_id = request_id_for(request.headers)
        if not authorised(request):
            return unauthorised(request_id)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "modelport"} for name in client.model_names]
        return json_response({"object": "list", "data": data}, headers={"x-request-id": request_id})

    async def health(request: Request) -> Response:
        return json_response({"status": "ok", "models": len(client.model_names)})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            payload = error_json(f"no route {request.url.path}; see /v1/models and the OpenAI API paths", 404, "unknown_route")
        elif status == 405:
            payload = error_json(f"{request.method} is not allowed on {request.url.path}", 405, "method_not_allowed")
        else:
            payload = error_json("the request could not be handled", status, "invalid_request")
        return json_response(payload, status, {"x-request-id": request_id_for(request.headers)})

    routes = []
    for path, operation in (
        ("/chat/completions", "chat"),
        ("/completions", "text_completion"),
        ("/embeddings", "embedding"),
        ("/rerank", "rerank"),
        ("/audio/transcriptions", "transcription"),
        ("/images/generations", "image_generation"),
    ):
        handler = endpoint(operation)
        routes += [Route(f"/v1{path}", handler, methods=["POST"]), Route(path, handler, methods=["POST"])]
    routes += [
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


def check_config(client: AsyncClient) -> List[str]:
    """Every problem that would make a configured model fail on each request: unknown
    provider prefixes, unset ``os.environ/`` references, each named with its entry."""
    from ..routing import EnvRef

    router = client.router
    if router is None:
        return []
    problems = []
    for position, deployment in enumerate(router.config.deployments):
        where = f"model_list[{position}] ({deployment.model_name}: {deployment.model})"
        try:
            client.provider_hooks(deployment.model.split("/", 1)[0])
        except ModelportError as exc:
            problems.append(f"{where}: {exc}")
        for key, value in deployment.params.items():
            if isinstance(value, EnvRef) and not _env_is_set(value.name):
                problems.append(f"{where}: {key} reads the environment variable {value.name}, which is not set")
    master = router.config.master_key
    if isinstance(master, EnvRef) and not _env_is_set(master.name):
        problems.append(f"general_settings.master_key reads the environment variable {master.name}, which is not set")
    return problems


def _env_is_set(name: str) -> bool:
    import os

    return bool(os.environ.get(name))


def settings_from_config(general: Dict[str, Any], **overrides: Any) -> GatewaySettings:
    """Gateway settings from ``general_settings`` (LiteLLM's keys where it has them)."""
    values: Dict[str, Any] = {}
    for name in ("max_request_size_mb", "max_upload_size_mb", "max_connections"):
        if general.get(name) is not None:
            values[name] = general[name]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GatewaySettings(**values)
    except TypeError as exc:
        raise ConfigError(f"general_settings: {exc}") from None


def app_from_config(config_path: str, *, settings: Optional[GatewaySettings] = None, **client_options: Any) -> Any:
    """The app for a config file: its aliases, its master key, its declared providers."""
    from ..routing import load_config

    config = load_config(config_path)
    settings = settings or settings_from_config(config.general)
    client_options.setdefault("max_connections", settings.max_connections)
    client = AsyncClient.from_config(config, **client_options)
    master_key = config.resolved_master_key()
    if not master_key:
        log.warning("no general_settings.master_key: the gateway accepts every request")
    return create_app(client, master_key=master_key, settings=settings)


def serve(
    config_path: str,
    host: str = "127.0.0.1",
    port: int = 4000,
    *,
    log_level: str = "info",
    access_log: bool = True,
    json_logs: bool = False,
    limit_concurrency: int = 4096,
    timeout_keep_alive: int = 5,
) -> int:
    """Run the gateway with uvicorn until interrupted; the exit code.

    Refuses to start (exit 2) when the config names an unknown provider or an unset
    environment variable, listing every problem, or when the port is taken.
    """
    import socket
    import sys

    import uvicorn

    from ..routing import load_config

    config = load_config(config_path)
    settings = settings_from_config(config.general)
    client = AsyncClient.from_config(config, max_connections=settings.max_connections)
    problems = check_config(client)
    if problems:
        print(f"modelport: error: {config_path} cannot be served:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    _raise_open_file_limit()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        print(f"modelport: error: cannot listen on {host}:{port}: {exc.strerror or exc} (is another server using port {port}?)", file=sys.stderr)
        return 2
    _configure_logging(log_level, json_logs)
    master_key = config.resolved_master_key()
    if not master_key:
        log.warning("no general_settings.master_key: the gateway accepts every request")
    app = create_app(client, master_key=master_key, settings=settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=log_level,
            access_log=access_log,
            log_config=None,
            limit_concurrency=limit_concurrency,
            timeout_keep_alive=timeout_keep_alive,
        )
    )
    server.run(sockets=[sock])
    return 0


def _raise_open_file_limit() -> None:
    """Let the gateway hold as many connections as the hard limit allows."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _configure_logging(level: str, json_logs: bool) -> None:
    import json
    import sys
    import time

    handler = logging.StreamHandler(sys.stderr)
    if json_logs:

        class JSONFormatter(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                entry = {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "message": record.getMessage(),
                }
                if record.exc_info:
                    entry["exception"] = self.formatException(record.exc_info)
                return json.dumps(entry, ensure_ascii=False)

        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    for name in ("modelport", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


class _RedactingFilter(logging.Filter):
    """Credentials never reach the log: URL userinfo and key-like query parameters are
    masked in every record (the access log prints request lines verbatim)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ._logging import redact_text

        record.msg = redact_text(record.getMessage())
        record.args = None
        return True
