"""A third-party modelport provider in one module: the Acme API.

Acme speaks OpenAI's chat API except that it authenticates with an ``X-Acme-Key``
header (declared secret, so ``--dry-run`` and logs redact it) and reports its own
finish reason ``"end"``, which this plugin maps to OpenAI's ``"stop"`` (in full
responses and in stream chunks). Everything else falls through to modelport's
built-in OpenAI behaviour.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import attrs

from modelport.provider import Call, Endpoint, ProviderInfo, StreamEvent, WireResponse, hookimpl, openai


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="acme",
        api_base="https://api.acme.invalid/v1",
        api_base_env=("ACME_API_BASE",),
        api_key_env=("ACME_API_KEY",),
        operations={"chat"},
        secret_headers={"X-Acme-Key"},
        description="the Acme API (sample plugin)",
    )


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    endpoint = openai.resolve_endpoint(call)
    headers = {"X-Acme-Key": call.api_key} if call.api_key else {}
    return attrs.evolve(endpoint, headers=headers)


def _finish_reasons(payload: Dict[str, Any], ours: str, theirs: str) -> Dict[str, Any]:
    for choice in payload.get("choices") or ():
        if choice.get("finish_reason") == ours:
            choice["finish_reason"] = theirs
    return payload


@hookimpl
def transform_response(call: Call, response: WireResponse) -> Optional[Dict[str, Any]]:
    return _finish_reasons(openai.parse_response(call, response), "end", "stop")


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    chunk = openai.parse_chunk(call, event)
    return _finish_reasons(chunk, "end", "stop") if type(chunk) is dict else chunk


# Encoders (OpenAI shapes -> Acme's wire): mock_response and the conformance kit run
# Acme's own decoding through them.


@hookimpl
def encode_response(call: Call, result: Dict[str, Any]) -> WireResponse:
    return openai.encode_response(call, _finish_reasons(result, "stop", "end"))


@hookimpl
def encode_stream(call: Call, chunks: List[Dict[str, Any]]) -> bytes:
    return openai.encode_stream(call, [_finish_reasons(c, "stop", "end") for c in chunks])
