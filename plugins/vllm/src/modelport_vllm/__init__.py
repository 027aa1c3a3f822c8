"""modelport provider ``hosted_vllm`` (alias ``vllm``): your own vLLM server.

vLLM speaks OpenAI's API, so this plugin only adds what differs: one base URL (always
under ``/v1``) for every operation, ``file`` parts sent as the ``video_url`` parts vLLM
reads, no ``tool_choice`` without ``tools``, ``/rerank``, and one reasoning field
whichever name the server version uses (``reasoning_content`` up to 0.11, ``reasoning``
after). Both of vLLM's error envelopes (``{"error": {...}}`` with an integer code, and the
older flat ``{"object": "error", "message": ...}``) are read by OpenAI's error reader.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import attrs

from modelport.provider import Call, Endpoint, ProviderInfo, StreamEvent, WireRequest, WireResponse, hookimpl, openai

__all__ = ["provider_info", "resolve_endpoint", "transform_request", "transform_response", "parse_stream_chunk"]


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
    return attrs.evolve(endpoint, base_url=_v1(endpoint.base_url))


def _file_to_video(part: Any) -> Any:
    if not isinstance(part, dict) or part.get("type") != "file":
        return part
    file = part.get("file") or {}
    url = file.get("file_data") or file.get("file_id")
    if not url:
        return part
    return {"type": "video_url", "video_url": {"url": url}}


def chat_body(body: Any) -> Dict[str, Any]:
    """OpenAI chat body -> what vLLM accepts: file parts as video_url, no orphan tool_choice."""
    messages: List[Any] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "file" for p in content):
            message = {**message, "content": [_file_to_video(p) for p in content]}
        messages.append(message)
    out: Dict[str, Any] = {**body, "messages": messages}
    if "tool_choice" in out and not out.get("tools"):
        del out["tool_choice"]
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
    elif call.operation == "rerank" and isinstance(result.get("results"), list):
        result["results"] = sorted(result["results"], key=lambda r: -float(r.get("relevance_score") or 0.0))
    return result


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    chunk = openai.parse_chunk(call, event)
    if type(chunk) is dict:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if delta and "reasoning" in delta:
                _with_reasoning_content(delta)
    return chunk
