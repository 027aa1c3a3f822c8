"""Anthropic's Messages API on any provider's chat operation: pure translation.

- a Messages request (``system``, ``messages`` with text / image / document / tool_use /
  tool_result / thinking blocks, ``max_tokens``, ``stop_sequences``, ``tools`` with
  ``input_schema``, ``tool_choice``, ``thinking``, ``output_config``, ``metadata.user_id``)
  -> a chat-completions body (``request_to_chat``);
- a chat completion -> an Anthropic ``message`` (``completion_to_message``): thinking,
  text and tool_use blocks, ``stop_reason``, usage counted as Anthropic counts it
  (``input_tokens`` without cached tokens);
- chat chunks -> Anthropic's event stream (``MessageStreamTranslator``): message_start,
  ping, content_block_start / _delta (text_delta, input_json_delta, thinking_delta,
  signature_delta) / _stop, message_delta (stop_reason, usage), message_stop;
- errors -> ``{"type": "error", "error": {"type", "message"}}`` (``error_body``).

Fields only Anthropic's own service has a use for (``container``, ``mcp_servers``,
``service_tier``, ``cache_control``, ...) are dropped and named by ``request_to_chat``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import InvalidRequestError
from .types import NOTSET, ChatCompletionChunk, OpenAIObject

__all__ = [
    "ERROR_TYPES",
    "ANTHROPIC_ONLY",
    "check_request",
    "request_to_chat",
    "completion_to_message",
    "usage_to_anthropic",
    "stop_reason_of",
    "MessageStreamTranslator",
    "error_type",
    "error_body",
]

#: HTTP status -> Anthropic error ``type`` (other 4xx: invalid_request_error, other 5xx: api_error).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
#: Request fields only Anthropic's own service uses: dropped (and reported) here.
ANTHROPIC_ONLY = frozenset(
    {
        "cache_control", "container", "diagnostics", "inference_geo", "service_tier", "speed",
        "user_profile_id", "workspace_id", "context_management", "mcp_servers", "betas",
    }
)  # fmt: skip
_KNOWN = frozenset(
    {
        "model", "messages", "system", "max_tokens", "temperature", "top_p", "top_k", "stop_sequences",
        "stream", "tools", "tool_choice", "thinking", "metadata", "output_config", "output_format",
    }
)  # fmt: skip
#: ``thinking.budget_tokens`` up to these -> ``reasoning_effort`` (the anthropic plugin's
#: budgets for low / medium / high, read backwards).
_BUDGET_EFFORT = ((1024, "low"), (4096, "medium"))
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def _obj(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_KINDS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (_is_int, "an integer"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "list": (lambda v: isinstance(v, list), "an array"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "string|list": (lambda v: isinstance(v, (str, list)), "a string or an array"),
}
REQUEST_TYPES: Dict[str, str] = {
    "model": "string", "messages": "list", "max_tokens": "int", "system": "string|list",
    "temperature": "number", "top_p": "number", "top_k": "int", "stop_sequences": "list", "stream": "bool",
    "tools": "list", "tool_choice": "object", "thinking": "object", "metadata": "object",
    "output_config": "object", "output_format": "object",
}  # fmt: skip


def check_request(body: Mapping[str, Any]) -> None:
    """Raise ``InvalidRequestError`` naming the first Messages parameter of the wrong type
    or a missing required one (``model``, ``messages``, ``max_tokens``)."""
    for name, kind in REQUEST_TYPES.items():
        value = body.get(name)
        if value is None:
            continue
        accepts, wanted = _KINDS[kind]
        if not accepts(value):
            raise InvalidRequestError(f"{name}: must be {wanted}, got {json.dumps(value)[:40]}", param=name)
    for name in ("model", "messages", "max_tokens"):
        if body.get(name) is None:
            raise InvalidRequestError(f"{name}: Field required", param=name)
    if not all(isinstance(s, str) for s in body.get("stop_sequences") or ()):
        raise InvalidRequestError("stop_sequences: must be an array of strings", param="stop_sequences")
    if body["max_tokens"] < 1:
        raise InvalidRequestError("max_tokens: must be greater than or equal to 1", param="max_tokens")
    if not body["messages"]:
        raise InvalidRequestError("messages: at least one message is required", param="messages")


# --- request: Messages -> chat --------------------------------------------------------------------


def _need(block: Mapping[str, Any], key: str, where: str, kind: type = str) -> Any:
    value = block.get(key)
    if not isinstance(value, kind):
        raise InvalidRequestError(f"{where}.{key}: Field required", param=f"{where}.{key}")
    return value


def _image(block: Mapping[str, Any], where: str) -> Dict[str, Any]:
    source = _need(block, "source", where, dict)
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{_need(source, 'media_type', f'{where}.source')};base64,{_need(source, 'data', f'{where}.source')}"
    elif kind == "url":
        url = _need(source, "url", f"{where}.source")
    else:
        raise InvalidRequestError(f"{where}.source: images are taken as base64 or url sources, not {kind!r}", param=f"{where}.source.type")
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: Mapping[str, Any], where: str) -> Dict[str, Any]:
    source = _need(block, "source", where, dict)
    kind = source.get("type")
    if kind == "base64":
        media = _need(source, "media_type", f"{where}.source")
        data_url = f"data:{media};base64,{_need(source, 'data', f'{where}.source')}"
        return {"type": "file", "file": {"file_data": data_url, "filename": block.get("title") or "document.pdf"}}
    if kind == "text":
        return {"type": "text", "text": _need(source, "data", f"{where}.source")}
    if kind == "content" and isinstance(source.get("content"), (str, list)):
        content = source["content"]
        text = content if isinstance(content, str) else "".join(b.get("text") or "" for b in content if isinstance(b, dict))
        return {"type": "text", "text": text}
    raise InvalidRequestError(f"{where}.source: documents are taken as base64, text or content sources, not {kind!r}", param=f"{where}.source.type")


def _user_part(block: Any, where: str) -> Dict[str, Any]:
    if not isinstance(block, dict):
        raise InvalidRequestError(f"{where}: must be a content block object", param=where)
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": _need(block, "text", where)}
    if kind == "image":
        return _image(block, where)
    if kind == "document":
        return _document(block, where)
    raise InvalidRequestError(f"{where}.type: content blocks of type {kind!r} are not supported here", param=f"{where}.type")


def _flatten(parts: List[Dict[str, Any]]) -> Any:
    """All-text parts become one string, one line each (what every chat upstream takes in a
    tool message); others stay parts."""
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _tool_result(block: Mapping[str, Any], where: str) -> Dict[str, Any]:
    content = block.get("content")
    if content is None:
        result: Any = ""
    elif isinstance(content, str):
        result = content
    elif isinstance(content, list):
        result = _flatten([_user_part(b, f"{where}.content[{k}]") for k, b in enumerate(content)])
    else:
        raise InvalidRequestError(f"{where}.content: must be a string or an array of content blocks", param=f"{where}.content")
    if block.get("is_error") is True:  # chat has no error flag: the model reads it in the text
        result = f"Error: {result}" if isinstance(result, str) else [{"type": "text", "text": "Error:"}, *result]
    return {"role": "tool", "tool_call_id": _need(block, "tool_use_id", where), "content": result}


def _user_turn(content: List[Any], where: str) -> List[Dict[str, Any]]:
    """A user turn -> its tool results (as ``tool`` messages, first, as chat needs them
    right after the assistant's calls), then the rest as one user message."""
    results: List[Dict[str, Any]] = []
    parts: List[Dict[str, Any]] = []
    for k, block in enumerate(content):
        here = f"{where}.content[{k}]"
        if isinstance(block, dict) and block.get("type") == "tool_result":
            results.append(_tool_result(block, here))
        else:
            parts.append(_user_part(block, here))
    if parts:
        single_text = len(parts) == 1 and parts[0]["type"] == "text"
        results.append({"role": "user", "content": parts[0]["text"] if single_text else parts})
    return results


def _assistant_turn(content: List[Any], where: str) -> Dict[str, Any]:
    texts: List[str] = []
    calls: List[Dict[str, Any]] = []
    thinking: List[Dict[str, Any]] = []
    for k, block in enumerate(content):
        here = f"{where}.content[{k}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_need(block, "text", here))
        elif kind == "tool_use":
            arguments = json.dumps(_obj(block.get("input")), ensure_ascii=False)
            calls.append({"id": _need(block, "id", here), "type": "function", "function": {"name": _need(block, "name", here), "arguments": arguments}})
        elif kind == "thinking":
            if block.get("signature"):  # signed thinking goes back (Anthropic upstreams need it with tool calls)
                thinking.append(dict(block))
        elif kind == "redacted_thinking":
            thinking.append(dict(block))
        else:
            raise InvalidRequestError(f"{here}.type: assistant content blocks of type {kind!r} are not supported here", param=f"{here}.type")
    message: Dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def _messages(body: Mapping[str, Any]) -> List[Dict[str, Any]]:
    messages: List[Dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, list):
        system = "\n".join(_need(b, "text", f"system[{k}]") for k, b in enumerate(system) if isinstance(b, dict))
    if system:
        messages.append({"role": "system", "content": system})
    for position, message in enumerate(body["messages"]):
        where = f"messages[{position}]"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequestError(f"{where}.role: must be user or assistant", param=f"{where}.role")
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
        elif not isinstance(content, list):
            raise InvalidRequestError(f"{where}.content: must be a string or an array of content blocks", param=f"{where}.content")
        elif message["role"] == "assistant":
            messages.append(_assistant_turn(content, where))
        else:
            messages += _user_turn(content, where)
    return messages


def _tools(tools: List[Any]) -> List[Dict[str, Any]]:
    out = []
    for position, tool in enumerate(tools):
        where = f"tools[{position}]"
        if not isinstance(tool, dict):
            raise InvalidRequestError(f"{where}: must be a tool object", param=where)
        if tool.get("type") not in (None, "custom"):
            raise InvalidRequestError(f"{where}.type: only custom tools (name, input_schema) are served here, not {tool.get('type')!r}", param=f"{where}.type")
        function: Dict[str, Any] = {"name": _need(tool, "name", where), "parameters": _need(tool, "input_schema", where, dict)}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Mapping[str, Any], chat: Dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool":
        chat["tool_choice"] = {"type": "function", "function": {"name": _need(choice, "name", "tool_choice")}}
    else:
        raise InvalidRequestError("tool_choice.type: must be auto, any, tool or none", param="tool_choice.type")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        chat["parallel_tool_calls"] = False


def _effort(body: Mapping[str, Any]) -> Optional[str]:
    thinking = body.get("thinking") or {}
    config = body.get("output_config") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise InvalidRequestError("thinking.budget_tokens: Field required", param="thinking.budget_tokens")
        return next((effort for limit, effort in _BUDGET_EFFORT if budget <= limit), "high")
    effort = config.get("effort")
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise InvalidRequestError("output_config.effort: must be low, medium, high, xhigh or max", param="output_config.effort")
    return _EFFORTS[effort]


def request_to_chat(body: Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """(chat body, Anthropic-only fields dropped) for a Messages request. Keys neither API
    knows are passed on as they are (provider extras; call options the gateway strips)."""
    check_request(body)
    chat: Dict[str, Any] = {k: v for k, v in body.items() if k not in _KNOWN and k not in ANTHROPIC_ONLY}
    dropped = sorted(k for k in body if k in ANTHROPIC_ONLY)
    chat["model"] = body["model"]
    chat["messages"] = _messages(body)
    chat["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("stop_sequences"):
        chat["stop"] = list(body["stop_sequences"])
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
        if body.get("tool_choice") is not None:
            _tool_choice(body["tool_choice"], chat)
    effort = _effort(body)
    if effort is not None:
        chat["reasoning_effort"] = effort
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if isinstance(fmt, dict):
        if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise InvalidRequestError("output_config.format: must be {type: json_schema, schema: {...}}", param="output_config.format")
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        chat["user"] = user
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat, dropped


# --- response: chat -> Messages ---------------------------------------------------------------------


def new_id(prefix: str = "msg") -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _count(value: Any) -> int:
    return value if _is_int(value) else 0


def usage_to_anthropic(usage: Any) -> Dict[str, Any]:
    """Chat usage -> Anthropic's: ``input_tokens`` counts neither cache reads nor writes."""
    if isinstance(usage, OpenAIObject):
        usage = usage.to_dict()
    usage = usage if isinstance(usage, Mapping) else {}
    details = _obj(usage.get("prompt_tokens_details"))
    cached = _count(details.get("cached_tokens")) or _count(usage.get("cache_read_input_tokens"))
    created = _count(usage.get("cache_creation_input_tokens"))
    return {
        "input_tokens": max(_count(usage.get("prompt_tokens")) - cached - created, 0),
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": cached,
    }


def stop_reason_of(finish_reason: Any, has_tool_calls: bool, matched: Any = None, stop_sequences: Sequence[str] = ()) -> Tuple[str, Optional[str]]:
    """(stop_reason, stop_sequence) for a chat ``finish_reason``; ``matched`` is the stop
    string an upstream reported (a choice's ``stop_reason`` extra), if any."""
    if finish_reason == "length":
        return "max_tokens", None
    if finish_reason == "content_filter":
        return "refusal", None
    if has_tool_calls or finish_reason in ("tool_calls", "function_call"):
        return "tool_use", None
    if isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    return "end_turn", None


def _tool_input(arguments: Any) -> Dict[str, Any]:
    try:
        value = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _thinking_blocks(message: Mapping[str, Any]) -> List[Dict[str, Any]]:
    blocks = [b for b in message.get("thinking_blocks") or () if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]
    if blocks:
        return [{**b, "signature": b.get("signature") or ""} if b["type"] == "thinking" else dict(b) for b in blocks]
    for key in ("reasoning_content", "reasoning"):
        text = message.get(key)
        if isinstance(text, str) and text:
            return [{"type": "thinking", "thinking": text, "signature": ""}]
    return []


def completion_to_message(
    completion: Mapping[str, Any], model: str, *, message_id: Optional[str] = None, stop_sequences: Sequence[str] = ()
) -> Dict[str, Any]:
    """A chat completion (JSON) -> an Anthropic ``message`` naming ``model``."""
    choices = completion.get("choices") or [{}]
    choice = _obj(choices[0])
    message = _obj(choice.get("message"))
    content: List[Dict[str, Any]] = _thinking_blocks(message)
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict) and p.get("type") == "text")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    for call in calls:
        function = _obj(call.get("function"))
        content.append({"type": "tool_use", "id": call.get("id") or new_id("toolu"), "name": function.get("name") or "", "input": _tool_input(function.get("arguments"))})
    if not any(b["type"] in ("text", "tool_use") for b in content):
        content.append({"type": "text", "text": ""})
    stop_reason, stop_sequence = stop_reason_of(choice.get("finish_reason"), bool(calls), choice.get("stop_reason"), stop_sequences)
    return {
        "id": message_id or new_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_to_anthropic(completion.get("usage")),
    }


# --- stream: chat chunks -> Messages events -----------------------------------------------------------


def _str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


class MessageStreamTranslator:
    """Chat chunks -> Anthropic's stream events for one message.

    ``start()``: message_start and a ping; ``feed(chunk)``: the content-block events of
    one chunk (a block opens when its kind starts and closes when another begins);
    ``finish()``: the last content_block_stop, message_delta (stop_reason, usage) and
    message_stop; ``fail(status, message)``: the ``error`` event.
    """

    def __init__(self, model: str, *, message_id: Optional[str] = None, stop_sequences: Sequence[str] = ()) -> None:
        self.model = model
        self.message_id = message_id or new_id()
        self._stop_sequences = tuple(stop_sequences)
        self._index = -1
        self._open: Optional[str] = None
        self._tools: Dict[Any, int] = {}
        self._last_tool: Optional[int] = None
        self._thinking_seen = 0
        self._finish_reason: Optional[str] = None
        self._matched: Any = None
        self._usage: Any = None

    def start(self) -> List[Dict[str, Any]]:
        message: Dict[str, Any] = {
            "id": self.message_id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
        }  # fmt: skip
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _begin(self, kind: str, block: Dict[str, Any], events: List[Dict[str, Any]]) -> int:
        self._close(events)
        self._index += 1
        self._open = kind
        events.append({"type": "content_block_start", "index": self._index, "content_block": block})
        return self._index

    def _close(self, events: List[Dict[str, Any]]) -> None:
        if self._open is not None:
            events.append({"type": "content_block_stop", "index": self._index})
            self._open = None

    def _delta(self, index: int, delta: Dict[str, Any], events: List[Dict[str, Any]]) -> None:
        events.append({"type": "content_block_delta", "index": index, "delta": delta})

    def feed(self, chunk: Any) -> List[Dict[str, Any]]:
        if isinstance(chunk, dict):
            chunk = ChatCompletionChunk.from_dict(chunk)
        events: List[Dict[str, Any]] = []
        if chunk.usage:
            self._usage = chunk.usage
        for choice in chunk.choices or ():
            if choice.index not in (0, NOTSET):
                continue
            delta = choice.delta
            if delta:
                self._thinking(delta, events)
                text = _str(delta.content)
                if text:
                    if self._open != "text":
                        self._begin("text", {"type": "text", "text": ""}, events)
                    self._delta(self._index, {"type": "text_delta", "text": text}, events)
                for call in delta.tool_calls or ():
                    self._tool(call, events)
            if choice.finish_reason:
                self._finish_reason = choice.finish_reason
                self._matched = choice.extra.get("stop_reason")
        return events

    def _thinking(self, delta: Any, events: List[Dict[str, Any]]) -> None:
        text = _str(delta.reasoning_content) or _str(delta.extra.get("reasoning"))
        if text:
            if self._open != "thinking":
                self._begin("thinking", {"type": "thinking", "thinking": "", "signature": ""}, events)
            self._delta(self._index, {"type": "thinking_delta", "thinking": text}, events)
        blocks = delta.extra.get("thinking_blocks")
        if isinstance(blocks, list):  # the blocks so far, signed (an Anthropic upstream's)
            for block in blocks[self._thinking_seen :]:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "thinking" and block.get("signature") and self._open == "thinking":
                    self._delta(self._index, {"type": "signature_delta", "signature": block["signature"]}, events)
                elif block.get("type") == "redacted_thinking":
                    self._begin("redacted_thinking", dict(block), events)
                    self._close(events)
            self._thinking_seen = len(blocks)

    def _tool(self, call: Any, events: List[Dict[str, Any]]) -> None:
        call_id = _str(call.id)
        key: Any = call.index if isinstance(call.index, int) else call_id
        index = self._tools.get(key) if key is not None else self._last_tool
        function = call.function or None
        if index is None:
            name = (_str(function.name) if function is not None else None) or ""
            index = self._begin("tool_use", {"type": "tool_use", "id": call_id or new_id("toolu"), "name": name, "input": {}}, events)
            self._tools[key if key is not None else -1 - index] = index
        self._last_tool = index
        arguments = _str(function.arguments) if function is not None else None
        if arguments:
            self._delta(index, {"type": "input_json_delta", "partial_json": arguments}, events)

    def finish(self) -> List[Dict[str, Any]]:
        events: List[Dict[str, Any]] = []
        if self._index < 0:  # an empty answer is an empty text block, as without streaming
            self._begin("text", {"type": "text", "text": ""}, events)
        self._close(events)
        stop_reason, stop_sequence = stop_reason_of(self._finish_reason, bool(self._tools), self._matched, self._stop_sequences)
        events.append({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence}, "usage": usage_to_anthropic(self._usage)})
        events.append({"type": "message_stop"})
        return events

    @staticmethod
    def fail(status: int, message: str) -> List[Dict[str, Any]]:
        return [{"type": "error", "error": {"type": error_type(status), "message": message}}]


# --- errors -----------------------------------------------------------------------------------------


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, request_id: Optional[str] = None) -> Dict[str, Any]:
    """Anthropic's error envelope for ``status``."""
    body: Dict[str, Any] = {"type": "error", "error": {"type": error_type(status), "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body
