"""modelport provider ``anthropic``: Anthropic's Messages API (Claude) behind OpenAI shapes.

What differs from OpenAI, and why this plugin translates instead of forwarding:

- Auth is an ``x-api-key`` header plus a pinned ``anthropic-version: 2023-06-01`` (Anthropic
  versions its wire format by header); the path is ``/v1/messages``.
- The request is another shape: system (and developer) prompts live in a top-level
  ``system``; only ``user`` and ``assistant`` turns exist, so tool results become user
  turns of ``tool_result`` blocks and consecutive same-role turns are merged; images are
  ``image`` blocks with a base64 or URL source; tools carry ``input_schema``; tool calls
  are ``tool_use`` blocks whose input is a JSON object, not a string; ``max_tokens`` is
  required (defaulted here); there is no ``n``, no penalties, no seed and no logprobs.
- The answer is a list of content blocks (text, thinking, tool_use) with ``stop_reason``
  and a usage that counts cached prompt tokens apart from ``input_tokens``.
- Streams are typed events (``message_start``, ``content_block_*``, ``message_delta``,
  ``message_stop``) whose deltas name a content-block index, not a tool-call index, and
  carry no id or model: the translation needs per-stream state, so the plugin declares
  ``stream_framing="custom"`` and its decoder (SSE framing plus that state) hands each
  event to ``parse_stream_chunk`` already translated.
- Errors are ``{"type": "error", "error": {"type", "message"}}``; ``overloaded_error``
  (HTTP 529) is retried as ``ServiceUnavailableError``, "prompt is too long" is
  ``ContextWindowExceededError``, ``billing_error`` is ``QuotaExceededError``.

Documented choices: ``created`` comes from the response's ``date`` header (0 when absent,
and 0 in streams, whose hooks never see headers); a stream yields its usage chunk (empty
``choices``) only when ``stream_options.include_usage`` is set, as OpenAI does;
``reasoning_effort`` minimal/low/medium/high is a thinking budget of
1024/1024/4096/16384 tokens (``none`` disables thinking). See README.md.
"""

from __future__ import annotations

import email.utils
import json
import re
from typing import Any, Dict, List, Optional, Tuple, Type

from modelport.provider import (
    END_OF_STREAM,
    IGNORE_EVENT,
    Call,
    Endpoint,
    InvalidRequestError,
    ProviderError,
    ProviderInfo,
    SSEDecoder,
    Step,
    StreamEvent,
    WireRequest,
    WireResponse,
    end_of_stream,
    env_value,
    errors,
    hookimpl,
    openai,
)

__all__ = [
    "DEFAULT_BASE",
    "API_VERSION",
    "DEFAULT_MAX_TOKENS",
    "REASONING_BUDGETS",
    "STOP_REASONS",
    "ERROR_STATUS",
    "build_body",
    "completion_from_message",
    "AnthropicStreamDecoder",
]

DEFAULT_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
#: ``max_tokens`` when the caller gives neither it nor ``max_completion_tokens`` (plus the
#: thinking budget when thinking is on, so the answer keeps this many tokens).
DEFAULT_MAX_TOKENS = 4096
#: ``reasoning_effort`` -> extended-thinking budget (tokens); ``none`` disables thinking.
REASONING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
#: Anthropic ``stop_reason`` -> OpenAI ``finish_reason`` (anything else: ``stop``).
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_FINISH_TO_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use", "content_filter": "refusal"}
#: Anthropic error type -> HTTP status (errors inside a stream carry only the type).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_TYPE_BY_STATUS = {status: kind for kind, status in ERROR_STATUS.items()}
_CONTEXT_MESSAGES = ("prompt is too long", "exceeds the maximum context", "exceed context limit", "context window")

