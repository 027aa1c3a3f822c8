"""modelport provider ``ollama`` (alias ``ollama_chat``): Ollama's native API.

Both names use ``POST {base}/api/chat`` (LiteLLM's ``ollama/`` prefix used ``/api/generate``;
here ``ollama/`` and ``ollama_chat/`` are the same provider) and ``POST {base}/api/embed``.
The base URL is ``api_base``, ``OLLAMA_API_BASE`` or ``http://localhost:11434``; Ollama needs
no key, but a key (``api_key`` or ``OLLAMA_API_KEY``) is sent as ``Authorization: Bearer`` for
proxies and ollama.com. What differs from OpenAI, and so what this module maps:

- request: sampling parameters live under ``options`` (``max_tokens`` /
  ``max_completion_tokens`` as ``num_predict``, ``stop`` always a list); Ollama's own option
  names given as keywords (``top_k=``, ``num_ctx=``, ``repeat_penalty=``...) and an
  ``options=`` dict join them. ``response_format`` becomes ``format`` (``"json"`` or the
  schema), ``reasoning_effort`` becomes ``think`` (``"none"`` is false, other values true);
  a native ``format=`` / ``think=`` keyword wins. Messages carry plain text (text parts are
  joined with newlines) and base64 ``images`` taken from ``data:`` URLs (Ollama cannot
  fetch http URLs); developer messages are system messages; assistant tool calls carry
  their arguments as JSON objects; tool results carry the ``tool_name`` of the call they
  answer. Ollama returns one choice and has no ``tool_choice``: ``n`` > 1 and
  ``tool_choice`` other than ``auto`` / ``none`` (``none`` leaves the tools out) raise
  ``InvalidRequestError``. ``stream`` is always sent (Ollama streams by default). Other
  keywords (``keep_alive``, ``think``, ``format``...) are top-level fields, sent as they are.
- response: Ollama has no ids: the completion id is ``chatcmpl-ollama-`` and 24 hex digits
  of the SHA-256 of the response body (of the first line for a stream); tool calls get
  ``call_<index>_<8 hex digits of SHA-256(name + arguments)>`` and their arguments as JSON
  text. ``finish_reason`` is ``tool_calls`` when the answer has tool calls, else
  ``done_reason`` (``stop``, ``length``, others as they are). ``thinking`` is
  ``reasoning_content``; ``prompt_eval_count`` / ``eval_count`` are the usage;
  ``created_at`` (RFC 3339) becomes the Unix ``created``; timing fields
  (``total_duration``...) stay as extra fields.
- stream: NDJSON. Each line is a chunk; the ``"done": true`` line gives the finish chunk
  and a usage chunk with empty ``choices``; an ``{"error": ...}`` line is raised typed. A
  small decoder over ``NDJSONDecoder`` stamps every line with the stream's id and whether
  tool calls were seen, which one line alone cannot tell.
- errors: ``{"error": "text"}`` with the HTTP status; 404 hints at ``ollama pull``; a
  context-length message is ``ContextWindowExceededError``.
"""

from __future__ import annotations

import base64
import calendar
import functools
import hashlib
import json
import re
import struct
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

from modelport.provider import (
    IGNORE_EVENT,
    Call,
    Endpoint,
    InvalidRequestError,
    NDJSONDecoder,
    ProviderInfo,
    StreamEvent,
    WireRequest,
    WireResponse,
    end_of_stream,
    errors,
    hookimpl,
    openai,
)

__all__ = ["DEFAULT_BASE", "PATHS", "OPTION_NAMES", "ID_PREFIX", "OllamaStreamDecoder", "tool_call_id"]

