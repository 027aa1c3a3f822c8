"""The OpenAI-compatible gateway (``modelport serve``, extra ``modelport[server]``).

A Starlette app over an ``AsyncClient`` built from a config file: the official OpenAI
SDK pointed at it works unchanged. Requests name config aliases as their ``model``;
``Authorization: Bearer`` is checked against ``general_settings.master_key``; errors
come back in OpenAI's ``{"error": {...}}`` shape with the upstream's status.

Callers cannot steer the server's own credentials: call options (``api_key``,
``api_base``, ``extra_headers``, ...) and provider options (``region``, ...) in a
request body are ignored and reported in the ``x-modelport-ignored-params`` header.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from typing import Any, AsyncIterator, Dict, Iterable, List, Optional, Set, Tuple

from ..client import CALL_OPTIONS, AsyncClient
from ..errors import (
    APIConnectionError,
    APITimeoutError,
    InvalidRequestError,
    MalformedResponseError,
    ModelportError,
    ProviderError,
    StreamInterruptedError,
)
from ..transport import encode_json

__all__ = ["create_app", "app_from_config", "serve", "error_body"]

log = logging.getLogger("modelport.server")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _status_of(error: Exception) -> int:
    if isinstance(error, InvalidRequestError):
        return 400
    if isinstance(error, ProviderError):
        if isinstance(error, APITimeoutError) and error.status is None:
            return 504
        if isinstance(error, (APIConnectionError, StreamInterruptedError, MalformedResponseError)) and error.status in (None, 200):
            return 502
        return error.status or 500
    return 500


def error_body(error: Exception) -> Tuple[int, Dict[str, Any], Dict[str, str]]:
    """(status, OpenAI error JSON, headers) for any exception."""
    status = _status_of(error)
    message = getattr(error, "message", None) or str(error)
    inner = {
        "message": message,
        "type": _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
        "param": getattr(error, "param", None),
        "code": getattr(error, "code", None) if isinstance(error, ProviderError) else type(error).__name__,
    }
    headers: Dict[str, str] = {}
    if isinstance(error, ProviderError):
        if error.request_id:
            inner["request_id"] = error.request_id
        for name in ("retry-after", "retry-after-ms"):
            if name in error.headers:
                headers[name] = error.headers[name]
    return status, {"error": inner}, headers


def create_app(client: AsyncClient, *, master_key: Optional[str] = None, allow_direct_models: bool = False) -> Any:
    """The ASGI app. ``allow_direct_models`` also accepts ``provider/model`` strings."""
    from starlette.applications import Starlette
    from starlette.datastructures import UploadFile
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    def json_response(payload: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> Response:
        return Response(encode_json(payload), status_code=status, media_type="application/json", headers=headers)

    def failure(error: Exception) -> Response:
        status, payload, headers = error_body(error)
        if status >= 500:
            log.warning("%s -> %d: %s", type(error).__name__, status, payload["error"]["message"])
        return json_response(payload, status, headers)

    def authorised(request: Request) -> bool:
        if not master_key:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), master_key.encode())

    def provider_options(model: str) -> Iterable[str]:
        router = client.router
        targets = [d.model for d in router.deployments(model)] if router is not None and model in router else [model]
        names: Set[str] = set()
        for target in targets:
            try:
                names.update(client.provider_hooks(target.split("/", 1)[0]).info.options)
            except ModelportError:
                continue
        return names

    async def read_body(request: Request) -> Dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            form = await request.form()
            body: Dict[str, Any] = {}
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    body[key] = (value.filename or key, await value.read(), value.content_type or "application/octet-stream")
                elif key.endswith("[]"):  # OpenAI's repeated array fields, e.g. timestamp_granularities[]
                    body.setdefault(key[:-2], []).append(value)
                else:
                    body[key] = value
            return body
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidRequestError("the request body must be a JSON object")
        return body

    def prepare(body: Dict[str, Any], required: Tuple[str, ...]) -> Tuple[str, Dict[str, Any], List[str]]:
        model = body.pop("model", None)
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("'model' is required", param="model")
        known = client.model_names
        if model not in known and not (allow_direct_models and "/" in model):
            raise _ModelNotFound(model, known)
        for name in required:
            if name not in body:
                raise InvalidRequestError(f"'{name}' is required", param=name)
        blocked = (CALL_OPTIONS | set(provider_options(model))) & set(body)
        for name in blocked:
            del body[name]
        return model, body, sorted(blocked)

    def answer(payload: Any, ignored: List[str]) -> Response:
        headers = {"x-modelport-ignored-params": ",".join(ignored)} if ignored else None
        return json_response(payload, headers=headers)

    def endpoint(required: Tuple[str, ...], call: Any) -> Any:
        async def handle(request: Request) -> Response:
            if not authorised(request):
                return json_response(
                    {"error": {"message": "invalid or missing API key (Authorization: Bearer <master key>)",
                               "type": "authentication_error", "param": None, "code": "invalid_api_key"}},
                    401,
                )  # fmt: skip
            try:
                model, body, ignored = prepare(await read_body(request), required)
                response: Response = await call(model, body, ignored)
                return response
            except _ModelNotFound as missing:
                return json_response(missing.payload(), 404)
            except Exception as error:  # every failure becomes an OpenAI-shaped error
                if not isinstance(error, ModelportError):
                    log.exception("gateway failure")
                return failure(error)

        return handle

    def forward(method: str, *positional: str) -> Any:
        """A handler passing ``positional`` body fields, then the rest as keywords, to ``client.<method>``."""

        async def call(model: str, body: Dict[str, Any], ignored: List[str]) -> Response:
            arguments = [body.pop(name) for name in positional]
            result = await getattr(client, method)(model, *arguments, **body)
            if body.get("stream"):
                return stream_response(result, ignored)
            return answer(result.to_dict(), ignored)

        return call

    chat = forward("completion", "messages")
    text_completion = forward("text_completion", "prompt")
    embedding = forward("embedding", "input")
    rerank = forward("rerank", "query", "documents")
    images = forward("image_generation", "prompt")

    async def transcription(model: str, body: Dict[str, Any], ignored: List[str]) -> Response:
        file = body.pop("file")
        if not isinstance(file, tuple):
            raise InvalidRequestError("'file' must be an uploaded file (multipart/form-data)", param="file")
        for key in ("temperature",):
            if key in body:
                body[key] = float(body[key])
        result = await client.transcription(model, file, **body)
        if body.get("response_format") in ("text", "srt", "vtt"):
            return Response(result.text, media_type="text/plain")
        return answer(result.to_dict(), ignored)

    def stream_response(stream: Any, ignored: List[str]) -> Response:
        async def events() -> AsyncIterator[bytes]:
            try:
                async for chunk in stream:
                    yield b"data: " + encode_json(chunk.to_dict()) + b"\n\n"
            except ModelportError as error:
                yield b"data: " + encode_json(error_body(error)[1]) + b"\n\n"
                return
            finally:
                await stream.close()
            yield b"data: [DONE]\n\n"

        headers = {"cache-control": "no-cache"}
        if ignored:
            headers["x-modelport-ignored-params"] = ",".join(ignored)
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def models(request: Request) -> Response:
        if not authorised(request):
            return json_response({"error": {"message": "invalid or missing API key", "type": "authentication_error", "param": None, "code": "invalid_api_key"}}, 401)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "modelport"} for name in client.model_names]
        return json_response({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        return json_response({"status": "ok", "models": len(client.model_names)})

    routes = []
    for path, required, call in (
        ("/chat/completions", ("messages",), chat),
        ("/completions", ("prompt",), text_completion),
        ("/embeddings", ("input",), embedding),
        ("/rerank", ("query", "documents"), rerank),
        ("/audio/transcriptions", ("file",), transcription),
        ("/images/generations", ("prompt",), images),
    ):
        handler = endpoint(required, call)
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

    return Starlette(routes=routes, lifespan=lifespan)


class _ModelNotFound(Exception):
    def __init__(self, model: str, known: List[str]) -> None:
        super().__init__(model)
        self.model = model
        self.known = known

    def payload(self) -> Dict[str, Any]:
        return {
            "error": {
                "message": f"model {self.model!r} is not served here; models: {', '.join(self.known) or 'none'}",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        }


def app_from_config(config_path: str, **client_options: Any) -> Any:
    """The app for a config file: its aliases, its master key, its declared providers."""
    client = AsyncClient.from_config(config_path, **client_options)
    router = client.router
    assert router is not None  # from_config always builds one
    master_key = router.config.resolved_master_key()
    if not master_key:
        log.warning("no general_settings.master_key: the gateway accepts every request")
    return create_app(client, master_key=master_key)


def serve(config_path: str, host: str = "127.0.0.1", port: int = 4000) -> None:
    """Run the gateway with uvicorn until interrupted."""
    import uvicorn

    app = app_from_config(config_path)
    uvicorn.run(app, host=host, port=port, log_level="info")

