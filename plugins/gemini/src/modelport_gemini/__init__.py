"""modelport provider ``gemini``: the Google Gemini API on its native wire (``generateContent``).

Why a plugin of its own: Gemini's REST API shares no payload shape with OpenAI's, so every
decoding hook is implemented here with the encoder that inverts it (``mock_response`` and
the conformance kit then run this module's decoding). What differs, and how it is mapped:

- endpoint: ``POST {base}/models/{model}:generateContent``; streams go to
  ``:streamGenerateContent?alt=sse``; embeddings to ``:batchEmbedContents``. The key is
  sent in the ``x-goog-api-key`` header (never ``Authorization``); a model may be named
  with or without its ``models/`` prefix (``tunedModels/...`` is used as given).
- request: ``contents`` of ``user`` / ``model`` turns (consecutive turns of one role are
  merged); system and developer messages become ``systemInstruction``; images, audio,
  video and files become ``inline_data`` (data URLs) or ``file_data`` (URLs, file ids);
  assistant tool calls become ``functionCall`` parts and tool messages ``functionResponse``
  parts of a ``user`` turn (named after the assistant tool call they answer); sampling
  options go under ``generationConfig``; JSON schemas (response format, tool parameters)
  are cut down to the subset Gemini accepts; ``reasoning_effort`` becomes a thinking
  budget. Keyword arguments that are not OpenAI parameters are Gemini fields, sent at the
  top level (``safetySettings=...``); ``top_k`` and a ``generationConfig`` dict are merged
  into ``generationConfig``.
- response: candidates become choices; ``thought`` parts are ``reasoning_content``;
  function calls are tool calls (ids ``call_<candidate>_<n>`` unless Gemini gives one,
  a thought signature rides along as ``extra_content.google.thought_signature`` and is
  sent back); finish reasons and usage are translated; a blocked prompt raises
  ``ContentFilterError``. Gemini has no ``created``: it is read from the response's
  ``Date`` header (0 in streams, whose events carry no time).
- stream: SSE whose events are whole ``GenerateContentResponse`` objects and no end marker:
  the event whose candidates carry ``finishReason`` gives the finish chunk and the usage
  chunk and ends the stream, so a body cut before it is ``StreamInterruptedError``. The
  events are independent, so the stream decoder counts the function calls each candidate
  streamed before (tool-call indexes, ids and the ``tool_calls`` finish reason need it).
- errors: Google's ``{"error": {"code", "message", "status", "details"}}``; a retry delay in
  a ``RetryInfo`` detail is ``retry_after``, ``API_KEY_INVALID`` (a 400) is an
  authentication error, a prompt over the token limit is ``ContextWindowExceededError``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import struct
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type

from modelport.provider import (
    IGNORE_EVENT,
    Call,
    Endpoint,
    InvalidRequestError,
    ProviderInfo,
    SSEDecoder,
    StreamEvent,
    WireRequest,
    WireResponse,
    end_of_stream,
    errors,
    hookimpl,
    openai,
)

__all__ = [
    "DEFAULT_BASE",
    "KEY_HEADER",
    "PARAMS",
    "REASONING_BUDGETS",
    "SCHEMA_DROPPED_KEYS",
    "FINISH_REASONS",
    "GeminiStreamDecoder",
    "gemini_schema",
]

DEFAULT_BASE = "https://generativelanguage.googleapis.com/v1beta"
KEY_HEADER = "x-goog-api-key"
#: The OpenAI parameters Gemini has (chat and embeddings); the core refuses the others.
PARAMS = (
    "messages", "stream", "stream_options", "temperature", "top_p", "n", "max_tokens",
    "max_completion_tokens", "stop", "seed", "presence_penalty", "frequency_penalty",
    "response_format", "tools", "tool_choice", "reasoning_effort",
    "input", "dimensions", "encoding_format",
)  # fmt: skip
#: ``reasoning_effort`` -> ``thinkingConfig.thinkingBudget`` (tokens).
REASONING_BUDGETS = {"none": 0, "low": 1024, "medium": 8192, "high": 24576}
#: JSON-schema keywords Gemini's ``Schema`` rejects; removed at every level ($ref to
#: ``#/$defs/...`` / ``#/definitions/...`` is inlined first).
SCHEMA_DROPPED_KEYS = frozenset({"additionalProperties", "$schema", "$defs", "definitions", "default", "examples", "title"})
#: Gemini finish reasons -> OpenAI's (``STOP`` with function calls is ``tool_calls``;
#: reasons not listed read as ``stop``).
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_GEMINI_FINISH = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}

_CONSUMED = frozenset(
    {
        "model", "messages", "stream", "stream_options", "temperature", "top_p", "top_k", "n",
        "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
        "frequency_penalty", "response_format", "tools", "tool_choice", "reasoning_effort",
    }
)  # fmt: skip
_EMBEDDING_CONSUMED = frozenset({"model", "input", "dimensions", "encoding_format"})
_CONFIG_NAMES = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
#: File extensions -> MIME types Gemini reads (for ``file_data`` URLs).
_MIME_TYPES = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
    "gif": "image/gif", "heic": "image/heic", "heif": "image/heif", "pdf": "application/pdf",
    "wav": "audio/wav", "mp3": "audio/mp3", "aiff": "audio/aiff", "aac": "audio/aac",
    "ogg": "audio/ogg", "flac": "audio/flac", "mp4": "video/mp4", "mpeg": "video/mpeg",
    "mov": "video/mov", "avi": "video/avi", "flv": "video/x-flv", "mpg": "video/mpg",
    "webm": "video/webm", "wmv": "video/wmv", "3gp": "video/3gpp", "txt": "text/plain",
    "html": "text/html", "css": "text/css", "js": "text/javascript", "py": "text/x-python",
    "md": "text/md", "csv": "text/csv", "xml": "text/xml", "json": "application/json",
}  # fmt: skip
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 422: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
    501: "NOT_IMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip
_TOKEN_LIMIT = "exceeds the maximum number of tokens"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")
_CHUNK = "chat.completion.chunk"
_JSON = {"content-type": "application/json"}


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="gemini",
        api_base=DEFAULT_BASE,
        api_base_env=("GEMINI_API_BASE",),
        api_key_env=("GEMINI_API_KEY",),
        operations={"chat", "embedding"},
        params=PARAMS,
        stream_framing="custom",
        secret_headers={KEY_HEADER},
        secret_fields={"key"},
        description="Google Gemini API (native generateContent, streamGenerateContent, batchEmbedContents)",
    )


def _model_name(call: Call) -> str:
    """``models/<id>`` (or ``tunedModels/<id>`` as given) for a model id with or without prefix."""
    model = call.model.strip("/")
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    base = openai.resolve_endpoint(call).base_url.rstrip("/")  # api_base=, GEMINI_API_BASE, the default
    if call.operation == "embedding":
        method = "batchEmbedContents"
    else:
        method = "streamGenerateContent?alt=sse" if call.stream else "generateContent"
    headers = {KEY_HEADER: call.api_key} if call.api_key else {}
    return Endpoint(base_url=base, path=f"/{_model_name(call)}:{method}", headers=headers)


# --- requests ----------------------------------------------------------------------------


def _refuse(where: str, message: str, allowed: Optional[str] = None) -> InvalidRequestError:
    return InvalidRequestError(f"gemini: {where}: {message}", param=where, allowed=allowed)


def _mime_of(url: str) -> Optional[str]:
    path = url.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1]
    return _MIME_TYPES.get(path.rsplit(".", 1)[-1].lower()) if "." in path else None


def _media(url: Any, where: str) -> Dict[str, Any]:
    """A data URL as ``inline_data``; any other URL (or file id) as ``file_data``."""
    if not isinstance(url, str) or not url:
        raise _refuse(where, "a media part needs a URL")
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        params = header.split(";")
        if not comma or "base64" not in params[1:]:
            raise _refuse(where, "data URLs must be base64-encoded (data:<mime>;base64,...)")
        return {"inline_data": {"mime_type": params[0] or "application/octet-stream", "data": data}}
    mime = _mime_of(url)
    return {"file_data": {**({"mime_type": mime} if mime else {}), "file_uri": url}}


def _part(part: Any, where: str) -> Dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"text": part.get("text", "")}
    if kind in ("image_url", "video_url"):
        target = part.get(kind)
        return _media(target.get("url") if isinstance(target, dict) else target, where)
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        return {"inline_data": {"mime_type": f"audio/{audio.get('format', 'wav')}", "data": audio.get("data", "")}}
    if kind == "file":
        file = part.get("file") or {}
        if file.get("file_data"):
            return _media(file["file_data"], where)
        if file.get("file_id"):
            mime = _mime_of(str(file.get("filename") or "")) or _mime_of(str(file["file_id"]))
            return {"file_data": {**({"mime_type": mime} if mime else {}), "file_uri": file["file_id"]}}
    raise _refuse(where, f"Gemini reads text, image_url, input_audio, video_url and file parts, not {kind!r}")


def _texts(content: Any, where: str) -> List[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return [str(p.get("text", "")) for p in content]
    raise _refuse(where, "this message takes text content only")


def _compact(parts: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Empty text parts are not sent beside other parts; a message needs at least one part."""
    kept = [p for p in parts if p != {"text": ""}]
    return kept or [{"text": ""}]