#: OpenAI chat parameters the Messages API has a place for (others: the core raises, or drops
#: them with ``drop_params=True``).
_PARAMS = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "max_tokens",
    "max_completion_tokens", "stop", "tools", "tool_choice", "parallel_tool_calls", "response_format",
    "reasoning_effort", "user", "metadata", "service_tier",
}  # fmt: skip
#: OpenAI chat parameters with no Anthropic counterpart, refused here too (e.g. via extra_body).
_UNSUPPORTED = (
    "logit_bias", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "seed", "audio",
    "modalities", "prediction", "store", "verbosity", "web_search_options", "functions", "function_call",
    "prompt_cache_key", "safety_identifier",
)  # fmt: skip
_MESSAGE_FIELDS = frozenset({"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"})
_CHUNK_FIELDS = frozenset({"id", "object", "created", "model", "choices", "usage"})
_DATA_URL = re.compile(r"data:([^;,]+);base64,(.*)", re.DOTALL)
_JSON_HEAD = {"content-type": "application/json"}


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="anthropic",
        api_base=DEFAULT_BASE,
        api_base_env=("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"),
        api_key_env=("ANTHROPIC_API_KEY",),
        operations={"chat"},
        params=_PARAMS,
        stream_framing="custom",
        secret_headers={"x-api-key"},
        description="Anthropic Messages API (Claude): chat, tools, vision, extended thinking",
    )


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    base = (call.api_base or env_value(call.info.api_base_env) or DEFAULT_BASE).rstrip("/")
    if not call.api_key and not call.dry_run:
        raise errors.AuthenticationError(
            "no Anthropic API key: pass api_key=... or set ANTHROPIC_API_KEY", provider=call.provider, model=call.model
        )
    headers = {"anthropic-version": API_VERSION}
    if call.api_key:
        headers["x-api-key"] = call.api_key
    # The base may carry /v1 or not (both spellings are common in configs).
    return Endpoint(base_url=base, path="/messages" if base.endswith("/v1") else "/v1/messages", headers=headers)


# --- requests ----------------------------------------------------------------------------


def _reject(message: str, param: str, allowed: Optional[str] = None) -> InvalidRequestError:
    return InvalidRequestError(f"anthropic: {message}", param=param, allowed=allowed)