DEFAULT_BASE = "http://localhost:11434"
PATHS = {"chat": "/api/chat", "embedding": "/api/embed"}
#: Ollama's runtime options (Modelfile parameters): as keywords they go under "options".
OPTION_NAMES = frozenset(
    {
        "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p", "tfs_z", "repeat_last_n",
        "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty", "mirostat", "mirostat_tau",
        "mirostat_eta", "penalize_newline", "stop", "numa", "num_ctx", "num_batch", "num_gpu", "main_gpu",
        "low_vram", "vocab_only", "use_mmap", "use_mlock", "num_thread",
    }
)  # fmt: skip
#: The OpenAI parameters this provider maps (the core refuses the others, or drops them).
PARAMS = (
    "messages", "stream", "stream_options", "temperature", "top_p", "seed", "stop", "max_tokens",
    "max_completion_tokens", "frequency_penalty", "presence_penalty", "response_format", "tools",
    "tool_choice", "reasoning_effort", "n", "input", "dimensions", "encoding_format",
)  # fmt: skip
_SAME_NAME = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")
_CONSUMED = frozenset({"model", "options", *PARAMS, *OPTION_NAMES})
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
#: Response fields read into OpenAI's shape; the others (timings...) are kept as extras.
_READ = frozenset({"model", "created_at", "message", "done", "done_reason", "prompt_eval_count", "eval_count"})
_OPENAI_TOP = frozenset({"id", "object", "created", "model", "choices", "usage"})
ID_PREFIX = "chatcmpl-ollama-"
_CHUNK = "chat.completion.chunk"
_JSON = {"content-type": "application/json"}
_DATA_URL = re.compile(r"data:[^,]*;base64,(.*)", re.DOTALL)
_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:([Zz])|([+-])(\d\d):?(\d\d))?")
_TOOL_CALLS = re.compile(r'"tool_calls"\s*:\s*\[\s*\{')
_CONTEXT = re.compile(
    r"context (?:length|window|size)|exceeds? (?:the )?(?:maximum )?context|prompt is too long|too many tokens", re.I
)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="ollama",
        aliases=("ollama_chat",),
        api_base=DEFAULT_BASE,
        api_base_env=("OLLAMA_API_BASE",),
        api_key_env=("OLLAMA_API_KEY",),
        operations={"chat", "embedding"},
        params=PARAMS,
        stream_framing="ndjson",
        description="Ollama's native API (/api/chat, /api/embed; default http://localhost:11434)",
    )


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    endpoint = openai.resolve_endpoint(call)  # api_base, OLLAMA_API_BASE, the default; Bearer with a key
    base = endpoint.base_url.rstrip("/")
    if base.endswith("/api"):  # the server root is wanted: the paths start with /api
        base = base[: -len("/api")]
    return Endpoint(base_url=base, path=PATHS[call.operation], headers=endpoint.headers)


# --- requests ----------------------------------------------------------------------------


def _reject(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"ollama: {message}", param=param)


def _content(content: Any, where: str) -> Tuple[str, List[str]]:
    """Message content -> (text, base64 images)."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise _reject(f"{where}.content must be a string or a list of parts", f"{where}.content")
    texts: List[str] = []
    images: List[str] = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text") or ""))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            match = _DATA_URL.fullmatch(url) if isinstance(url, str) else None
            if match is None:
                raise _reject(
                    f"{where}.content[{number}]: Ollama takes images as base64 only, not URLs it would fetch;"
                    " download the image and pass it as a data URL (data:image/png;base64,...)",
                    f"{where}.content",
                )
            images.append(match.group(1))
        else:
            raise _reject(
                f"{where}.content[{number}]: Ollama's chat reads text and image_url parts, not {kind!r}",
                f"{where}.content",
            )
    return "\n".join(texts), images


def _wire_tool_call(tool_call: Any, where: str) -> Tuple[str, Dict[str, Any]]:
    function = tool_call.get("function") if isinstance(tool_call, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise _reject(f"{where} needs function.name", where)
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise _reject(f"{where}.function.arguments is not JSON: {arguments[:200]!r}", where)
    if not isinstance(arguments, dict):
        raise _reject(f"{where}.function.arguments must be a JSON object (Ollama sends objects)", where)
    return str(tool_call.get("id") or ""), {"function": {"name": function["name"], "arguments": arguments}}


def _messages(messages: Any) -> List[Dict[str, Any]]:
    if not isinstance(messages, list):
        raise _reject("messages must be a list", "messages")
    names: Dict[str, str] = {}  # tool_call_id -> function name, for the tool results
    out: List[Dict[str, Any]] = []
    for position, message in enumerate(messages):
        where = f"messages[{position}]"
        role = _ROLES.get(str(message.get("role"))) if isinstance(message, dict) else None
        if role is None:
            raise _reject(f"{where}: Ollama knows the roles system, user, assistant and tool", f"{where}.role")
        text, images = _content(message.get("content"), where)
        wire: Dict[str, Any] = {"role": role, "content": text}
        if images:
            wire["images"] = images
        if role == "assistant":
            if message.get("reasoning_content"):
                wire["thinking"] = message["reasoning_content"]
            calls = []
            for number, tool_call in enumerate(message.get("tool_calls") or ()):
                call_id, wire_call = _wire_tool_call(tool_call, f"{where}.tool_calls[{number}]")
                if call_id:
                    names[call_id] = wire_call["function"]["name"]
                calls.append(wire_call)
            if calls:
                wire["tool_calls"] = calls
        elif role == "tool":
            name = names.get(str(message.get("tool_call_id") or "")) or message.get("name")
            if name:
                wire["tool_name"] = name
        out.append(wire)
    return out


def _format(response_format: Any) -> Any:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if schema is not None else "json"
    raise _reject(f"response_format must be text, json_object or json_schema, got {response_format!r}", "response_format")


def _given_options(body: Mapping[str, Any]) -> Dict[str, Any]:
    """The caller's ``options=`` dict, then Ollama option names given as keywords."""
    given = body.get("options")
    if given is not None and not isinstance(given, dict):
        raise _reject(f"options must be an object of Ollama options, got {type(given).__name__}", "options")
    return {**(given or {}), **{key: value for key, value in body.items() if key in OPTION_NAMES}}