def _arguments(raw: Any, where: str) -> Dict[str, Any]:
    try:
        args = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except ValueError:
        raise _refuse(where, f"tool call arguments are not JSON: {str(raw)[:80]!r}") from None
    if not isinstance(args, dict):
        raise _refuse(where, "tool call arguments must be a JSON object")
    return args


def _model_parts(message: Mapping[str, Any], where: str, names: Dict[str, str]) -> List[Dict[str, Any]]:
    parts: List[Dict[str, Any]] = [{"text": t} for t in _texts(message.get("content"), where)]
    for position, tool_call in enumerate(message.get("tool_calls") or ()):
        at = f"{where}.tool_calls[{position}]"
        function = tool_call.get("function") if isinstance(tool_call, dict) else None
        if not isinstance(function, dict) or tool_call.get("type", "function") != "function":
            raise _refuse(at, "only function tool calls can be sent to Gemini")
        name = str(function.get("name", ""))
        names[str(tool_call.get("id"))] = name
        part: Dict[str, Any] = {"functionCall": {"name": name, "args": _arguments(function.get("arguments"), at)}}
        signature = ((tool_call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return _compact(parts)


def _function_response(message: Mapping[str, Any], where: str, names: Mapping[str, str]) -> Dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = names.get(str(call_id))
    if name is None:
        raise _refuse(where, f"no earlier assistant tool call has the id {call_id!r}; Gemini needs the function's name")
    text = "".join(_texts(message.get("content"), where))
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"output": text}
    return {"functionResponse": {"name": name, "response": response}}


def _contents(messages: Sequence[Any]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(systemInstruction parts, contents) for OpenAI ``messages``."""
    system: List[Dict[str, Any]] = []
    contents: List[Dict[str, Any]] = []
    names: Dict[str, str] = {}  # tool_call_id -> function name, from the assistant turns so far
    for position, message in enumerate(messages):
        where = f"messages[{position}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            system.extend(_compact([{"text": t} for t in _texts(message.get("content"), where)]))
            continue
        if role == "user":
            content = message.get("content")
            if isinstance(content, list):
                parts = [_part(p, f"{where}.content[{i}]") for i, p in enumerate(content)]
            else:
                parts = [{"text": t} for t in _texts(content, where)]
            turn, parts = "user", _compact(parts)
        elif role == "assistant":
            turn, parts = "model", _model_parts(message, where, names)
        elif role == "tool":
            turn, parts = "user", [_function_response(message, where, names)]
        else:
            raise _refuse(where, f"unknown role {role!r}", "system, developer, user, assistant, tool")
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    return system, contents


def gemini_schema(schema: Any, where: str = "schema") -> Any:
    """A JSON schema cut down to what Gemini's ``Schema`` accepts.

    Local ``$ref`` s to ``#/$defs/...`` or ``#/definitions/...`` are inlined; then the
    keywords in ``SCHEMA_DROPPED_KEYS`` are removed at every level (property *names* are
    kept, whatever they are). A reference that cannot be inlined (another document, a
    recursive definition) raises ``InvalidRequestError``.
    """
    defs: Dict[str, Any] = {}
    if isinstance(schema, dict):
        for key in ("$defs", "definitions"):
            if isinstance(schema.get(key), dict):
                defs.update({f"#/{key}/{name}": value for name, value in schema[key].items()})
    return _clean(schema, defs, (), where)


def _clean(node: Any, defs: Mapping[str, Any], seen: Tuple[str, ...], where: str) -> Any:
    if isinstance(node, list):
        return [_clean(item, defs, seen, where) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if ref is not None:
        if ref not in defs:
            raise _refuse(where, f"$ref {ref!r} cannot be inlined (Gemini schemas have no references; only #/$defs/... are inlined)")
        if ref in seen:
            raise _refuse(where, f"$ref {ref!r} is recursive: Gemini schemas cannot express it")
        resolved = _clean(defs[ref], defs, (*seen, ref), where)
        siblings = _clean({k: v for k, v in node.items() if k != "$ref"}, defs, seen, where)
        return {**resolved, **siblings} if isinstance(resolved, dict) else resolved
    out: Dict[str, Any] = {}
    for key, value in node.items():
        if key in SCHEMA_DROPPED_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _clean(sub, defs, seen, where) for name, sub in value.items()}
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "allOf", "not"):
            out[key] = _clean(value, defs, seen, where)
        else:
            out[key] = value
    return out


def _declaration(tool: Any, position: int) -> Dict[str, Any]:
    where = f"tools[{position}]"
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or tool.get("type") != "function":
        raise _refuse(where, "Gemini takes function tools only", "type: function")
    declaration: Dict[str, Any] = {"name": function.get("name")}
    if "description" in function:
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    # Gemini rejects an OBJECT without properties: a function without arguments omits them.
    if isinstance(parameters, dict) and (parameters.get("properties") or parameters.get("type") != "object"):
        declaration["parameters"] = gemini_schema(parameters, f"{where}.function.parameters")
    return declaration


def _tool_config(choice: Any) -> Dict[str, Any]:
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"functionCallingConfig": {"mode": _TOOL_MODES[choice]}}
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and function.get("name"):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [function["name"]]}}
    raise _refuse("tool_choice", f"unsupported value {choice!r}", "auto, none, required or a named function")


def _generation_config(body: Mapping[str, Any]) -> Dict[str, Any]:
    config = {gemini: body[name] for name, gemini in _CONFIG_NAMES if body.get(name) is not None}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")  # type: ignore[union-attr]
        config["responseMimeType"] = "application/json"
        if schema is not None:
            config["responseSchema"] = gemini_schema(schema, "response_format.json_schema.schema")
    elif kind not in (None, "text"):
        raise _refuse("response_format", f"unsupported type {kind!r}", "text, json_object, json_schema")
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in REASONING_BUDGETS:
            raise _refuse("reasoning_effort", f"unsupported value {effort!r}", ", ".join(REASONING_BUDGETS))
        budget = REASONING_BUDGETS[effort]
        config["thinkingConfig"] = {"thinkingBudget": budget, **({"includeThoughts": True} if budget else {})}
    return config


def _chat_body(body: Mapping[str, Any]) -> Dict[str, Any]:
    system, contents = _contents(body.get("messages") or [])
    wire: Dict[str, Any] = {"contents": contents}
    if system:
        wire["systemInstruction"] = {"parts": system}
    tools = body.get("tools")
    if tools:
        wire["tools"] = [{"functionDeclarations": [_declaration(t, i) for i, t in enumerate(tools)]}]
        if body.get("tool_choice") is not None:
            wire["toolConfig"] = _tool_config(body["tool_choice"])
    config = _generation_config(body)
    extras = {key: value for key, value in body.items() if key not in _CONSUMED}
    if isinstance(extras.get("generationConfig"), dict):
        config = {**config, **extras.pop("generationConfig")}
    if config:
        wire["generationConfig"] = config
    wire.update(extras)  # Gemini's own fields (safetySettings, cachedContent, ...)
    return wire


def _embedding_body(call: Call) -> Dict[str, Any]:
    body = call.body
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _refuse("input", "Gemini embeds a string or a list of strings (not token ids)")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise _refuse("encoding_format", f"unsupported value {body['encoding_format']!r}", "float, base64")
    # Keyword arguments that are not OpenAI parameters are fields of each EmbedContentRequest (taskType=...).
    extra = {key: value for key, value in body.items() if key not in _EMBEDDING_CONSUMED}
    if body.get("dimensions") is not None:
        extra["outputDimensionality"] = body["dimensions"]
    model = _model_name(call)
    return {"requests": [{"model": model, "content": {"parts": [{"text": text}]}, **extra} for text in texts]}


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> WireRequest:
    wire = _embedding_body(call) if call.operation == "embedding" else _chat_body(call.body)
    return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=wire)


# --- responses ---------------------------------------------------------------------------


def _parts(candidate: Mapping[str, Any], index: int, before: int) -> Tuple[Optional[str], Optional[str], List[Dict[str, Any]]]:
    """(content, reasoning, tool calls) of one candidate; ``before``: calls already streamed."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    texts: List[str] = []
    thoughts: List[str] = []
    calls: List[Dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        function = part.get("functionCall")
        if isinstance(function, dict):
            tool_call: Dict[str, Any] = {
                "id": function.get("id") or f"call_{index}_{before + len(calls)}",
                "type": "function",
                "function": {"name": function.get("name", ""), "arguments": json.dumps(function.get("args") or {})},
            }
            if part.get("thoughtSignature"):
                tool_call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            calls.append(tool_call)
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else texts).append(part["text"])
    return ("".join(texts) if texts else None), ("".join(thoughts) if thoughts else None), calls


def _finish(reason: Any, has_calls: bool) -> Optional[str]:
    if reason is None:
        return None
    if reason == "STOP" and has_calls:
        return "tool_calls"
    return FINISH_REASONS.get(str(reason), "stop")


def _usage(meta: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(meta, dict):
        return None
    prompt = meta.get("promptTokenCount") or 0
    thoughts = meta.get("thoughtsTokenCount")
    completion = (meta.get("candidatesTokenCount") or 0) + (thoughts or 0)
    usage: Dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": meta.get("totalTokenCount", prompt + completion),
    }
    if meta.get("cachedContentTokenCount") is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": meta["cachedContentTokenCount"]}
    if thoughts is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def _created(response: WireResponse) -> int:
    date = response.headers.get("date")
    if date:
        try:
            return int(email.utils.parsedate_to_datetime(date).timestamp())
        except (TypeError, ValueError):
            pass
    return 0


def _blocked(call: Call, data: Mapping[str, Any], body: str) -> Optional[errors.ProviderError]:
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if not reason:
        return None
    detail = feedback.get("blockReasonMessage") if isinstance(feedback, dict) else None
    message = f"Gemini blocked the prompt ({reason})" + (f": {detail}" if detail else "")
    return errors.ContentFilterError(message, provider=call.provider, model=call.model, code=reason, body=body)


def _chat_result(call: Call, response: WireResponse) -> Dict[str, Any]:
    data = openai.parse_response(call, response)
    candidates = data.get("candidates")
    if not candidates:
        blocked = _blocked(call, data, response.text)
        if blocked is not None:
            raise blocked
        if not isinstance(candidates, list):
            raise openai.malformed_response(call, response, f"a Gemini response needs candidates: {response.text[:200]!r}")
    choices = []
    for position, candidate in enumerate(c for c in candidates if isinstance(c, dict)):
        index = candidate.get("index", position)
        content, reasoning, calls = _parts(candidate, index, 0)
        message: Dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        if calls:
            message["tool_calls"] = calls
        finish = _finish(candidate.get("finishReason"), bool(calls)) or "stop"
        choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": None})
    result: Dict[str, Any] = {
        "id": data.get("responseId") or "",
        "object": "chat.completion",
        "created": _created(response),
        "model": data.get("modelVersion") or call.model,
        "choices": choices,
    }
    usage = _usage(data.get("usageMetadata"))
    if usage is not None:
        result["usage"] = usage
    return result


def _floats_b64(values: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def _embedding_result(call: Call, response: WireResponse) -> Dict[str, Any]:
    data = openai.parse_response(call, response)
    embeddings = data.get("embeddings")
    if not isinstance(embeddings, list) or not all(isinstance(e, dict) and isinstance(e.get("values"), list) for e in embeddings):
        raise openai.malformed_response(call, response, f"a Gemini batchEmbedContents response needs embeddings[].values: {response.text[:200]!r}")
    as_base64 = call.body.get("encoding_format") == "base64"
    items = [
        {"object": "embedding", "index": i, "embedding": _floats_b64(e["values"]) if as_base64 else e["values"]}
        for i, e in enumerate(embeddings)
    ]
    # Gemini reports no token counts for embeddings (usage is 0 unless it sends usageMetadata).
    prompt = (data.get("usageMetadata") or {}).get("promptTokenCount") or 0
    return {"object": "list", "data": items, "model": call.model, "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}


@hookimpl
def transform_response(call: Call, response: WireResponse) -> Dict[str, Any]:
    if call.operation == "embedding":
        return _embedding_result(call, response)
    return _chat_result(call, response)


# --- streams -----------------------------------------------------------------------------


class _CountedEvent(StreamEvent):
    """An SSE event plus the function calls each candidate streamed before it."""

    __slots__ = ("calls_before",)

    def __init__(self, event: StreamEvent, calls_before: Dict[int, int]) -> None:
        super().__init__(event.data, event.event, event.id, event.retry)
        self.calls_before = calls_before


class GeminiStreamDecoder:
    """SSE framing, plus what Gemini's self-contained events do not say.

    Each event is a whole ``GenerateContentResponse``, so nothing in an event tells how many
    function calls its candidate streamed earlier; tool-call indexes and generated ids
    continue from that count, and the finish reason is ``tool_calls`` when it is not zero.
    One decoder per stream keeps the count and hands it to ``parse_stream_chunk`` on the
    events (``calls_before``).
    """

    __slots__ = ("_sse", "_calls")

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._calls: Dict[int, int] = {}

    @property
    def has_partial_line(self) -> bool:
        return self._sse.has_partial_line

    def feed(self, chunk: bytes) -> List[StreamEvent]:
        return self._count(self._sse.feed(chunk))

    def flush(self) -> List[StreamEvent]:
        return self._count(self._sse.flush())

    def _count(self, events: List[StreamEvent]) -> List[StreamEvent]:
        out: List[StreamEvent] = []
        for event in events:
            data = event.data
            calls = isinstance(data, str) and "functionCall" in data
            if not calls and not self._calls:
                out.append(event)
                continue
            out.append(_CountedEvent(event, dict(self._calls)))
            if calls:
                try:
                    payload = openai.loads_event(data if isinstance(data, str) else data.decode("utf-8", errors="replace"))
                except ValueError:
                    continue  # parse_stream_chunk reports it
                candidates = payload.get("candidates") if isinstance(payload, dict) else None
                for position, candidate in enumerate(candidates if isinstance(candidates, list) else ()):
                    if isinstance(candidate, dict):
                        index = candidate.get("index", position)
                        parts = (candidate.get("content") or {}).get("parts") or ()
                        found = sum(1 for p in parts if isinstance(p, dict) and isinstance(p.get("functionCall"), dict))
                        self._calls[index] = self._calls.get(index, 0) + found
        return out


@hookimpl
def stream_decoder(call: Call) -> GeminiStreamDecoder:
    return GeminiStreamDecoder()


def _stream_error(call: Call, payload: Dict[str, Any], data: str) -> errors.ProviderError:
    inner = payload.get("error")
    code = inner.get("code") if isinstance(inner, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    mapped = map_error(call, WireResponse(status, dict(_JSON), data.encode("utf-8")))
    return mapped if mapped is not None else openai.stream_error(call, payload)


def _expected_candidates(call: Call) -> int:
    n = call.body.get("n")
    return n if isinstance(n, int) and n > 1 else 1


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    data = event.data.decode("utf-8", errors="replace") if isinstance(event.data, bytes) else event.data
    if not data.strip():
        return IGNORE_EVENT
    try:
        payload = openai.loads_event(data)
    except ValueError:
        payload = None
    if type(payload) is not dict:
        raise errors.MalformedStreamError(
            f"a Gemini stream event is not a JSON object: {data[:200]!r}", provider=call.provider, model=call.model, body=data
        )
    if "error" in payload and "candidates" not in payload:
        raise _stream_error(call, payload, data)
    candidates = payload.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        blocked = _blocked(call, payload, data)
        if blocked is not None:
            raise blocked
        return IGNORE_EVENT
    head = {"id": payload.get("responseId") or "", "object": _CHUNK, "created": 0, "model": payload.get("modelVersion") or call.model}
    before: Mapping[int, int] = getattr(event, "calls_before", None) or {}
    chunks: List[Dict[str, Any]] = []
    finishes: List[Dict[str, Any]] = []
    finished, top = True, 0
    for position, candidate in enumerate(c for c in candidates if isinstance(c, dict)):
        index = candidate.get("index", position)
        top = max(top, index)
        earlier = before.get(index, 0)
        content, reasoning, calls = _parts(candidate, index, earlier)
        delta: Dict[str, Any] = {}
        if isinstance(candidate.get("content"), dict) and candidate["content"].get("role"):
            delta["role"] = "assistant"
        if reasoning is not None:
            delta["reasoning_content"] = reasoning
        if content is not None:
            delta["content"] = content
        if calls:
            delta["tool_calls"] = [{"index": earlier + i, **c} for i, c in enumerate(calls)]
        if delta:
            chunks.append({**head, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]})
        reason = _finish(candidate.get("finishReason"), earlier + len(calls) > 0)
        if reason is None:
            finished = False
        else:
            finishes.append({**head, "choices": [{"index": index, "delta": {}, "logprobs": None, "finish_reason": reason}]})
    chunks.extend(finishes)
    # No end marker: the event where the candidates finish is the last one.
    if finished and top + 1 >= _expected_candidates(call):
        usage = _usage(payload.get("usageMetadata"))
        if usage is not None:
            chunks.append({**head, "choices": [], "usage": usage})
        return end_of_stream(*chunks)
    return chunks or IGNORE_EVENT


# --- errors ------------------------------------------------------------------------------


def _retry_delay(details: Sequence[Any]) -> Optional[float]:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


@hookimpl
def map_error(call: Call, response: WireResponse) -> Optional[errors.ProviderError]:
    body = response.json_or_none()
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # streamGenerateContent without alt=sse answers a JSON array
    inner = body.get("error") if isinstance(body, dict) else None
    if not isinstance(inner, dict):
        return None  # not Google's envelope (a proxy's page): OpenAI's reader takes it
    raw_details = inner.get("details")
    details: List[Any] = raw_details if isinstance(raw_details, list) else []
    reason = next(
        (d.get("reason") for d in details if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.ErrorInfo")),
        None,
    )
    status = inner.get("status")
    fields = openai.error_fields(response, {"message": inner.get("message"), "code": reason or status, "type": status})
    cls: Optional[Type[errors.ProviderError]] = None
    if reason == "API_KEY_INVALID":
        cls = errors.AuthenticationError
    elif _TOKEN_LIMIT in str(fields["message"]).lower():
        cls = errors.ContextWindowExceededError
    return openai.build_error(
        call, response, cls, fields=fields, retry_after=_retry_delay(details), details={"status": status, "reason": reason}
    )


# --- encoders: OpenAI shapes -> Gemini's wire (mock_response and the conformance kit) ----


def _gemini_usage(usage: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(usage, dict):
        return None
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    meta: Dict[str, Any] = {
        "promptTokenCount": usage.get("prompt_tokens", 0),
        "candidatesTokenCount": usage.get("completion_tokens", 0) - (reasoning or 0),
        "totalTokenCount": usage.get("total_tokens", 0),
    }
    if reasoning is not None:
        meta["thoughtsTokenCount"] = reasoning
    if cached is not None:
        meta["cachedContentTokenCount"] = cached
    return meta


def _function_call(tool_call: Mapping[str, Any], arguments: str) -> Dict[str, Any]:
    try:
        args = json.loads(arguments) if arguments else {}
    except ValueError:
        args = {}
    function = tool_call.get("function") or {}
    call: Dict[str, Any] = {"name": function.get("name", ""), "args": args if isinstance(args, dict) else {}}
    if tool_call.get("id"):
        call["id"] = tool_call["id"]
    part: Dict[str, Any] = {"functionCall": call}
    signature = ((tool_call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
    if signature:
        part["thoughtSignature"] = signature
    return part


def _encode_parts(message: Mapping[str, Any], arguments: Optional[Mapping[Tuple[int, int], str]] = None, index: int = 0) -> List[Dict[str, Any]]:
    parts: List[Dict[str, Any]] = []
    if message.get("reasoning_content") is not None:
        parts.append({"text": message["reasoning_content"], "thought": True})
    if message.get("content") is not None:
        parts.append({"text": message["content"]})
    for tool_call in message.get("tool_calls") or ():
        name = (tool_call.get("function") or {}).get("name")
        if not name:
            continue  # a streamed continuation of arguments: sent whole with its call
        raw = (tool_call.get("function") or {}).get("arguments") or ""
        if arguments is not None:
            raw = arguments.get((index, tool_call.get("index", 0)), raw)
        parts.append(_function_call(tool_call, raw))
    return parts


def _gemini_head(data: Mapping[str, Any]) -> Dict[str, Any]:
    return {"responseId": data.get("id"), "modelVersion": data.get("model")}


@hookimpl
def encode_response(call: Call, result: Dict[str, Any]) -> WireResponse:
    if call.operation == "embedding":
        embeddings = []
        for item in result.get("data") or ():
            vector = item.get("embedding")
            if isinstance(vector, str):
                raw = base64.b64decode(vector)
                vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
            embeddings.append({"values": vector})
        return WireResponse(200, dict(_JSON), json.dumps({"embeddings": embeddings}).encode("utf-8"))
    candidates = []
    for choice in result.get("choices") or ():
        candidate: Dict[str, Any] = {"index": choice.get("index", 0), "content": {"role": "model", "parts": _encode_parts(choice.get("message") or {})}}
        if choice.get("finish_reason") is not None:
            candidate["finishReason"] = _GEMINI_FINISH.get(choice["finish_reason"], "OTHER")
        candidates.append(candidate)
    body: Dict[str, Any] = {"candidates": candidates, **_gemini_head(result)}
    usage = _gemini_usage(result.get("usage"))
    if usage is not None:
        body["usageMetadata"] = usage
    return WireResponse(200, dict(_JSON), json.dumps(body).encode("utf-8"))


@hookimpl
def encode_stream(call: Call, chunks: List[Dict[str, Any]]) -> bytes:
    # Gemini sends each function call whole: gather streamed argument pieces first.
    arguments: Dict[Tuple[int, int], str] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            for tool_call in (choice.get("delta") or {}).get("tool_calls") or ():
                key = (choice.get("index", 0), tool_call.get("index", 0))
                arguments[key] = arguments.get(key, "") + ((tool_call.get("function") or {}).get("arguments") or "")
    events: List[Dict[str, Any]] = []
    for chunk in chunks:
        choices = chunk.get("choices") or []
        usage = _gemini_usage(chunk.get("usage"))
        if not choices and events and usage is not None:
            events[-1]["usageMetadata"] = usage  # the usage rides on the finishing event
            continue
        candidates = []
        for choice in choices:
            delta = choice.get("delta") or {}
            candidate: Dict[str, Any] = {"index": choice.get("index", 0)}
            parts = _encode_parts(delta, arguments, candidate["index"])
            if parts or delta.get("role"):
                candidate["content"] = {**({"role": "model"} if delta.get("role") else {}), "parts": parts}
            if choice.get("finish_reason") is not None:
                candidate["finishReason"] = _GEMINI_FINISH.get(choice["finish_reason"], "OTHER")
            candidates.append(candidate)
        event: Dict[str, Any] = {"candidates": candidates, **_gemini_head(chunk)}
        if usage is not None:
            event["usageMetadata"] = usage
        events.append(event)
    return b"".join(b"data: " + json.dumps(event).encode("utf-8") + b"\r\n\r\n" for event in events)


@hookimpl
def encode_error(call: Call, status: int, message: str, code: Optional[str]) -> WireResponse:
    error: Dict[str, Any] = {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}
    if code:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code, "domain": "googleapis.com"}]
    return WireResponse(status, dict(_JSON), json.dumps({"error": error}).encode("utf-8"))
