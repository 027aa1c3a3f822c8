"""Hypothesis strategies for OpenAI-shaped payloads, and helpers to turn a response into
the chunk stream (and SSE bytes) an upstream would send for it.

Everything generated is valid OpenAI JSON (the official schema accepts it) plus random
``x_``-prefixed extra fields, which a lossless pipeline must carry through untouched.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from hypothesis import strategies as st

__all__ = [
    "json_values",
    "extra_fields",
    "content_parts",
    "messages",
    "tools",
    "chat_requests",
    "chat_responses",
    "text_completion_responses",
    "embedding_responses",
    "error_responses",
    "split_text",
    "chunk_stream",
    "sse_encode",
    "split_bytes",
]

_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
_word = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _finite | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_word, inner, max_size=3),
    max_leaves=6,
)


def extra_fields(max_size: int = 2) -> st.SearchStrategy[Dict[str, Any]]:
    """Unknown fields a provider might add; ``x_`` keeps them clear of every known name."""
    return st.dictionaries(_word.map(lambda w: f"x_{w}"), json_values, max_size=max_size)


def _with_extras(base: st.SearchStrategy[Dict[str, Any]]) -> st.SearchStrategy[Dict[str, Any]]:
    return st.tuples(base, extra_fields()).map(lambda pair: {**pair[0], **pair[1]})


_url = _word.map(lambda w: f"https://example.invalid/{w}")
_data_uri = st.sampled_from(["image/png", "video/mp4", "application/pdf"]).map(lambda t: f"data:{t};base64,AAAA")

content_parts = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, _text),
    st.builds(
        lambda url, detail: {"type": "image_url", "image_url": {"url": url, **({"detail": detail} if detail else {})}},
        _url | _data_uri,
        st.sampled_from([None, "auto", "low", "high"]),
    ),
    st.builds(lambda d, f: {"type": "input_audio", "input_audio": {"data": d, "format": f}}, st.just("UklGRg=="), st.sampled_from(["wav", "mp3"])),
    st.builds(lambda url: {"type": "video_url", "video_url": {"url": url}}, _url),
    st.one_of(
        st.builds(lambda url: {"type": "file", "file": {"file_id": url}}, _url),
        st.builds(lambda uri, name: {"type": "file", "file": {"file_data": uri, "filename": name}}, _data_uri, _word),
    ),
)

_tool_call: st.SearchStrategy[Dict[str, Any]] = st.builds(
    lambda i, name, args: {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}},
    _word,
    _word,
    st.dictionaries(_word, st.integers() | _text, max_size=2).map(json.dumps),
)

_system = st.builds(lambda c: {"role": "system", "content": c}, _text | st.lists(st.builds(lambda t: {"type": "text", "text": t}, _text), min_size=1, max_size=2))
_developer = st.builds(lambda c: {"role": "developer", "content": c}, _text)
_user = st.builds(lambda c: {"role": "user", "content": c}, _text | st.lists(content_parts, min_size=1, max_size=4))
_assistant = st.one_of(
    st.builds(lambda c: {"role": "assistant", "content": c}, _text),
    st.builds(lambda calls: {"role": "assistant", "content": None, "tool_calls": calls}, st.lists(_tool_call, min_size=1, max_size=2)),
)
_tool = st.builds(lambda i, c: {"role": "tool", "tool_call_id": f"call_{i}", "content": c}, _word, _text)

#: A conversation: optional system prompt, then turns of every role.
messages = st.tuples(
    st.lists(_system | _developer, max_size=1),
    st.lists(_user | _assistant | _tool, min_size=1, max_size=5),
).map(lambda pair: [*pair[0], *pair[1]])

tools: st.SearchStrategy[List[Dict[str, Any]]] = st.lists(
    st.builds(
        lambda name, description, strict: {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}, **({"strict": strict} if strict is not None else {})},
        },
        _word,
        _text,
        st.sampled_from([None, True, False]),
    ),
    min_size=1,
    max_size=2,
    unique_by=lambda t: str(t["function"]["name"]),
)

_response_format = st.sampled_from(
    [
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}},
    ]
)
_optional_params = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(0, 1.9),
        "top_p": st.floats(0.01, 1.0),
        "n": st.integers(1, 4),
        "max_tokens": st.integers(1, 4096),
        "seed": st.integers(0, 2**63),
        "stop": _word | st.lists(_word, min_size=1, max_size=3),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
        "response_format": _response_format,
        "user": _word,
    },
)


@st.composite
def chat_requests(draw: Any, stream: Optional[bool] = None) -> Dict[str, Any]:
    """An OpenAI chat request body (without ``model``), with random extra fields."""
    body: Dict[str, Any] = {"messages": draw(messages), **draw(_optional_params)}
    if draw(st.booleans()):
        body["tools"] = draw(tools)
        body["tool_choice"] = draw(st.sampled_from(["auto", "none", "required"]) | st.just({"type": "function", "function": {"name": body["tools"][0]["function"]["name"]}}))
        body.pop("n", None)
    streaming = draw(st.booleans()) if stream is None else stream
    if streaming:
        body["stream"] = True
        if draw(st.booleans()):
            body["stream_options"] = {"include_usage": draw(st.booleans())}
    body.update(draw(extra_fields()))
    return body


_usage = st.builds(
    lambda p, c, cached, reasoning: {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p + c,
        **({"prompt_tokens_details": {"cached_tokens": cached}} if cached is not None else {}),
        **({"completion_tokens_details": {"reasoning_tokens": reasoning}} if reasoning is not None else {}),
    },
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.none() | st.integers(0, 100),
    st.none() | st.integers(0, 100),
)


@st.composite
def _message(draw: Any) -> Dict[str, Any]:
    message: Dict[str, Any] = {"role": "assistant", "content": draw(st.none() | _text), "refusal": None}
    if draw(st.booleans()):
        message["reasoning_content"] = draw(_text)
    if draw(st.booleans()):
        calls = draw(st.lists(_tool_call, min_size=1, max_size=3, unique_by=lambda c: str(c["id"])))
        message["tool_calls"] = calls
    message.update(draw(extra_fields(1)))
    return message


@st.composite
def chat_responses(draw: Any, max_choices: int = 2) -> Dict[str, Any]:
    """A complete chat completion, in the shape ``stream_to_completion`` rebuilds
    (``max_choices=1`` for providers whose wire carries one answer)."""
    count = draw(st.integers(1, max_choices))
    choices = []
    for index in range(count):
        choice = {
            "index": index,
            "message": draw(_message()),
            "finish_reason": draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"])),
            "logprobs": None,
        }
        choice.update(draw(extra_fields(1)))
        choices.append(choice)
    response = {
        "id": f"chatcmpl-{draw(_word)}",
        "object": "chat.completion",
        "created": draw(st.integers(0, 2**31)),
        "model": draw(_word),
        "choices": choices,
        "usage": draw(_usage),
    }
    if draw(st.booleans()):
        response["system_fingerprint"] = draw(_word)
    response.update(draw(extra_fields()))
    return response


text_completion_responses = st.builds(
    lambda id_, created, model, texts, usage, extras: {
        "id": id_, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": i, "text": t, "logprobs": None, "finish_reason": "stop"} for i, t in enumerate(texts)],
        "usage": usage, **extras,
    },
    _word, st.integers(0, 2**31), _word, st.lists(_text, min_size=1, max_size=2), _usage, extra_fields(),
)  # fmt: skip

embedding_responses = st.builds(
    lambda model, vectors, usage, extras: {
        "object": "list", "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": usage["prompt_tokens"], "total_tokens": usage["prompt_tokens"]}, **extras,
    },
    _word, st.lists(st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=8), min_size=1, max_size=3), _usage, extra_fields(),
)  # fmt: skip


@st.composite
def error_responses(draw: Any) -> Dict[str, Any]:
    """An error as upstreams send it: ``{"status", "headers", "body", "message"}``.

    Shapes: OpenAI's nested envelope, a flat object with a top-level ``message``, and a
    non-JSON (HTML) page. ``message`` is what the error must carry.
    """
    status = draw(st.sampled_from([400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504]))
    # Single spaces: an HTML page's text is read with its whitespace collapsed.
    message = " ".join(draw(st.lists(st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), min_size=1, max_size=5)))
    code = draw(st.from_regex(r"E[0-9]{3}", fullmatch=True))
    shape = draw(st.sampled_from(["openai", "flat", "html"]))
    if shape == "openai":
        body: Any = {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": None}}
    elif shape == "flat":
        body = {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": status}
    else:
        body = f"<html><body><h1>{message}</h1></body></html>"
    return {"status": status, "body": body, "message": message, "headers": {}}


def split_text(text: str, cuts: List[int]) -> List[str]:
    """``text`` cut at the given positions (clamped); no piece is empty."""
    points = sorted({min(max(c, 1), len(text)) for c in cuts if len(text) > 1}) if text else []
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]
    return [p for p in pieces if p] or ([text] if text else [])


@st.composite
def chunk_stream(draw: Any, response: Dict[str, Any], empty_ids: Optional[bool] = None) -> List[Dict[str, Any]]:
    """The chunks an upstream streams for ``response``.

    Content, reasoning and tool-call arguments are split at arbitrary points; tool-call
    continuations restate ``"id": ""`` (as some upstreams do) or omit it; a usage trailer
    with empty choices ends the stream; extra fields ride on the first chunk.
    """
    empty_id_deltas = draw(st.booleans()) if empty_ids is None else empty_ids
    known = {"id", "object", "created", "model", "choices", "usage"}
    head = {k: v for k, v in response.items() if k in ("id", "created", "model", "system_fingerprint")}
    top_extras = {k: v for k, v in response.items() if k not in known and k != "system_fingerprint"}
    cuts = st.lists(st.integers(0, 60), max_size=4)
    chunks: List[Dict[str, Any]] = []

    def emit(index: int, delta: Dict[str, Any], finish: Any = None, extra: Optional[Dict[str, Any]] = None) -> None:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish, **(extra or {})}
        chunk = {**head, "object": "chat.completion.chunk", "choices": [choice]}
        if not chunks:
            chunk.update(top_extras)
        chunks.append(chunk)

    for choice in response["choices"]:
        index = choice["index"]
        message = choice["message"]
        message_extras = {k: v for k, v in message.items() if k not in ("role", "content", "refusal", "reasoning_content", "tool_calls")}
        choice_extras = {k: v for k, v in choice.items() if k not in ("index", "message", "finish_reason", "logprobs")}
        first: Dict[str, Any] = {"role": "assistant", **message_extras}
        if isinstance(message.get("content"), str):
            first["content"] = ""
        emit(index, first)
        for piece in split_text(message.get("reasoning_content") or "", draw(cuts)):
            emit(index, {"reasoning_content": piece})
        if "reasoning_content" in message and not message["reasoning_content"]:
            emit(index, {"reasoning_content": ""})
        for piece in split_text(message.get("content") or "", draw(cuts)):
            emit(index, {"content": piece})
        for position, call in enumerate(message.get("tool_calls") or []):
            arguments = split_text(call["function"]["arguments"], draw(cuts)) or [""]
            emit(index, {"tool_calls": [{"index": position, "id": call["id"], "type": call["type"], "function": {"name": call["function"]["name"], "arguments": arguments[0]}}]})
            for piece in arguments[1:]:
                delta: Dict[str, Any] = {"index": position, "function": {"arguments": piece}}
                if empty_id_deltas:
                    delta.update({"id": "", "type": "function"})
                emit(index, {"tool_calls": [delta]})
        emit(index, {}, choice["finish_reason"], choice_extras)
    chunks.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": response["usage"]})
    return chunks


def sse_encode(chunks: List[Dict[str, Any]], done: bool = True) -> bytes:
    """``data: <json>`` events, each ended by a blank line, then ``data: [DONE]``."""
    events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
    if done:
        events.append(b"data: [DONE]\n\n")
    return b"".join(events)


def split_bytes(data: bytes, cuts: List[int]) -> List[bytes]:
    """``data`` cut at arbitrary byte positions (inside UTF-8 sequences too)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if b > a]