def _options(body: Mapping[str, Any]) -> Dict[str, Any]:
    options = _given_options(body)
    for name in _SAME_NAME:
        if body.get(name) is not None:
            options[name] = body[name]
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None:
        options["num_predict"] = limit
    return options


def _chat_body(call: Call) -> Dict[str, Any]:
    body = call.body
    if body.get("n") not in (None, 1):
        raise _reject(f"Ollama returns one choice per request; n must be 1, got {body['n']!r}", "n")
    tool_choice = body.get("tool_choice")
    if tool_choice not in (None, "auto", "none"):
        raise _reject(
            f"Ollama has no tool_choice (the model decides, as with 'auto'); use 'auto' or 'none', got {tool_choice!r}",
            "tool_choice",
        )
    wire: Dict[str, Any] = {"model": call.model, "messages": _messages(body.get("messages")), "stream": call.stream}
    options = _options(body)
    if options:
        wire["options"] = options
    if body.get("tools") and tool_choice != "none":
        wire["tools"] = body["tools"]
    if body.get("response_format") is not None:
        fmt = _format(body["response_format"])
        if fmt is not None:
            wire["format"] = fmt
    effort = body.get("reasoning_effort")
    if effort is not None:
        wire["think"] = effort != "none"
    # Keywords that are not OpenAI parameters nor options are Ollama's top-level fields
    # (keep_alive, think, format, ...): sent as they are, and they win over the mapped ones.
    wire.update({key: value for key, value in body.items() if key not in _CONSUMED})
    return wire


def _embed_body(call: Call) -> Dict[str, Any]:
    body = call.body
    text = body.get("input")
    if not isinstance(text, str) and not (isinstance(text, list) and all(isinstance(item, str) for item in text)):
        raise _reject("input must be a string or a list of strings (Ollama does not take token ids)", "input")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise _reject(f"encoding_format must be float or base64, got {body['encoding_format']!r}", "encoding_format")
    wire: Dict[str, Any] = {"model": call.model, "input": text}
    if body.get("dimensions") is not None:
        wire["dimensions"] = body["dimensions"]
    options = _given_options(body)
    if options:
        wire["options"] = options
    wire.update({key: value for key, value in body.items() if key not in _CONSUMED})
    return wire


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> WireRequest:
    wire = _embed_body(call) if call.operation == "embedding" else _chat_body(call)
    return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=wire)


# --- responses ---------------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def tool_call_id(index: int, name: str, arguments: str) -> str:
    """The id given to an Ollama tool call (Ollama has none; OpenAI clients need one)."""
    return f"call_{index}_{_digest(name + arguments)[:8]}"


def _timestamp(value: Any) -> int:
    """RFC 3339 (``2024-07-22T20:33:28.123648Z``, ``...-07:00``) -> Unix seconds; 0 if unreadable.

    Every stream line carries one; they differ in their fraction only, so the parse is
    cached on the text without its fraction (per line: a slice, a strip and a lookup).
    """
    if type(value) is not str:
        return 0
    return _parsed_timestamp(value[:19] + value[19:].lstrip(".0123456789"))


