"""OpenAI's wire format as plain pure functions.

The core calls these as the ``trylast`` fallback of every hook, so a provider that
speaks OpenAI's API implements nothing; a provider that differs a little calls them
and adjusts the result::

    from modelport.provider import hookimpl, openai

    @hookimpl
    def transform_request(call, endpoint):
        request = openai.build_request(call, endpoint)
        return attrs.evolve(request, json={**request.json, "top_k": 20})

Nothing here keeps state or does I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, FrozenSet, List, Optional, Tuple, Type

from .. import errors
from ._types import (
    END_OF_STREAM,
    IGNORE_EVENT,
    Call,
    Endpoint,
    StreamEvent,
    WireRequest,
    WireResponse,
    env_value,
    loads_text,
)

__all__ = [
    "PATHS",
    "PARAMS",
    "REQUIRED_INPUTS",
    "resolve_endpoint",
    "build_request",
    "parse_response",
    "parse_chunk",
    "map_error",
    "encode_response",
    "encode_stream",
    "encode_error",
    "error_fields",
    "build_error",
    "stream_error",
    "CONTEXT_WINDOW_CODES",
    "CONTEXT_WINDOW_MESSAGES",
    "is_context_window_error",
    "malformed_response",
    "fold_system_messages",
    "form_fields",
    "loads_event",
    "dumps",
]

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

#: OpenAI's own request parameters per operation; anything else is a provider extra
#: (the client checks these against ``ProviderInfo.params``).
PARAMS: Dict[str, FrozenSet[str]] = {
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

#: The inputs an operation cannot do without: never refused by ``ProviderInfo.params``.
REQUIRED_INPUTS: Dict[str, Tuple[str, ...]] = {
    "chat": ("messages",),
    "text_completion": ("prompt",),
    "embedding": ("input",),
    "rerank": ("query", "documents"),
    "transcription": (),
    "image_generation": ("prompt",),
}


#: Path under the base URL for each operation.
PATHS = {
    "chat": "/chat/completions",
    "text_completion": "/completions",
    "embedding": "/embeddings",
    "rerank": "/rerank",
    "transcription": "/audio/transcriptions",
    "image_generation": "/images/generations",
}

_BAD_LINE_LIMIT = 200
_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def dumps(value: Any) -> str:
    """Compact JSON text, as OpenAI's SDK sends it."""
    return _DUMPS(value)


def loads_event(data: str) -> Any:
    """``json.loads`` for one stream event, minus its two whitespace regexes (the C
    scanner alone, about half the time; anything unusual goes through ``json.loads``)."""
    return loads_text(data)


# --- requests ----------------------------------------------------------------------------


def resolve_endpoint(call: Call) -> Endpoint:
    """Base URL from ``api_base``, the provider's env vars or its default; Bearer auth with a key."""
    info = call.info
    base = call.api_base or env_value(info.api_base_env) or info.api_base
    if not base:
        names = " or ".join(["api_base=...", *info.api_base_env]) if info.api_base_env else "api_base=..."
        raise errors.ConfigError(f"provider {call.provider!r} needs a base URL: set {names}")
    headers = {"Authorization": f"Bearer {call.api_key}"} if call.api_key else {}
    return Endpoint(base_url=base, path=PATHS.get(call.operation, "/" + call.operation), headers=headers)


def build_request(call: Call, endpoint: Endpoint, body: Optional[Dict[str, Any]] = None) -> WireRequest:
    """The POST of ``body`` (default: ``call.body``) to the endpoint: JSON, or multipart with files.

    Folds system messages into user turns when the provider (or the call's
    ``supports_system_message`` option) says it has no system role.
    """
    body = dict(call.body) if body is None else body
    if call.operation == "chat" and not call.options.get("supports_system_message", call.info.supports_system_message):
        body["messages"] = fold_system_messages(body["messages"])
    if call.files:
        return WireRequest("POST", endpoint.url, dict(endpoint.headers), data=form_fields(body), files=dict(call.files))
    return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=body)


def form_fields(body: Dict[str, Any]) -> Dict[str, Any]:
    """A JSON body as multipart form fields, the way OpenAI's API reads them: lists as
    repeated ``name[]`` fields (``timestamp_granularities[]``), other values as text."""
    form: Dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, list):
            form[f"{key}[]"] = [v if isinstance(v, str) else json.dumps(v) for v in value]
        elif isinstance(value, str):
            form[key] = value
        else:
            form[key] = json.dumps(value)
    return form


