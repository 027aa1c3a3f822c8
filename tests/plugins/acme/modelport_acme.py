"""A third-party modelport provider in one module: the Acme API.

Acme speaks OpenAI's chat API except that it authenticates with an ``X-Acme-Key``
header and reports its own finish reason ``"end"``, which this plugin maps to
OpenAI's ``"stop"`` (in full responses and in stream chunks). Everything else falls
through to modelport's built-in OpenAI behaviour.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from modelport import Call, Endpoint, ProviderInfo, ServerSentEvent, WireResponse, hookimpl
from modelport.openai_wire import OpenAIWire

_OPENAI = OpenAIWire()


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="acme",
        api_base="https://api.acme.invalid/v1",
        api_base_env=("ACME_API_BASE",),
        api_key_env=("ACME_API_KEY",),
        operations={"chat"},
        description="the Acme API (sample plugin)",
    )


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    endpoint = _OPENAI.resolve_endpoint(call)
    endpoint.headers.pop("Authorization", None)
    if call.api_key:
        endpoint.headers["X-Acme-Key"] = call.api_key
    return endpoint


def _finish_reasons(payload: Dict[str, Any]) -> Dict[str, Any]:
    for choice in payload.get("choices") or ():
        if choice.get("finish_reason") == "end":
            choice["finish_reason"] = "stop"
    return payload


@hookimpl
def transform_response(call: Call, response: WireResponse) -> Optional[Dict[str, Any]]:
    return _finish_reasons(_OPENAI.transform_response(call, response))


@hookimpl
def parse_stream_chunk(call: Call, event: ServerSentEvent) -> Any:
    chunk = _OPENAI.parse_stream_chunk(call, event)
    return _finish_reasons(chunk) if type(chunk) is dict else chunk