@functools.lru_cache(maxsize=256)
def _parsed_timestamp(value: str) -> int:
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return 0
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if match.group(8):
        offset = int(match.group(9)) * 3600 + int(match.group(10)) * 60
        seconds -= offset if match.group(8) == "+" else -offset
    return seconds


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(data: Mapping[str, Any]) -> Optional[Dict[str, int]]:
    if data.get("prompt_eval_count") is None and data.get("eval_count") is None:
        return None
    prompt, completion = _count(data.get("prompt_eval_count")), _count(data.get("eval_count"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish(reason: Any) -> Any:
    return reason if isinstance(reason, str) and reason else "stop"


def _openai_tool_calls(calls: Any, indexed: bool) -> List[Dict[str, Any]]:
    out = []
    for position, tool_call in enumerate(calls if isinstance(calls, list) else ()):
        function = tool_call.get("function") if isinstance(tool_call, dict) else None
        function = function if isinstance(function, dict) else {}
        index = function.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else position
        name = str(function.get("name") or "")
        arguments = function.get("arguments")
        text = arguments if isinstance(arguments, str) else _dumps(arguments if arguments is not None else {})
        given = tool_call.get("id") if isinstance(tool_call, dict) else None
        converted = {
            "id": given if isinstance(given, str) and given else tool_call_id(index, name, text),
            "type": "function",
            "function": {"name": name, "arguments": text},
        }
        out.append({"index": index, **converted} if indexed else converted)
    return out


def _message_fields(message: Mapping[str, Any], indexed: bool) -> Dict[str, Any]:
    """An Ollama message -> OpenAI message (or delta) fields; unknown fields are kept."""
    fields: Dict[str, Any] = {}
    for key, value in message.items():
        if key == "thinking":
            fields["reasoning_content"] = value
        elif key == "tool_calls":
            if value:
                fields["tool_calls"] = _openai_tool_calls(value, indexed)
        elif key == "images" and not value:
            continue  # older servers answer "images": null
        else:
            fields[key] = value
    return fields


_PLAIN_MESSAGE = frozenset({"role", "content"})


def _extras(data: Mapping[str, Any]) -> Dict[str, Any]:
    if data.keys() <= _READ:
        return {}
    return {key: value for key, value in data.items() if key not in _READ}


def _chat_result(call: Call, response: WireResponse, data: Dict[str, Any]) -> Dict[str, Any]:
    message = data.get("message")
    if not isinstance(message, dict):
        raise openai.malformed_response(call, response, f"an Ollama chat answer needs a message: {response.text[:200]!r}")
    fields = _message_fields(message, indexed=False)
    result_message = {**fields, "role": fields.get("role") or "assistant", "content": fields.get("content"), "refusal": None}
    finish = "tool_calls" if fields.get("tool_calls") else _finish(data.get("done_reason"))
    choice = {"index": 0, "message": result_message, "finish_reason": finish, "logprobs": None}
    return {
        **_extras(data),
        "id": ID_PREFIX + _digest(response.text)[:24],
        "object": "chat.completion",
        "created": _timestamp(data.get("created_at")),
        "model": data.get("model") or call.model,
        "choices": [choice],
        "usage": _usage(data),
    }


def _embedding_result(call: Call, data: Dict[str, Any]) -> Dict[str, Any]:
    vectors = data.get("embeddings")
    as_base64 = call.body.get("encoding_format") == "base64"
    items = []
    for index, vector in enumerate(vectors if isinstance(vectors, list) else ()):
        if as_base64 and isinstance(vector, list):  # OpenAI's base64: little-endian float32
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        items.append({"object": "embedding", "index": index, "embedding": vector})
    prompt = _count(data.get("prompt_eval_count"))
    extras = {key: value for key, value in data.items() if key not in ("model", "embeddings", "prompt_eval_count")}
    usage = {"prompt_tokens": prompt, "total_tokens": prompt}
    return {**extras, "object": "list", "model": data.get("model") or call.model, "data": items, "usage": usage}


@hookimpl
def transform_response(call: Call, response: WireResponse) -> Dict[str, Any]:
    data = openai.parse_response(call, response)  # the JSON object, or MalformedResponseError
    if call.operation == "embedding":
        return _embedding_result(call, data)
    return _chat_result(call, response, data)


# --- streams -----------------------------------------------------------------------------


class OllamaStreamDecoder:
    """NDJSON lines, each stamped with what only the whole stream knows.

    ``event.id`` is the stream's completion id (from its first line) and ``event.event``
    is ``"tool_calls"`` once a line has carried tool calls, so the last line can report
    ``finish_reason="tool_calls"``.
    """

    __slots__ = ("_lines", "_id", "_tools")

    def __init__(self) -> None:
        self._lines = NDJSONDecoder()
        self._id = ""
        self._tools = False

    @property
    def has_partial_line(self) -> bool:
        return self._lines.has_partial_line

    def feed(self, chunk: bytes) -> List[StreamEvent]:
        return self._stamp(self._lines.feed(chunk))

    def flush(self) -> List[StreamEvent]:
        return self._stamp(self._lines.flush())

    def _stamp(self, events: List[StreamEvent]) -> List[StreamEvent]:
        for event in events:
            data = event.data if isinstance(event.data, str) else event.data.decode("utf-8", errors="replace")
            if not self._id:
                self._id = ID_PREFIX + _digest(data)[:24]
            if not self._tools and '"tool_calls"' in data and _TOOL_CALLS.search(data):
                self._tools = True
            event.id = self._id
            event.event = "tool_calls" if self._tools else ""
        return events


@hookimpl
def stream_decoder() -> OllamaStreamDecoder:
    return OllamaStreamDecoder()


def _error_class(text: str, status: int) -> Type[errors.ProviderError]:
    if _CONTEXT.search(text):
        return errors.ContextWindowExceededError
    return errors.error_class_for_status(status)


def _stream_error(call: Call, line: Dict[str, Any], raw: str) -> errors.ProviderError:
    """An ``{"error": "text"}`` line: InternalServerError unless the text says otherwise."""
    text = line["error"] if isinstance(line["error"], str) else json.dumps(line["error"])
    status = 404 if "not found" in text.lower() else 500
    cls = _error_class(text, status)
    if cls is errors.ContextWindowExceededError:
        status = errors.ContextWindowExceededError.status or 400
    return cls(text, status=status, provider=call.provider, model=call.model, body=raw)


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    data = event.data
    if not isinstance(data, str):
        data = data.decode("utf-8", "replace")
    try:
        line = openai.loads_event(data)
    except ValueError:
        if not data or data.isspace():
            return IGNORE_EVENT
        line = None
    if type(line) is not dict:
        raise errors.MalformedStreamError(
            f"an Ollama stream line is not a JSON object: {data[:200]!r}", provider=call.provider, model=call.model, body=data
        )
    if "error" in line:  # an error reported in the middle of the stream
        raise _stream_error(call, line, data)
    message = line.get("message")
    if type(message) is dict and not line.get("done") and message.keys() <= _PLAIN_MESSAGE and line.keys() <= _READ:
        # The common line: role and content, nothing to map, one chunk.
        return {"id": event.id or ID_PREFIX + _digest(data)[:24], "object": _CHUNK, "created": _timestamp(line.get("created_at")),
                "model": line.get("model") or call.model,
                "choices": [{"index": 0, "delta": message, "logprobs": None, "finish_reason": None}]}  # fmt: skip
    head = {
        "id": event.id or ID_PREFIX + _digest(data)[:24],
        "object": _CHUNK,
        "created": _timestamp(line.get("created_at")),
        "model": line.get("model") or call.model,
    }
    if not line.keys() <= _READ:
        head = {**_extras(line), **head}
    if isinstance(message, dict) and message.keys() <= _PLAIN_MESSAGE:
        delta: Dict[str, Any] = message  # the common line: role and content, nothing to map
    else:
        delta = _message_fields(message if isinstance(message, dict) else {}, indexed=True)
    if not line.get("done"):
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
    # The last line: what it still says, then the finish reason and the usage.
    chunks = []
    if delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"):
        chunks.append({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]})
    tools = event.event == "tool_calls" or bool(delta.get("tool_calls"))
    finish = "tool_calls" if tools else _finish(line.get("done_reason"))
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]})
    usage = _usage(line)
    if usage is not None:
        chunks.append({**head, "choices": [], "usage": usage})
    return end_of_stream(*chunks)