def fold_system_messages(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Fold system (and developer) messages into the next user message.

    For providers that reject the system role. Consecutive system messages are joined;
    list content keeps its parts (the system text goes first as a text part); a system
    message with no user message after it becomes a user message of its own, merged with
    a preceding user message so two user turns never follow one another.
    """
    out: List[Dict[str, Any]] = []
    pending: List[str] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = _content_text(message.get("content"))
            if text:
                pending.append(text)
            continue
        if pending and role == "user":
            message = {**message, "content": _prepend(message.get("content"), "\n\n".join(pending))}
            pending = []
        elif pending:
            out = _append_user(out, "\n\n".join(pending))
            pending = []
        out.append(message)
    if pending:
        out = _append_user(out, "\n\n".join(pending))
    return out


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _prepend(content: Any, text: str) -> Any:
    if isinstance(content, list):
        return [{"type": "text", "text": text}, *content]
    if content:
        return f"{text}\n\n{content}"
    return text


def _append_user(out: List[Dict[str, Any]], text: str) -> List[Dict[str, Any]]:
    if out and out[-1].get("role") == "user":
        last = out[-1]
        content = last.get("content")
        if isinstance(content, list):
            merged: Any = [*content, {"type": "text", "text": text}]
        else:
            merged = f"{content}\n\n{text}" if content else text
        return [*out[:-1], {**last, "content": merged}]
    return [*out, {"role": "user", "content": text}]


# --- responses ---------------------------------------------------------------------------


def malformed_response(call: Call, response: WireResponse, message: str) -> errors.MalformedResponseError:
    """The error for a 2xx response whose body is not what the operation returns."""
    return errors.MalformedResponseError(
        message, status=response.status, provider=call.provider, model=call.model, body=response.text
    )


def parse_response(call: Call, response: WireResponse) -> Dict[str, Any]:
    """A successful response's JSON object (plain text for text-format transcriptions)."""
    if call.operation == "transcription" and call.body.get("response_format") in ("text", "srt", "vtt"):
        return {"text": response.text}
    try:
        result = response.json()
    except ValueError:
        raise malformed_response(call, response, f"expected a JSON body, got: {response.text[:_BAD_LINE_LIMIT]!r}") from None
    if not isinstance(result, dict):
        raise malformed_response(call, response, f"expected a JSON object, got {type(result).__name__}")
    return result


def parse_chunk(call: Call, event: StreamEvent) -> Any:
    """One SSE event of an OpenAI stream -> its chunk, ``END_OF_STREAM`` at ``[DONE]``,
    ``IGNORE_EVENT`` for empty events; an error object in the stream is raised typed."""
    data = event.data
    if not data:
        return IGNORE_EVENT
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    if data[0] == "[" and data.strip() == "[DONE]":
        return END_OF_STREAM
    try:
        chunk = loads_event(data)
    except ValueError:
        raise errors.MalformedStreamError(
            f"stream event is not JSON: {data[:_BAD_LINE_LIMIT]!r}", provider=call.provider, model=call.model, body=data
        ) from None
    if type(chunk) is not dict:
        raise errors.MalformedStreamError(
            f"stream event is not a JSON object: {data[:_BAD_LINE_LIMIT]!r}",
            provider=call.provider,
            model=call.model,
            body=data,
        )
    if event.event == "error" or ("error" in chunk and "choices" not in chunk):
        raise stream_error(call, chunk)
    return chunk


def stream_error(call: Call, chunk: Dict[str, Any]) -> errors.ProviderError:
    """The typed error for an error object the upstream sent inside a stream.

    An integer ``code`` in 400-599 is the status (servers that send their status there);
    OpenAI's string codes for a prompt over the context window or a content filter, and
    the context-window messages of ``CONTEXT_WINDOW_MESSAGES``, make a 400 of the
    matching class.
    """
    inner = chunk.get("error")
    inner = inner if isinstance(inner, dict) else chunk
    code = inner.get("code")
    message = str(inner.get("message") or json.dumps(chunk)[:_BAD_LINE_LIMIT])
    if isinstance(code, int) and 400 <= code < 600:
        status = code
    elif is_context_window_error(400, code, message) or (isinstance(code, str) and code in _CONTENT_FILTER_CODES):
        status = 400
    else:
        status = 500
    cls = _refined_class(status, code, message) or errors.error_class_for_status(status)
    return cls(
        message,
        status=status,
        provider=call.provider,
        model=call.model,
        code=code,
        type=inner.get("type"),
        param=inner.get("param") if isinstance(inner.get("param"), str) else None,
        body=json.dumps(chunk),
    )


# --- errors ------------------------------------------------------------------------------


def error_fields(response: WireResponse, body: Any = None) -> Dict[str, Any]:
    """message, code, type, param and request_id from an error response.

    Reads OpenAI's ``{"error": {...}}``, ``{"error": "text"}``, flat objects with a
    top-level ``message`` and non-JSON bodies (an HTML 502 page becomes its visible
    text, truncated). ``body`` overrides the parsed JSON (a plugin whose envelope
    nests the error elsewhere passes the inner object).
    """
    if body is None:
        body = response.json_or_none()
    fields: Dict[str, Any] = {"message": None, "code": None, "type": None, "param": None, "request_id": None}
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, str):
            fields["message"] = inner
            inner = None
        source = inner if isinstance(inner, dict) else body
        for key in ("message", "code", "type", "param", "request_id"):
            if source.get(key) is not None:
                fields[key] = source[key]
        if fields["message"] is None and isinstance(body.get("detail"), str):
            fields["message"] = body["detail"]
        fields["request_id"] = fields["request_id"] or body.get("request_id")
        if fields["message"] is not None and not isinstance(fields["message"], str):
            fields["message"] = json.dumps(fields["message"])
    if not fields["message"]:
        text = _SPACES.sub(" ", _TAG.sub(" ", response.text)).strip()
        if text:
            shown = text if len(text) <= 300 else text[:300] + "..."
            fields["message"] = f"HTTP {response.status} with a non-JSON body: {shown}"
        else:
            fields["message"] = f"HTTP {response.status} with an empty body"
    headers = response.headers
    fields["request_id"] = fields["request_id"] or headers.get("x-request-id") or headers.get("request-id")
    return fields