def _media_block(url: Any, where: str, url_kind: str) -> Dict[str, Any]:
    """A data URL (image/* or PDF) or an http(s) URL as an image / document block."""
    if not isinstance(url, str):
        raise _reject(f"{where}: expected a URL string, got {type(url).__name__}", where)
    match = _DATA_URL.fullmatch(url)
    if match:
        media, data = match.group(1), match.group(2)
        if media.lower().startswith("image/"):
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
        if media.lower() == "application/pdf":
            return {"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}
        raise _reject(f"{where}: {media} data is not supported (Claude reads images and PDF documents)", where, "image/*, application/pdf")
    if url.startswith(("http://", "https://")):
        return {"type": url_kind, "source": {"type": "url", "url": url}}
    raise _reject(f"{where}: expected a base64 data URL or an http(s) URL", where)


def _part(part: Any, where: str) -> Optional[Dict[str, Any]]:
    """One OpenAI content part as an Anthropic block (None for an empty text part)."""
    if not isinstance(part, dict):
        raise _reject(f"{where}: a content part must be an object", where)
    kind = part.get("type")
    block: Dict[str, Any]
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not text:
            return None  # the API rejects empty text blocks
        block = {"type": "text", "text": text}
    elif kind == "image_url":
        value = part.get("image_url")
        block = _media_block(value.get("url") if isinstance(value, dict) else value, where, "image")
    elif kind == "file":
        file: Dict[str, Any] = part["file"] if isinstance(part.get("file"), dict) else {}
        if file.get("file_data"):
            block = _media_block(file["file_data"], where, "document")
        elif file.get("file_id"):
            block = {"type": "document", "source": {"type": "file", "file_id": file["file_id"]}}
        else:
            raise _reject(f"{where}: a file part needs file_data or file_id", where)
    elif kind in ("input_audio", "video_url"):
        raise _reject(f"{where}: {kind} parts are not supported (Claude reads text, images and PDF documents)", where, "text, image_url, file")
    else:
        return part  # an Anthropic block written natively (document, search_result, ...)
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _blocks(content: Any, where: str) -> List[Dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [b for j, p in enumerate(content) if (b := _part(p, f"{where}.content[{j}]")) is not None]
    raise _reject(f"{where}.content must be a string or a list of parts", f"{where}.content")


def _with_cache(blocks: List[Dict[str, Any]], cache_control: Any) -> List[Dict[str, Any]]:
    """A message's own ``cache_control`` marks its last block (where Anthropic reads it)."""
    if cache_control is None or not blocks:
        return blocks
    return [*blocks[:-1], {**blocks[-1], "cache_control": cache_control}]


def _system_blocks(message: Dict[str, Any], where: str) -> List[Dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _reject(f"{where}.content[{j}]: a system message holds text parts only", f"{where}.content[{j}]")
    return _with_cache(_blocks(content, where), message.get("cache_control"))


def _arguments(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return value
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError) as exc:
        raise _reject(f"{where} is not valid JSON ({exc}); Claude takes tool input as a JSON object", where) from None
    if not isinstance(parsed, dict):
        raise _reject(f"{where} must be a JSON object, got {type(parsed).__name__}", where)
    return parsed


def _assistant_blocks(message: Dict[str, Any], where: str) -> List[Dict[str, Any]]:
    # Thinking blocks from an earlier answer go first: Claude needs them back, signature
    # and all, in the turn that holds their tool calls.
    blocks = [b for b in message.get("thinking_blocks") or () if isinstance(b, dict)]
    blocks += _blocks(message.get("content"), where)
    for k, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        arguments = _arguments(function.get("arguments"), f"{where}.tool_calls[{k}].function.arguments")
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments})
    return blocks


def _tool_result(message: Dict[str, Any], where: str) -> List[Dict[str, Any]]:
    block: Dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    content = message.get("content")
    if isinstance(content, list):
        block["content"] = _blocks(content, where)
    elif content is not None:
        block["content"] = content
    return [block]


def convert_messages(messages: Any) -> Tuple[Any, List[Dict[str, Any]]]:
    """OpenAI messages -> (Anthropic ``system`` or None, alternating user/assistant turns)."""
    if not isinstance(messages, list):
        raise _reject("messages must be a list", "messages")
    system: List[Dict[str, Any]] = []
    turns: List[Dict[str, Any]] = []
    for position, message in enumerate(messages):
        where = f"messages[{position}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system += _system_blocks(message, where)
            continue
        if role == "user":
            blocks = _blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            role, blocks = "user", _tool_result(message, where)
        else:
            raise _reject(f"{where} has the role {role!r}", f"{where}.role", "system, developer, user, assistant, tool")
        blocks = _with_cache(blocks, message.get("cache_control"))
        if not blocks:
            continue  # nothing left to say (an empty message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks  # the API wants user and assistant turns to alternate
        else:
            turns.append({"role": role, "content": blocks})
    if not system:
        return None, turns
    if any("cache_control" in block for block in system):
        return system, turns
    return "\n\n".join(block["text"] for block in system), turns


def _tool(tool: Any) -> Any:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(function, dict):
        return tool  # an Anthropic tool written natively (web_search, bash, ...)
    out: Dict[str, Any] = {"name": function.get("name"), "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description") is not None:
        out["description"] = function["description"]
    if function.get("strict") is not None:
        out["strict"] = function["strict"]
    if tool.get("cache_control") is not None:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Any) -> Dict[str, Any]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
        return choice  # already Anthropic's shape
    raise _reject(f"tool_choice {choice!r} is not supported", "tool_choice", "auto, none, required, or a named function")


def _thinking(effort: Any) -> Dict[str, Any]:
    if effort == "none":
        return {"type": "disabled"}
    if effort in REASONING_BUDGETS:
        return {"type": "enabled", "budget_tokens": REASONING_BUDGETS[effort]}
    raise _reject(f"reasoning_effort {effort!r} is not supported", "reasoning_effort", "none, minimal, low, medium, high")


def _budget(thinking: Any) -> int:
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool):
            return budget
    return 0


