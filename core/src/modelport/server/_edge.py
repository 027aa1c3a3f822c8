"""The gateway's edge: reading request bodies within limits, checking parameter types,
and turning any failure into an OpenAI-shaped error that is safe to show a client.

Nothing a client sends can make the gateway answer 500 with a traceback: oversized,
malformed, deeply nested or mistyped input is a 4xx that names what to fix. Errors
shown to clients never carry upstream URLs, internal hosts, credentials or Python class
names; the full detail goes to the server log under the request's id.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Awaitable, Callable, Dict, Mapping, MutableMapping, Optional, Tuple

from ..errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigError,
    InvalidRequestError,
    MalformedResponseError,
    ModelportError,
    ProviderError,
    StreamInterruptedError,
    openai_code,
)

__all__ = [
    "BodyTooLarge",
    "limited_receive",
    "parse_json_body",
    "check_param_types",
    "client_error",
    "request_id_for",
]

log = logging.getLogger("modelport.server")

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class BodyTooLarge(Exception):
    """The request body is over the configured limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def limited_receive(receive: Receive, limit: int) -> Receive:
    """An ASGI ``receive`` that raises ``BodyTooLarge`` as soon as the body passes ``limit``
    bytes, so an oversized body (chunked ones included) is never buffered whole."""
    seen = 0

    async def wrapped() -> MutableMapping[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json_body(raw: bytes) -> Dict[str, Any]:
    """The body as a JSON object, or an ``InvalidRequestError`` saying what is wrong with it."""
    try:
        body = json.loads(raw or b"null")
    except RecursionError:
        raise InvalidRequestError("the request body is nested too deeply") from None
    except ValueError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(raw):
        try:  # escaped surrogates are valid JSON, but a lone one cannot be sent on as UTF-8
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError("the request body holds an unpaired UTF-16 surrogate (\\ud800-\\udfff)") from None
    return body


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_KINDS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (_integer, "an integer"),
    "number": (_number, "a number"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "list": (lambda v: isinstance(v, list), "an array"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "string|list": (lambda v: isinstance(v, (str, list)), "a string or an array"),
    "string|object": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
}

#: OpenAI's request parameters whose JSON type the gateway checks before anything else.
PARAM_TYPES: Dict[str, str] = {
    "stream": "bool", "n": "int", "temperature": "number", "top_p": "number",
    "max_tokens": "int", "max_completion_tokens": "int", "presence_penalty": "number",
    "frequency_penalty": "number", "seed": "int", "logprobs": "bool", "top_logprobs": "int",
    "messages": "list", "tools": "list", "tool_choice": "string|object", "response_format": "string|object",
    "stream_options": "object", "stop": "string|list", "user": "string", "parallel_tool_calls": "bool",
    "logit_bias": "object", "metadata": "object", "dimensions": "int", "encoding_format": "string",
    "input": "string|list", "query": "string", "documents": "list", "top_n": "int",
    "return_documents": "bool", "size": "string", "quality": "string", "style": "string",
    "language": "string", "best_of": "int", "echo": "bool", "suffix": "string",
}  # fmt: skip


def check_param_types(body: Mapping[str, Any]) -> None:
    """Raise ``InvalidRequestError`` naming the first known parameter of the wrong type."""
    for name, value in body.items():
        kind = PARAM_TYPES.get(name)
        if kind is None or value is None:
            continue
        accepts, wanted = _KINDS[kind]
        if not accepts(value):
            shown = json.dumps(value)[:40] if not isinstance(value, (bytes, tuple)) else type(value).__name__
            raise InvalidRequestError(f"'{name}' must be {wanted}, got {shown}", param=name)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_for(headers: Mapping[str, str]) -> str:
    """The client's ``x-request-id`` when it is a sane token, else a new one."""
    given = headers.get("x-request-id", "")
    if given and _REQUEST_ID.match(given):
        return given
    import uuid

    return f"req_{uuid.uuid4().hex}"


_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _status_of(error: BaseException) -> int:
    if isinstance(error, InvalidRequestError):
        return 400
    if isinstance(error, BodyTooLarge):
        return 413
    if isinstance(error, ProviderError):
        if isinstance(error, APITimeoutError) and error.status is None:
            return 504
        if isinstance(error, (APIConnectionError, StreamInterruptedError, MalformedResponseError)) and error.status in (None, 200):
            return 502
        return error.status or 500
    return 500


def error_code(error: BaseException, status: int) -> str:
    """OpenAI's ``code`` values where one fits; never a Python class name."""
    if isinstance(error, BodyTooLarge):
        return "request_too_large"
    if isinstance(error, ConfigError):
        return "server_configuration_error"  # the gateway's own config, not the client's request
    return openai_code(error, status)


def _message_of(error: BaseException, status: int) -> str:
    """What the client may read: the provider's own message, or a fixed sentence where the
    detail would show internals (hosts, URLs, library names)."""
    if isinstance(error, BodyTooLarge):
        return f"the request body is larger than this gateway accepts ({error.limit // (1024 * 1024)} MB)"
    if isinstance(error, InvalidRequestError):
        return error.args[0] if error.args else "invalid request"
    if isinstance(error, APITimeoutError) and error.status is None:
        return "the upstream provider did not answer in time"
    if isinstance(error, APIConnectionError) and error.status is None:
        return "the upstream provider could not be reached"
    if isinstance(error, StreamInterruptedError):
        return "the upstream provider's stream broke off before it was complete"
    if isinstance(error, MalformedResponseError):
        return "the upstream provider sent a response that could not be read"
    if isinstance(error, ProviderError):
        return _scrubbed(error.message)
    if isinstance(error, ConfigError):
        return "the gateway's configuration could not serve this request; the operator has the details in the log"
    return "internal error; the operator has the details in the log"


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>]+")


def _scrubbed(text: str) -> str:
    # An upstream's own error text may quote the URL it was called on.
    return _URL.sub("[upstream]", text)


def client_error(error: BaseException, request_id: str, *, retried: bool = False) -> Tuple[int, Dict[str, Any], Dict[str, str]]:
    """(status, OpenAI error JSON, headers) for ``error``, safe to send to a client.

    The full detail is logged under ``request_id`` (credentials are already redacted
    from modelport's own error texts). ``retried``: the gateway already retried this
    upstream call, so the client is told not to (``x-should-retry: false``).
    """
    status = _status_of(error)
    gateway_type = error.details.get("error_type") if isinstance(error, ProviderError) else None
    inner: Dict[str, Any] = {
        "message": _message_of(error, status),
        # A gateway-made error may name its own type (LiteLLM's "budget_exceeded").
        "type": gateway_type or _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
        "param": getattr(error, "param", None),
        "code": error_code(error, status),
    }
    headers = {"x-request-id": request_id}
    if isinstance(error, ProviderError):
        if error.request_id:
            inner["upstream_request_id"] = str(error.request_id)[:128]
        for name in ("retry-after", "retry-after-ms"):
            if name in error.headers:
                headers[name] = error.headers[name]
        if error.retry_after is not None and "retry-after" not in headers:
            headers["retry-after"] = str(max(0, round(error.retry_after)))
        if retried and error.retryable:
            headers["x-should-retry"] = "false"
    if status >= 500 or not isinstance(error, (ModelportError, BodyTooLarge)):
        detail = str(error) if isinstance(error, ModelportError) else repr(error)
        log.warning("request %s -> %d: %s", request_id, status, detail, exc_info=not isinstance(error, ModelportError))
    return status, {"error": inner}, headers


class AddressLimiter:
    """At most ``per_second`` requests per client address in each second (admin routes)."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._second = 0
        self._counts: Dict[str, int] = {}

    def allow(self, address: str) -> bool:
        import time

        second = int(time.monotonic())
        if second != self._second:
            self._second = second
            self._counts.clear()
        count = self._counts.get(address, 0) + 1
        self._counts[address] = count
        return count <= self.per_second


def error_json(message: str, status: int, code: str, param: Optional[str] = None) -> Dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "param": param, "code": code}}
