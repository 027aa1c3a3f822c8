"""The OpenAI wire format: the built-in ``trylast`` implementation of every hook.

A provider plugin implements only the hooks where it differs from OpenAI; whatever it
leaves out (or answers ``None`` to) falls through to these. The helpers here
(``error_fields``, ``build_error``, ``fold_system_messages``) are public so plugins can
reuse them instead of rewriting envelope parsing.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional

from . import errors
from ._wire import (
    END_OF_STREAM,
    IGNORE_EVENT,
    Call,
    Endpoint,
    ServerSentEvent,
    WireRequest,
    WireResponse,
    env_value,
)
from .hookspecs import hookimpl

__all__ = [
    "OpenAIWire",
    "PATHS",
    "error_fields",
    "build_error",
    "fold_system_messages",
    "env_value",
]

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
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, untyped


def loads_event(data: str) -> Any:
    """``json.loads`` for one stream event, minus its two whitespace regexes.

    Called once per chunk: the C scanner alone parses a well-formed event in about half
    the time; anything unusual (surrounding whitespace, trailing data, bad JSON) goes
    through ``json.loads`` so errors read exactly as usual.
    """
    try:
        value, end = _SCAN(data, 0)
    except StopIteration:
        return json.loads(data)
    if end != len(data) and data[end:].strip():
        return json.loads(data)
    return value
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


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
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
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


def error_fields(response: WireResponse) -> Dict[str, Any]:
    """message, code, type, param and request_id from any common error envelope.

    Handles OpenAI's ``{"error": {...}}``, ``{"error": "text"}``, vLLM's older flat
    ``{"object": "error", ...}``, ModelScope's ``{"errors": {...}}`` and non-JSON
    bodies (an HTML 502 page becomes its visible text, truncated).
    """
    body = response.json_or_none()
    fields: Dict[str, Any] = {"message": None, "code": None, "type": None, "param": None, "request_id": None}
    if isinstance(body, dict):
        inner = body.get("error")
        if inner is None and isinstance(body.get("errors"), dict):
            inner = body["errors"]
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
    fields["request_id"] = (
        fields["request_id"] or headers.get("x-request-id") or headers.get("request-id")
    )
    return fields


def build_error(
    call: Call, response: WireResponse, cls: Optional[type] = None, **overrides: Any
) -> errors.ProviderError:
    """The typed error for ``response``: ``cls`` or the class for its status."""
    fields = error_fields(response)
    fields.update(overrides)
    error_cls = cls or errors.error_class_for_status(response.status)
    return error_cls(
        fields.pop("message"),
        status=response.status,
        provider=call.provider,
        model=call.model,
        body=response.text,
        headers=response.headers,
        **fields,
    )


class OpenAIWire:
    """OpenAI's HTTP API as hook implementations; registered ``trylast`` for every provider."""

    @hookimpl(trylast=True)
    def resolve_endpoint(self, call: Call) -> Endpoint:
        info = call.info
        base = call.api_base or env_value(info.api_base_env) or info.api_base
        if not base:
            names = " or ".join(["api_base=...", *info.api_base_env]) if info.api_base_env else "api_base=..."
            raise errors.ConfigError(f"provider {call.provider!r} needs a base URL: set {names}")
        headers = {}
        if call.api_key:
            headers["Authorization"] = f"Bearer {call.api_key}"
        return Endpoint(base_url=base, path=PATHS.get(call.operation, "/" + call.operation), headers=headers)

    @hookimpl(trylast=True)
    def transform_request(self, call: Call, endpoint: Endpoint) -> WireRequest:
        body = call.body
        if call.operation == "chat" and not call.options.get(
            "supports_system_message", call.info.supports_system_message
        ):
            body = {**body, "messages": fold_system_messages(body["messages"])}
        if call.files:
            return WireRequest("POST", endpoint.url, dict(endpoint.headers), data=form_fields(body), files=dict(call.files))
        return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=body)

    @hookimpl(trylast=True)
    def transform_response(self, call: Call, response: WireResponse) -> Any:
        if call.operation == "transcription" and call.body.get("response_format") in ("text", "srt", "vtt"):
            return {"text": response.text}
        try:
            result = response.json()
        except ValueError:
            raise _malformed(call, response, f"expected a JSON body, got: {response.text[:_BAD_LINE_LIMIT]!r}") from None
        if not isinstance(result, dict):
            raise _malformed(call, response, f"expected a JSON object, got {type(result).__name__}")
        return result

    @hookimpl(trylast=True)
    def parse_stream_chunk(self, call: Call, event: ServerSentEvent) -> Any:
        data = event.data
        if not data:
            return IGNORE_EVENT
        if data[0] == "[" and data.strip() == "[DONE]":
            return END_OF_STREAM
        try:
            chunk = loads_event(data)
        except ValueError:
            raise errors.MalformedStreamError(
                f"stream event is not JSON: {data[:_BAD_LINE_LIMIT]!r}",
                provider=call.provider,
                model=call.model,
                body=data,
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

    @hookimpl(trylast=True)
    def map_error(self, call: Call, response: WireResponse) -> errors.ProviderError:
        fields = error_fields(response)
        cls: Optional[type] = None
        if response.status == 429 and fields["code"] == "insufficient_quota":
            cls = errors.QuotaExceededError
        elif fields["code"] in ("content_filter", "content_policy_violation"):
            cls = errors.ContentFilterError
        error = build_error(call, response, cls)
        if response.status == 404:
            base = (call.api_base or call.info.api_base or "").rstrip("/")
            if not base.endswith("/v1"):
                error.message += (
                    f" (hint: the base URL {base or '(default)'} has no '/v1' suffix;"
                    " OpenAI-compatible servers usually serve under '/v1')"
                )
        return error


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


def _malformed(call: Call, response: WireResponse, message: str) -> errors.MalformedResponseError:
    return errors.MalformedResponseError(
        message, status=response.status, provider=call.provider, model=call.model, body=response.text
    )


def stream_error(call: Call, chunk: Dict[str, Any]) -> errors.ProviderError:
    """The typed error for an error object the upstream sent inside a stream."""
    inner = chunk.get("error")
    inner = inner if isinstance(inner, dict) else chunk
    code = inner.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    message = inner.get("message") or json.dumps(chunk)[:_BAD_LINE_LIMIT]
    cls = errors.error_class_for_status(status)
    return cls(
        str(message),
        status=status,
        provider=call.provider,
        model=call.model,
        code=code,
        type=inner.get("type"),
        body=json.dumps(chunk),
    )