def build_error(
    call: Call,
    response: WireResponse,
    cls: Optional[Type[errors.ProviderError]] = None,
    *,
    fields: Optional[Dict[str, Any]] = None,
    **overrides: Any,
) -> errors.ProviderError:
    """The typed error for ``response``: ``cls`` or the class for its status.

    ``fields`` are the envelope's fields (default: ``error_fields(response)``);
    ``overrides`` (message, code, retryable, retry_after, details, ...) win over them.
    """
    values = dict(fields) if fields is not None else error_fields(response)
    values.update(overrides)
    error_cls = cls or errors.error_class_for_status(response.status)
    return error_cls(
        values.pop("message"),
        status=response.status,
        provider=call.provider,
        model=call.model,
        body=response.text,
        headers=response.headers,
        **values,
    )


#: Error codes that mean the prompt (plus the requested output) does not fit the model.
CONTEXT_WINDOW_CODES = frozenset({"context_length_exceeded", "context_window_exceeded", "model_context_window_exceeded"})
#: Message fragments (lower case) that mean the same, from OpenAI-compatible servers that
#: send no such code: "This model's maximum context length is N tokens. However, ...",
#: "The decoder prompt (length N) is longer than the maximum model length of M",
#: "Range of input length should be [1, N]" (with codes such as ``InvalidParameter``).
CONTEXT_WINDOW_MESSAGES = (
    "maximum context length",
    "longer than the maximum model length",
    "range of input length should be",
)
_CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
#: Statuses a context-window error comes with (a 413 from servers that count bytes first).
_CONTEXT_WINDOW_STATUSES = frozenset({400, 413, 422})


def is_context_window_error(status: int, code: Any, message: Any) -> bool:
    """True when an error answer says the prompt is longer than the model's context window:
    one of ``CONTEXT_WINDOW_CODES``, or a 400 / 413 / 422 whose message contains one of
    ``CONTEXT_WINDOW_MESSAGES``."""
    if isinstance(code, str) and code.lower() in CONTEXT_WINDOW_CODES:
        return True
    if status not in _CONTEXT_WINDOW_STATUSES or not isinstance(message, str):
        return False
    lowered = message.lower()
    return any(fragment in lowered for fragment in CONTEXT_WINDOW_MESSAGES)


def _refined_class(status: int, code: Any, message: Any) -> Optional[Type[errors.ProviderError]]:
    if status == 429 and code == "insufficient_quota":
        return errors.QuotaExceededError
    if isinstance(code, str) and code in _CONTENT_FILTER_CODES:
        return errors.ContentFilterError
    if is_context_window_error(status, code, message):
        return errors.ContextWindowExceededError
    return None


def map_error(call: Call, response: WireResponse) -> errors.ProviderError:
    """OpenAI's error classes: ``insufficient_quota`` is billing (not retried), content
    filters are typed, a prompt over the context window is ``ContextWindowExceededError``
    (``is_context_window_error``), and a 404 hints at a base URL without ``/v1``."""
    fields = error_fields(response)
    cls = _refined_class(response.status, fields["code"], fields["message"])
    if response.status == 404:
        base = (call.api_base or call.info.api_base or "").rstrip("/")
        if not base.endswith("/v1") and "/v1/" not in base:
            fields["message"] += (
                f" (hint: the base URL {base or '(default)'} has no '/v1' suffix;"
                " OpenAI-compatible servers usually serve under '/v1')"
            )
    return build_error(call, response, cls, fields=fields)


# --- encoders: OpenAI shapes -> OpenAI wire (mock responses, the conformance kit) --------

_JSON_HEAD = {"content-type": "application/json"}


def encode_response(call: Call, result: Dict[str, Any]) -> WireResponse:
    """The upstream response that ``parse_response`` reads as ``result``."""
    return WireResponse(200, dict(_JSON_HEAD), _DUMPS(result).encode("utf-8"))


def encode_stream(call: Call, chunks: List[Dict[str, Any]]) -> bytes:
    """An SSE body of ``chunks`` ending in ``data: [DONE]``."""
    return b"".join(b"data: " + _DUMPS(chunk).encode("utf-8") + b"\n\n" for chunk in chunks) + b"data: [DONE]\n\n"


def encode_error(call: Call, status: int, message: str, code: Optional[str] = None) -> WireResponse:
    """OpenAI's error envelope."""
    body = {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error", "param": None, "code": code}}
    return WireResponse(status, dict(_JSON_HEAD), _DUMPS(body).encode("utf-8"))