# --- errors ------------------------------------------------------------------------------


@hookimpl
def map_error(call: Call, response: WireResponse) -> errors.ProviderError:
    body = response.json_or_none()
    native = isinstance(body, dict) and isinstance(body.get("error"), str)  # Ollama's {"error": "text"}
    fields = openai.error_fields(response)
    if response.status == 404:
        if native:
            fields["message"] += f" (hint: pull the model on the Ollama host: `ollama pull {call.model}`)"
        else:
            url = response.request.url if response.request is not None else "the URL"
            fields["message"] += (
                f" (hint: {url} is not an Ollama API route; api_base is the server root,"
                f" e.g. {DEFAULT_BASE}, without /api or /v1)"
            )
    return openai.build_error(call, response, _error_class(fields["message"], response.status), fields=fields)


# --- encoders: OpenAI shapes -> Ollama's wire (mock_response and the conformance kit) ----


def _rfc3339(created: Any) -> str:
    seconds = created if isinstance(created, int) and not isinstance(created, bool) else 0
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _ollama_message(fields: Mapping[str, Any]) -> Dict[str, Any]:
    """OpenAI message (or delta) fields -> an Ollama message; unknown fields are kept."""
    message: Dict[str, Any] = {}
    for key, value in fields.items():
        if key == "reasoning_content":
            message["thinking"] = value
        elif key == "tool_calls":
            calls = []
            for position, tool_call in enumerate(value or ()):
                function = tool_call.get("function") or {}
                arguments = function.get("arguments")
                try:
                    parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
                except ValueError:
                    parsed = arguments  # a piece of the arguments: only a string can carry it
                index = tool_call.get("index", position)
                calls.append({"function": {"index": index, "name": function.get("name"), "arguments": parsed}})
            message["tool_calls"] = calls
        elif key == "refusal" or (key == "content" and value is None):
            continue
        else:
            message[key] = value
    return message


