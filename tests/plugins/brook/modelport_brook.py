"""A third-party modelport provider with its own wire format: the Brook API.

Brook answers ``POST {base}/v1/generate`` (key in the ``X-Brook-Key`` header, declared
secret) and shares no payload shape with OpenAI, so this plugin implements every
decoding hook and, for each, the encoder that inverts it (``mock_response`` and the
conformance kit then run Brook's own decoding). The mapping:

- request: ``messages`` become ``turns`` of ``{"speaker", "text"}`` (system and developer
  messages are ``system`` turns; a list of text parts is joined with newlines);
  ``temperature``, ``max_tokens`` (or ``max_completion_tokens``, as ``max_new_tokens``)
  and ``stop`` (always a list) go under ``options``; ``stream`` is always sent. Keyword
  arguments that are not OpenAI parameters are Brook's own fields, sent at the top level.
  Brook reads text and has no tools: tool messages, tool calls and image, audio or file
  parts raise ``InvalidRequestError``; other OpenAI parameters are refused by the core
  (``params``), or dropped with ``drop_params=True``.
- response: ``reply.text`` is the one choice's content; ``reply.finish`` ``eos`` is
  ``stop`` and ``max_tokens`` is ``length``; ``usage.input`` / ``usage.output`` are the
  prompt and completion tokens.
- stream: NDJSON. Each line's ``delta`` is a content chunk; the last line
  (``"done": true``) carries the finish reason and the usage, so it becomes two chunks
  and ends the stream.
- errors: ``{"problem": {"kind", "detail", "retry_in"}}``; ``retry_in`` (seconds) is the
  delay before a retry; kind ``quota_exhausted`` (a 429) is not worth retrying, kind
  ``model_loading`` (a 400 while a cold model loads) is.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

from modelport.provider import (
    Call,
    Endpoint,
    InvalidRequestError,
    ProviderInfo,
    StreamEvent,
    WireRequest,
    WireResponse,
    end_of_stream,
    errors,
    hookimpl,
    openai,
)

PATH = "/v1/generate"
#: The OpenAI chat parameters Brook has; the core refuses the others before any hook runs.
PARAMS = ("messages", "temperature", "max_tokens", "max_completion_tokens", "stop", "stream", "stream_options")
_MAPPED = frozenset({"model", *PARAMS})
_SPEAKERS = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
#: Brook's finish reasons -> OpenAI's, and back (OpenAI's others have no Brook name).
FINISH = {"eos": "stop", "max_tokens": "length"}
_BROOK_FINISH = {"stop": "eos", "length": "max_tokens"}
_CHUNK = "chat.completion.chunk"
_JSON = {"content-type": "application/json"}


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="brook",
        api_base="https://api.brook.invalid",
        api_base_env=("BROOK_API_BASE",),
        api_key_env=("BROOK_API_KEY",),
        operations={"chat"},
        params=PARAMS,
        stream_framing="ndjson",
        secret_headers={"X-Brook-Key"},
        description="the Brook API (sample plugin: own wire format, NDJSON streams)",
    )


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    base = openai.resolve_endpoint(call).base_url  # api_base=, BROOK_API_BASE, or the default
    headers = {"X-Brook-Key": call.api_key} if call.api_key else {}
    return Endpoint(base_url=base, path=PATH, headers=headers)


# --- requests ----------------------------------------------------------------------------


def _turn(message: Mapping[str, Any], position: int) -> Dict[str, str]:
    where = f"messages[{position}]"
    speaker = _SPEAKERS.get(message.get("role", ""))
    if speaker is None or message.get("tool_calls"):
        raise InvalidRequestError(
            f"{where}: Brook has no tool calling and speaks system, user and assistant turns only",
            param=where,
        )
    content = message.get("content")
    if isinstance(content, list):
        if not all(isinstance(part, dict) and part.get("type") == "text" for part in content):
            raise InvalidRequestError(f"{where}: Brook reads text only (no image, audio or file parts)", param=where)
        content = "\n".join(str(part.get("text", "")) for part in content)
    if not isinstance(content, str):
        raise InvalidRequestError(f"{where}: a Brook turn needs text content", param=where)
    return {"speaker": speaker, "text": content}


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> WireRequest:
    body = call.body
    options: Dict[str, Any] = {}
    if body.get("temperature") is not None:
        options["temperature"] = body["temperature"]
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        options["max_new_tokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    wire = {
        "model": call.model,
        "turns": [_turn(message, position) for position, message in enumerate(body["messages"])],
        "options": options,
        "stream": call.stream,
        # Keyword arguments that are not OpenAI parameters are Brook's own (top_k=40).
        **{key: value for key, value in body.items() if key not in _MAPPED},
    }
    return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=wire)


# --- responses and streams ---------------------------------------------------------------


def _head(data: Mapping[str, Any], kind: str) -> Dict[str, Any]:
    return {"id": data.get("id"), "object": kind, "created": data.get("created"), "model": data.get("model")}


def _finish(value: Any) -> Any:
    return FINISH.get(value, value) if isinstance(value, str) else value


def _usage(usage: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input", 0), usage.get("output", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@hookimpl
def transform_response(call: Call, response: WireResponse) -> Dict[str, Any]:
    data = openai.parse_response(call, response)  # the JSON object, or MalformedResponseError
    reply = data.get("reply")
    if not isinstance(reply, dict) or not isinstance(reply.get("text"), str):
        raise openai.malformed_response(call, response, f"a Brook response needs reply.text: {response.text[:200]!r}")
    message = {"role": "assistant", "content": reply["text"], "refusal": None}
    choice = {"index": 0, "message": message, "finish_reason": _finish(reply.get("finish")), "logprobs": None}
    return {**_head(data, "chat.completion"), "choices": [choice], "usage": _usage(data.get("usage"))}


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    try:
        line = json.loads(event.data)  # NDJSON: the core's decoder hands over one line per event
    except ValueError:
        line = None
    if not isinstance(line, dict):
        raise errors.MalformedStreamError(
            f"a Brook stream line is not a JSON object: {event.data[:200]!r}", provider=call.provider, model=call.model
        )
    if "problem" in line:  # an error reported in the middle of the stream
        problem = line["problem"] if isinstance(line["problem"], dict) else {}
        raise openai.stream_error(call, {"error": {"message": problem.get("detail"), "code": problem.get("kind")}})
    if not line.get("done"):
        delta = {"content": line.get("delta") or ""}
        return {**_head(line, _CHUNK), "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
    # The last line carries the finish reason and the usage: two chunks, then the end.
    finish = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": _finish(line.get("finish"))}
    chunks = [{**_head(line, _CHUNK), "choices": [finish]}]
    usage = _usage(line.get("usage"))
    if usage is not None:
        chunks.append({**_head(line, _CHUNK), "choices": [], "usage": usage})
    return end_of_stream(*chunks)


# --- errors ------------------------------------------------------------------------------


@hookimpl
def map_error(call: Call, response: WireResponse) -> Optional[errors.ProviderError]:
    body = response.json_or_none()
    problem = body.get("problem") if isinstance(body, dict) else None
    if not isinstance(problem, dict):
        return None  # not Brook's envelope (a proxy's HTML page): OpenAI's reader takes it
    fields = openai.error_fields(response, {"message": problem.get("detail"), "code": problem.get("kind")})
    retry_in = problem.get("retry_in")
    retry_after = float(retry_in) if isinstance(retry_in, (int, float)) else None
    if problem.get("kind") == "quota_exhausted":  # a 429 that waiting does not cure
        return openai.build_error(call, response, errors.QuotaExceededError, fields=fields)
    if problem.get("kind") == "model_loading":  # a 400 that passes once the model is up
        return openai.build_error(call, response, fields=fields, retryable=True, retry_after=retry_after)
    return openai.build_error(call, response, fields=fields, retry_after=retry_after)


# --- encoders: OpenAI shapes -> Brook's wire (mock_response and the conformance kit) -----


def _brook_head(data: Mapping[str, Any]) -> Dict[str, Any]:
    return {"id": data.get("id"), "model": data.get("model"), "created": data.get("created")}


def _brook_usage(usage: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(usage, dict):
        return None
    return {"input": usage.get("prompt_tokens", 0), "output": usage.get("completion_tokens", 0)}


def _brook_finish(reason: Any) -> str:
    return _BROOK_FINISH.get(reason, "eos") if isinstance(reason, str) else "eos"


@hookimpl
def encode_response(call: Call, result: Dict[str, Any]) -> WireResponse:
    choice = result["choices"][0]  # Brook has one reply: a result with several is written as its first
    reply = {"text": choice["message"].get("content") or "", "finish": _brook_finish(choice.get("finish_reason"))}
    body: Dict[str, Any] = {**_brook_head(result), "reply": reply}
    usage = _brook_usage(result.get("usage"))
    if usage is not None:
        body["usage"] = usage
    return WireResponse(200, dict(_JSON), json.dumps(body).encode("utf-8"))


@hookimpl
def encode_stream(call: Call, chunks: List[Dict[str, Any]]) -> bytes:
    lines: List[Dict[str, Any]] = []
    head: Dict[str, Any] = {}
    finish, usage = "eos", None
    for chunk in chunks:
        head = _brook_head(chunk)
        usage = _brook_usage(chunk.get("usage")) or usage
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") or ""
            if choice.get("finish_reason") is None or text:
                lines.append({**head, "delta": text})
            if choice.get("finish_reason") is not None:
                finish = _brook_finish(choice["finish_reason"])
    lines.append({**head, "done": True, "finish": finish, **({"usage": usage} if usage else {})})
    return b"".join(json.dumps(line).encode("utf-8") + b"\n" for line in lines)


@hookimpl
def encode_error(call: Call, status: int, message: str, code: Optional[str]) -> WireResponse:
    problem = {"kind": code or "error", "detail": message}
    return WireResponse(status, dict(_JSON), json.dumps({"problem": problem}).encode("utf-8"))
