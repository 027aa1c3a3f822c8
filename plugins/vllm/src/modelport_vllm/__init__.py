"""modelport provider ``hosted_vllm`` (alias ``vllm``): your own vLLM server.

vLLM speaks OpenAI's API, so this plugin only adds what differs: one base URL (always
under ``/v1``; a base that already ends with the operation's path is used as it is) for
every operation, ``file`` parts holding a video sent as the ``video_url`` parts vLLM reads
(other files stay OpenAI ``file`` parts), no ``tools: []`` and no ``tool_choice`` without
tools, Anthropic-style ``thinking`` as ``reasoning_effort`` / ``chat_template_kwargs``,
``/rerank`` (an answer without ``results`` or a result without ``index`` is a
``MalformedResponseError``), and one reasoning field whichever name the server version
uses (``reasoning_content`` up to 0.11, ``reasoning`` after). Both of vLLM's error
envelopes (``{"error": {...}}`` with an integer code, and the older flat
``{"object": "error", "message": ...}``) are read by OpenAI's error reader, which types a
prompt over ``--max-model-len`` as ``ContextWindowExceededError``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import attrs

from modelport.provider import (
    Call,
    Endpoint,
    ProviderInfo,
    StreamEvent,
    WireRequest,
    WireResponse,
    errors,
    hookimpl,
    openai,
)

__all__ = [
    "VIDEO_EXTENSIONS",
    "provider_info",
    "resolve_endpoint",
    "transform_request",
    "transform_response",
    "parse_stream_chunk",
    "chat_body",
    "effort_for_budget",
]

#: File extensions (of a ``file_id`` / URL) that mark a ``file`` part as a video.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi")
#: Anthropic-style ``thinking.budget_tokens`` -> ``reasoning_effort``: up to 2048 tokens is
#: ``low``, up to 8192 ``medium``, more ``high``.
_EFFORT_LIMITS = ((2048, "low"), (8192, "medium"))


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="hosted_vllm",
        aliases=("vllm",),
        api_base_env=("HOSTED_VLLM_API_BASE",),
        api_key_env=("HOSTED_VLLM_API_KEY",),
        operations={"chat", "text_completion", "embedding", "rerank", "transcription"},
        description="a vLLM server you run (api_base or HOSTED_VLLM_API_BASE)",
    )


def _v1(base: str) -> str:
    """The base URL under ``/v1``: vLLM serves every OpenAI route (and ``/v1/rerank``) there."""
    base = base.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    endpoint = openai.resolve_endpoint(call)  # base from api_base / env, Bearer only with a key
    if endpoint.base_url.rstrip("/").endswith(endpoint.path):
        return endpoint  # the operation's full URL (".../v1/rerank"): used as it is
    return attrs.evolve(endpoint, base_url=_v1(endpoint.base_url))


def _is_video(file: Dict[str, Any]) -> bool:
    """A ``file`` part's payload holds a video: by the data URI's media type, else by the
    extension of its file id / URL (or file name)."""
    data = file.get("file_data")
    if isinstance(data, str) and data.startswith("data:"):
        return data[5:].split(";", 1)[0].split(",", 1)[0].strip().lower().startswith("video/")
    for key in ("file_id", "filename"):
        value = file.get(key)
        if isinstance(value, str) and value:
            path = value.split("?", 1)[0].split("#", 1)[0].lower()
            if path.endswith(VIDEO_EXTENSIONS):
                return True
    return False


def _file_to_video(part: Any) -> Any:
    if not isinstance(part, dict) or part.get("type") != "file":
        return part
    file = part.get("file")
    if not isinstance(file, dict) or not _is_video(file):
        return part  # not a video: vLLM reads it (or refuses it) as an OpenAI file part
    url = file.get("file_data") or file.get("file_id")
    if not isinstance(url, str) or not url:
        return part
    return {"type": "video_url", "video_url": {"url": url}}


def effort_for_budget(budget: Any) -> str:
    """``reasoning_effort`` for an Anthropic-style thinking budget in tokens."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 1:
        raise errors.InvalidRequestError(
            f"hosted_vllm: thinking.budget_tokens must be a number of tokens >= 1, got {budget!r}",
            param="thinking",
            allowed="a whole number >= 1",
        )
    for limit, effort in _EFFORT_LIMITS:
        if budget <= limit:
            return effort
    return "high"