def build_body(call: Call) -> Dict[str, Any]:
    """The Messages API body for the OpenAI chat body of ``call`` (fields Anthropic has no
    OpenAI name for, such as ``top_k``, ``thinking`` or ``output_config``, pass through)."""
    # OpenAI reads null as "not given"; the Messages API rejects most nulls.
    body = {key: value for key, value in call.body.items() if value is not None}
    for name in _UNSUPPORTED:
        if name in body:
            raise _reject(f"the Messages API has no {name}; leave it out or pass drop_params=True", name)
    n = body.pop("n", None)
    if n not in (None, 1):
        raise _reject(f"n={n!r}: the Messages API returns one message per request", "n", "1")
    system, turns = convert_messages(body.pop("messages", None))
    model = body.pop("model", call.model)
    stream = body.pop("stream", None)
    body.pop("stream_options", None)
    effort = body.pop("reasoning_effort", None)
    if effort is not None:
        body.setdefault("thinking", _thinking(effort))  # an explicit thinking wins
    max_tokens = body.pop("max_completion_tokens", None)
    legacy = body.pop("max_tokens", None)
    if max_tokens is None:
        max_tokens = legacy if legacy is not None else DEFAULT_MAX_TOKENS + _budget(body.get("thinking"))
    stop = body.pop("stop", None)
    if stop is not None:
        if not (isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
            raise _reject(f"stop must be a string or a list of strings, got {stop!r}", "stop")
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    user = body.pop("user", None)
    if user is not None:
        body["metadata"] = {"user_id": user, **(body.get("metadata") or {})}
    tools = body.pop("tools", None)
    choice = body.pop("tool_choice", None)
    parallel = body.pop("parallel_tool_calls", None)
    if tools is not None:
        body["tools"] = [_tool(tool) for tool in tools]
    if choice is not None:
        body["tool_choice"] = _tool_choice(choice)
    if parallel is False and tools and body.get("tool_choice", {}).get("type") != "none":
        body["tool_choice"] = {"type": "auto", **body.get("tool_choice", {}), "disable_parallel_tool_use": True}
    response_format = body.pop("response_format", None)
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        schema = (response_format.get("json_schema") or {}).get("schema")
        if response_format.get("type") != "json_schema" or not isinstance(schema, dict):
            raise _reject(
                "response_format: Claude's structured outputs need a JSON schema ({'type': 'json_schema', 'json_schema': {'schema': ...}})",
                "response_format",
                "text, json_schema",
            )
        body["output_config"] = {**(body.get("output_config") or {}), "format": {"type": "json_schema", "schema": schema}}
    out: Dict[str, Any] = {"model": model, **body, "max_tokens": max_tokens, "messages": turns}
    if system is not None:
        out["system"] = system
    if stream:
        out["stream"] = True
    return out


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> WireRequest:
    return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=build_body(call))


# --- responses ---------------------------------------------------------------------------


def _finish_reason(stop_reason: Any) -> Optional[str]:
    return None if stop_reason is None else STOP_REASONS.get(stop_reason, "stop")