def _ollama_head(payload: Mapping[str, Any]) -> Dict[str, Any]:
    extras = {key: value for key, value in payload.items() if key not in _OPENAI_TOP}
    return {**extras, "model": payload.get("model"), "created_at": _rfc3339(payload.get("created"))}


def _ollama_counts(usage: Any) -> Dict[str, Any]:
    if not isinstance(usage, dict):
        return {}
    return {"prompt_eval_count": usage.get("prompt_tokens", 0), "eval_count": usage.get("completion_tokens", 0)}


def _done_reason(reason: Any, tools: bool) -> str:
    if reason == "tool_calls" and tools:
        return "stop"  # Ollama says stop and carries the calls
    return reason if isinstance(reason, str) else "stop"


@hookimpl
def encode_response(call: Call, result: Dict[str, Any]) -> WireResponse:
    if call.operation == "embedding":
        data = sorted(result.get("data") or (), key=lambda item: int(item.get("index", 0)))
        body: Dict[str, Any] = {key: value for key, value in result.items() if key not in ("object", "model", "data", "usage")}
        body.update({"model": result.get("model"), "embeddings": [item.get("embedding") for item in data]})
        body["prompt_eval_count"] = (result.get("usage") or {}).get("prompt_tokens", 0)
        return WireResponse(200, dict(_JSON), _dumps(body).encode("utf-8"))
    choice = result["choices"][0]  # Ollama answers one choice: a result with several is written as its first
    message = choice.get("message") or {}
    body = {
        **_ollama_head(result),
        "message": {"role": "assistant", **_ollama_message(message)},
        "done": True,
        "done_reason": _done_reason(choice.get("finish_reason"), bool(message.get("tool_calls"))),
        **_ollama_counts(result.get("usage")),
    }
    return WireResponse(200, dict(_JSON), _dumps(body).encode("utf-8"))


@hookimpl
def encode_stream(call: Call, chunks: List[Dict[str, Any]]) -> bytes:
    lines: List[Dict[str, Any]] = []
    done: Dict[str, Any] = {"done": True}
    reason: Any = "stop"
    tools = False
    for chunk in chunks:
        head = _ollama_head(chunk)
        choices = chunk.get("choices") or []
        if not choices:  # the usage trailer rides on the done line
            done.update({**head, **_ollama_counts(chunk.get("usage"))})
            continue
        for choice in choices[:1]:  # one choice on Ollama's wire
            delta = choice.get("delta") or {}
            tools = tools or bool(delta.get("tool_calls"))
            if choice.get("finish_reason") is None or delta:
                lines.append({**head, "message": _ollama_message(delta), "done": False})
            if choice.get("finish_reason") is not None:
                reason = choice["finish_reason"]
                done.update(head)
    done["done_reason"] = _done_reason(reason, tools)
    lines.append({**done, "done": True})
    return b"".join(_dumps(line).encode("utf-8") + b"\n" for line in lines)


@hookimpl
def encode_error(call: Call, status: int, message: str) -> WireResponse:
    return WireResponse(status, dict(_JSON), _dumps({"error": message}).encode("utf-8"))