def _with_template_flag(body: Dict[str, Any], enabled: bool) -> None:
    kwargs = body.get("chat_template_kwargs")
    kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
    kwargs.setdefault("enable_thinking", enabled)  # the caller's own value wins
    body["chat_template_kwargs"] = kwargs


def _thinking(body: Dict[str, Any]) -> None:
    """Anthropic-style ``thinking`` -> vLLM: enabled is ``reasoning_effort`` from its budget
    (and ``chat_template_kwargs.enable_thinking: true``, which Qwen3-style templates read);
    disabled is ``chat_template_kwargs.enable_thinking: false`` and no ``reasoning_effort``.
    Values the caller set explicitly win."""
    thinking = body.pop("thinking", None)
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if budget is not None:
            body.setdefault("reasoning_effort", effort_for_budget(budget))
        _with_template_flag(body, True)
    elif kind == "disabled":
        _with_template_flag(body, False)
    else:
        raise errors.InvalidRequestError(
            f"hosted_vllm: thinking must be {{'type': 'enabled', 'budget_tokens': N}} or {{'type': 'disabled'}}, got {thinking!r:.80}",
            param="thinking",
            allowed="{'type': 'enabled', 'budget_tokens': N} or {'type': 'disabled'}",
        )


def chat_body(body: Any) -> Dict[str, Any]:
    """OpenAI chat body -> what vLLM accepts: video file parts as video_url, no empty
    ``tools`` and no ``tool_choice`` without tools, ``thinking`` translated."""
    messages: List[Any] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "file" for p in content):
            message = {**message, "content": [_file_to_video(p) for p in content]}
        messages.append(message)
    out: Dict[str, Any] = {**body, "messages": messages}
    if not out.get("tools"):
        out.pop("tools", None)
        out.pop("tool_choice", None)
    _thinking(out)
    return out


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> Optional[WireRequest]:
    if call.operation != "chat":
        return None  # the OpenAI wire format as it is (multipart for transcriptions)
    return openai.build_request(call, endpoint, chat_body(call.body))


def _with_reasoning_content(message: Dict[str, Any]) -> None:
    if "reasoning" in message and "reasoning_content" not in message:
        message["reasoning_content"] = message["reasoning"]


@hookimpl
def transform_response(call: Call, response: WireResponse) -> Optional[Dict[str, Any]]:
    result = openai.parse_response(call, response)
    if call.operation == "chat":
        for choice in result.get("choices") or ():
            if isinstance(choice.get("message"), dict):
                _with_reasoning_content(choice["message"])
    elif call.operation == "rerank":
        _check_rerank(call, response, result)
        result["results"] = sorted(result["results"], key=lambda r: -float(r.get("relevance_score") or 0.0))
    return result


def _check_rerank(call: Call, response: WireResponse, result: Dict[str, Any]) -> None:
    """A rerank answer needs ``results``, each with the integer ``index`` of its document."""
    results = result.get("results")
    if not isinstance(results, list):
        raise openai.malformed_response(call, response, f"a rerank answer needs a 'results' list: {response.text[:200]!r}")
    for position, item in enumerate(results):
        index = item.get("index") if isinstance(item, dict) else None
        if isinstance(index, bool) or not isinstance(index, int):
            raise openai.malformed_response(call, response, f"rerank results[{position}] has no integer 'index': {item!r:.200}")


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    chunk = openai.parse_chunk(call, event)
    if type(chunk) is dict:
        if chunk.get("object") == "error" and "choices" not in chunk:
            raise openai.stream_error(call, chunk)  # the flat envelope (vLLM < 0.10.1)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if delta and "reasoning" in delta:
                _with_reasoning_content(delta)
    return chunk