def _usage(wire: Any) -> Dict[str, Any]:
    """Anthropic usage -> OpenAI's: prompt_tokens counts cached tokens too (as OpenAI's does);
    every other field Anthropic sends (cache counts, service_tier, ...) is kept as is."""
    wire = wire if isinstance(wire, dict) else {}
    usage = {k: v for k, v in wire.items() if k not in ("input_tokens", "output_tokens") and v is not None}
    cached = usage.get("cache_read_input_tokens")
    prompt = (wire.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + (cached or 0)
    completion = wire.get("output_tokens") or 0
    usage.update(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def _tool_call(block: Dict[str, Any]) -> Dict[str, Any]:
    arguments = json.dumps(block.get("input") or {})
    return {"id": block.get("id", ""), "type": "function", "function": {"name": block.get("name", ""), "arguments": arguments}}


def _returnable(block: Dict[str, Any]) -> bool:
    """Thinking blocks Claude accepts back: signed thinking, and redacted thinking."""
    return block.get("type") == "redacted_thinking" or (block.get("type") == "thinking" and bool(block.get("signature")))


def completion_from_message(message: Dict[str, Any], created: int = 0, model: str = "") -> Dict[str, Any]:
    """An Anthropic ``Message`` -> an OpenAI ``chat.completion`` (unknown top-level fields kept)."""
    texts: List[str] = []
    thoughts: List[str] = []
    thinking_blocks: List[Dict[str, Any]] = []
    calls: List[Dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        if kind in ("thinking", "redacted_thinking") and _returnable(block):
            thinking_blocks.append(block)
    reply: Dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None, "refusal": None}
    if thoughts:
        reply["reasoning_content"] = "".join(thoughts)
    if thinking_blocks:
        reply["thinking_blocks"] = thinking_blocks
    if calls:
        reply["tool_calls"] = calls
    extras = {k: v for k, v in message.items() if k not in _MESSAGE_FIELDS}
    return {
        **extras,
        "id": message.get("id", ""),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model") or model,
        "choices": [{"index": 0, "message": reply, "finish_reason": _finish_reason(message.get("stop_reason")), "logprobs": None}],
        "usage": _usage(message.get("usage")),
    }


def _created(headers: Any) -> int:
    """Seconds since the epoch from the ``date`` header; 0 without one (hooks read no clock)."""
    value = headers.get("date")
    if not value:
        return 0
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0


@hookimpl
def transform_response(call: Call, response: WireResponse, step: Step) -> Dict[str, Any]:
    message = openai.parse_response(call, response)
    if not isinstance(message.get("content"), list):
        raise openai.malformed_response(call, response, f"expected an Anthropic message, got: {response.text[:200]!r}")
    return completion_from_message(message, _created(response.headers), call.model)


# --- streams -----------------------------------------------------------------------------


class _Tool:
    __slots__ = ("position", "id", "name", "announced")

    def __init__(self, position: int, id: str, name: str) -> None:
        self.position = position
        self.id = id
        self.name = name
        self.announced = False  # id and name go out once, with the first arguments


class _StreamState:
    """What one stream has said so far: ids, usage, tool blocks and thinking blocks."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.usage_wanted = bool((call.body.get("stream_options") or {}).get("include_usage"))
        self.id = ""
        self.model = call.model
        self.usage: Dict[str, Any] = {}
        self.tools: Dict[int, _Tool] = {}
        self.thinking: Dict[int, str] = {}
        self.returnable: Dict[int, Dict[str, Any]] = {}
        self.ended = False
        # Event type -> handler, resolved once per stream (the per-event path is hot).
        self.handlers: Dict[str, Any] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("on_")
        }

    def chunk(self, delta: Dict[str, Any], finish: Optional[str] = None, extras: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**(extras or {}), "id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model, "choices": [choice]}

    def tool_chunk(self, tool: _Tool, arguments: str) -> Dict[str, Any]:
        call: Dict[str, Any] = {"index": tool.position, "function": {"arguments": arguments}}
        if not tool.announced:
            tool.announced = True
            call = {"index": tool.position, "id": tool.id, "type": "function", "function": {"name": tool.name, "arguments": arguments}}
        return self.chunk({"tool_calls": [call]})

    def thinking_chunk(self) -> Dict[str, Any]:
        # The complete list so far: a rebuilt message keeps the last value of the field.
        return self.chunk({"thinking_blocks": [self.returnable[i] for i in sorted(self.returnable)]})

    def translate(self, event: StreamEvent) -> Any:
        """One SSE event -> a chunk, IGNORE_EVENT, the end, or the ProviderError to raise."""
        data = event.data
        if not isinstance(data, str):
            data = data.decode("utf-8", "replace")
        try:
            payload = openai.loads_event(data)
        except ValueError:
            if not data or data.isspace():
                return IGNORE_EVENT
            payload = None
        if type(payload) is not dict:
            return errors.MalformedStreamError(
                f"stream event is not a JSON object: {data[:200]!r}", provider=self.call.provider, model=self.call.model, body=data
            )
        kind = payload.get("type") or event.event
        if kind == "content_block_delta" and not self.ended:
            delta = payload.get("delta")
            if type(delta) is dict and delta.get("type") == "text_delta":  # the common event: one text piece
                text = delta.get("text")
                if not text:
                    return IGNORE_EVENT
                return {"id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                        "choices": [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]}  # fmt: skip
        if kind == "error":
            return _stream_error(self.call, payload, data)
        if self.ended:
            return IGNORE_EVENT
        handler = self.handlers.get(kind)
        return handler(payload) if handler is not None else IGNORE_EVENT  # ping, and event types added later

    def on_message_start(self, payload: Dict[str, Any]) -> Any:
        message = payload.get("message") or {}
        self.id = message.get("id") or ""
        self.model = message.get("model") or self.model
        self.usage = {k: v for k, v in (message.get("usage") or {}).items() if v is not None}
        return self.chunk({"role": "assistant"}, extras={k: v for k, v in message.items() if k not in _MESSAGE_FIELDS})

    def on_content_block_start(self, payload: Dict[str, Any]) -> Any:
        index = payload.get("index", 0)
        block = payload.get("content_block") or {}
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return self.chunk({"content": block["text"]})
        if kind == "thinking":
            self.thinking[index] = block.get("thinking") or ""
            return self.chunk({"reasoning_content": self.thinking[index]}) if self.thinking[index] else IGNORE_EVENT
        if kind == "redacted_thinking":
            self.returnable[index] = block
            return self.thinking_chunk()
        if kind == "tool_use":
            tool = self.tools[index] = _Tool(len(self.tools), block.get("id") or "", block.get("name") or "")
            if block.get("input"):
                return self.tool_chunk(tool, json.dumps(block["input"]))
        return IGNORE_EVENT

    def on_content_block_delta(self, payload: Dict[str, Any]) -> Any:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":  # an empty piece (a text piece with text is translated above)
            return IGNORE_EVENT
        index = payload.get("index", 0)
        if kind == "thinking_delta":
            text = delta.get("thinking") or ""
            self.thinking[index] = self.thinking.get(index, "") + text
            return self.chunk({"reasoning_content": text})
        if kind == "signature_delta" and delta.get("signature"):
            self.returnable[index] = {"type": "thinking", "thinking": self.thinking.get(index, ""), "signature": delta["signature"]}
            return self.thinking_chunk()
        tool = self.tools.get(index)
        if kind == "input_json_delta" and tool is not None and delta.get("partial_json"):
            return self.tool_chunk(tool, delta["partial_json"])
        return IGNORE_EVENT

    def on_content_block_stop(self, payload: Dict[str, Any]) -> Any:
        tool = self.tools.get(payload.get("index", 0))
        if tool is not None and not tool.announced:
            return self.tool_chunk(tool, "{}")  # a tool called without input
        return IGNORE_EVENT

    def on_message_delta(self, payload: Dict[str, Any]) -> Any:
        # Usage counts in message_delta are cumulative: the latest value wins.
        self.usage.update({k: v for k, v in (payload.get("usage") or {}).items() if v is not None})
        return self.chunk({}, _finish_reason((payload.get("delta") or {}).get("stop_reason")))

    def on_message_stop(self, payload: Dict[str, Any]) -> Any:
        self.ended = True
        if not self.usage_wanted:
            return END_OF_STREAM
        usage = {"id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model, "choices": [], "usage": _usage(self.usage)}
        return end_of_stream(usage)


class _Translated(StreamEvent):
    """An SSE event with what it means for the OpenAI stream (``item``)."""

    __slots__ = ("item",)
    item: Any


class AnthropicStreamDecoder(SSEDecoder):
    """SSE framing plus the per-stream state the translation needs (one per stream).

    Never raises: a bad event becomes an event whose ``item`` is the error, which
    ``parse_stream_chunk`` raises once the chunks before it are delivered.
    """

    __slots__ = ("_state",)
    event_class = _Translated

    def __init__(self, call: Call) -> None:
        super().__init__()
        self._state = _StreamState(call)

    def feed(self, chunk: bytes) -> List[StreamEvent]:
        return self._translate(super().feed(chunk))

    def flush(self) -> List[StreamEvent]:
        return self._translate(super().flush())

    def _translate(self, events: List[Any]) -> List[StreamEvent]:
        translate = self._state.translate
        for event in events:
            event.item = translate(event)
        return events


@hookimpl
def stream_decoder(call: Call) -> AnthropicStreamDecoder:
    return AnthropicStreamDecoder(call)


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    # Events from this plugin's decoder arrive translated; a bare event (another decoder)
    # is translated on its own, without what earlier events said.
    item = event.item if isinstance(event, _Translated) else _StreamState(call).translate(event)
    if isinstance(item, ProviderError):
        raise item
    return item


# --- errors ------------------------------------------------------------------------------


def _error_class(status: int, kind: Any, message: Any) -> Type[ProviderError]:
    if kind == "overloaded_error" or status == 529:
        return errors.ServiceUnavailableError
    if kind == "billing_error":
        return errors.QuotaExceededError
    text = str(message or "").lower()
    if (status == 400 or kind == "invalid_request_error") and any(phrase in text for phrase in _CONTEXT_MESSAGES):
        return errors.ContextWindowExceededError
    return errors.error_class_for_status(status)


def _stream_error(call: Call, payload: Dict[str, Any], data: str) -> ProviderError:
    inner: Dict[str, Any] = payload["error"] if isinstance(payload.get("error"), dict) else {}
    kind = inner.get("type")
    status = ERROR_STATUS.get(str(kind), 500)
    message = str(inner.get("message") or data[:200])
    cls = _error_class(status, kind, message)
    return cls(message, status=status, provider=call.provider, model=call.model, type=kind, request_id=payload.get("request_id"), body=data)


@hookimpl
def map_error(call: Call, response: WireResponse) -> ProviderError:
    fields = openai.error_fields(response)  # reads {"type": "error", "error": {...}} and request-id
    return openai.build_error(call, response, _error_class(response.status, fields["type"], fields["message"]), fields=fields)


# --- encoders: OpenAI shapes -> Anthropic's wire (mock_response, the conformance kit) --------


def _encode_stop(finish: Any) -> Optional[str]:
    return None if finish is None else _FINISH_TO_STOP.get(finish, "end_turn")


def _encode_usage(usage: Any) -> Dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if cached is None:
        cached = usage.get("cache_read_input_tokens")
    creation = usage.get("cache_creation_input_tokens")
    skip = ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "cache_read_input_tokens", "cache_creation_input_tokens")
    wire = {k: v for k, v in usage.items() if k not in skip}
    wire["input_tokens"] = (usage.get("prompt_tokens") or 0) - (cached or 0) - (creation or 0)
    wire["output_tokens"] = usage.get("completion_tokens") or 0
    if cached is not None:
        wire["cache_read_input_tokens"] = cached
    if creation is not None:
        wire["cache_creation_input_tokens"] = creation
    return wire


def _encode_arguments(arguments: Any) -> Any:
    try:
        return _arguments(arguments, "tool call arguments")
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"mock_response: {exc}", param="mock_response") from None


def _text_of(content: Any) -> Optional[str]:
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else None


@hookimpl
def encode_response(call: Call, result: Dict[str, Any]) -> WireResponse:
    """The Anthropic message for ``result``'s first choice (the API has one message per
    response); no ``date`` header, so ``created`` decodes as 0."""
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: List[Dict[str, Any]] = []
    if message.get("thinking_blocks"):
        content += message["thinking_blocks"]
    elif isinstance(message.get("reasoning_content"), str):
        content.append({"type": "thinking", "thinking": message["reasoning_content"]})
    text = _text_of(message.get("content"))
    if text is not None:
        content.append({"type": "text", "text": text})
    for call_ in message.get("tool_calls") or ():
        function = call_.get("function") or {}
        content.append({"type": "tool_use", "id": call_.get("id"), "name": function.get("name"), "input": _encode_arguments(function.get("arguments"))})
    body = {
        **{k: v for k, v in result.items() if k not in _CHUNK_FIELDS},
        "id": result.get("id", ""),
        "type": "message",
        "role": "assistant",
        "model": result.get("model") or call.model,
        "content": content,
        "stop_reason": _encode_stop(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": _encode_usage(result.get("usage")),
    }
    return WireResponse(200, dict(_JSON_HEAD), openai.dumps(body).encode("utf-8"))


class _StreamWriter:
    """OpenAI chunks -> Anthropic's event sequence, opening and closing content blocks."""

    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []
        self.index = -1
        self.open: Optional[str] = None

    def start(self, kind: str, block: Dict[str, Any]) -> None:
        self.close()
        self.index += 1
        self.open = kind
        self.events.append({"type": "content_block_start", "index": self.index, "content_block": block})

    def delta(self, delta: Dict[str, Any]) -> None:
        self.events.append({"type": "content_block_delta", "index": self.index, "delta": delta})

    def close(self) -> None:
        if self.open is not None:
            self.events.append({"type": "content_block_stop", "index": self.index})
            self.open = None

    def write(self, delta: Dict[str, Any]) -> None:
        if isinstance(delta.get("reasoning_content"), str):
            if self.open != "thinking":
                self.start("thinking", {"type": "thinking", "thinking": ""})
            self.delta({"type": "thinking_delta", "thinking": delta["reasoning_content"]})
        for block in (delta.get("thinking_blocks") or [])[-1:]:
            if block.get("type") == "thinking" and block.get("signature") and self.open == "thinking":
                self.delta({"type": "signature_delta", "signature": block["signature"]})
            elif block.get("type") == "redacted_thinking":
                self.start("redacted_thinking", block)
                self.close()
        if isinstance(delta.get("content"), str) and delta["content"]:
            if self.open != "text":
                self.start("text", {"type": "text", "text": ""})
            self.delta({"type": "text_delta", "text": delta["content"]})
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            if call.get("id") or self.open != "tool_use":
                self.start("tool_use", {"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "", "input": {}})
            if function.get("arguments"):
                self.delta({"type": "input_json_delta", "partial_json": function["arguments"]})


@hookimpl
def encode_stream(call: Call, chunks: List[Dict[str, Any]]) -> bytes:
    """The Anthropic event stream for ``chunks`` (first choice; usage from the usage chunk)."""
    first = chunks[0] if chunks else {}
    usage = next((c["usage"] for c in reversed(chunks) if isinstance(c.get("usage"), dict)), None)
    wire_usage = _encode_usage(usage)
    opening = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    message = {
        **{k: v for k, v in first.items() if k not in _CHUNK_FIELDS},
        "id": first.get("id", ""),
        "type": "message",
        "role": "assistant",
        "model": first.get("model") or call.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**{k: v for k, v in wire_usage.items() if k in opening}, "output_tokens": 0},
    }
    writer = _StreamWriter()
    writer.events.append({"type": "message_start", "message": message})
    finished = False
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            writer.write(choice.get("delta") or {})
            if choice.get("finish_reason") is not None and not finished:
                finished = True
                writer.close()
                final = {k: v for k, v in wire_usage.items() if k not in opening}
                writer.events.append({"type": "message_delta", "delta": {"stop_reason": _encode_stop(choice["finish_reason"]), "stop_sequence": None}, "usage": final})
    writer.close()
    if not finished:
        writer.events.append({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": wire_usage["output_tokens"]}})
    writer.events.append({"type": "message_stop"})
    return b"".join(f"event: {e['type']}\ndata: {openai.dumps(e)}\n\n".encode() for e in writer.events)


@hookimpl
def encode_error(call: Call, status: int, message: str, code: Optional[str]) -> WireResponse:
    """Anthropic's error envelope, typed by status (other 4xx: invalid_request_error)."""
    kind = _TYPE_BY_STATUS.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return WireResponse(status, dict(_JSON_HEAD), openai.dumps(body).encode("utf-8"))
