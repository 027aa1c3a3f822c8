"""modelport provider ``dashscope``: Alibaba Cloud Model Studio in OpenAI-compatible mode.

What differs from OpenAI: four regions with region-bound keys; parameter ranges checked
before sending (so a bad value costs no request); Qwen3 thinking that must be off for
non-streaming calls; ``reasoning_effort`` expressed as ``enable_thinking`` /
``thinking_budget``; embeddings limited to 10 inputs a request (larger lists are sent
in batches and merged); rerank on the ``compatible-api`` path; and DashScope's error
codes (throttling retried, arrears not, content inspection typed).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple, Union

import attrs

from modelport.provider import (
    Call,
    Endpoint,
    FollowUp,
    ProviderInfo,
    Step,
    WireRequest,
    WireResponse,
    env_value,
    errors,
    hookimpl,
    openai,
)

__all__ = ["REGIONS", "EMBEDDING_BATCH", "REASONING_BUDGETS", "check_chat_params"]

#: Region name -> OpenAI-compatible base URL.
REGIONS = {
    "intl": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",  # Singapore
    "us": "https://dashscope-us.aliyuncs.com/compatible-mode/v1",  # Virginia
    "cn": "https://dashscope.aliyuncs.com/compatible-mode/v1",  # Beijing
    "hk": "https://cn-hongkong.dashscope.aliyuncs.com/compatible-mode/v1",  # Hong Kong
}
DEFAULT_REGION = "intl"
KEY_ENV = ("DASHSCOPE_API_KEY",)
#: Inputs per embeddings request that DashScope accepts.
EMBEDDING_BATCH = 10
#: ``reasoning_effort`` -> thinking budget in tokens (``none``/``minimal`` turn thinking off).
REASONING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}

_PARAMS = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "presence_penalty",
    "frequency_penalty", "n", "max_tokens", "seed", "stop", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "logprobs", "top_logprobs", "modalities", "audio", "reasoning_effort", "user",
    "input", "dimensions", "encoding_format", "query", "documents", "top_n", "return_documents",
}  # fmt: skip


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="dashscope",
        api_base=REGIONS[DEFAULT_REGION],
        api_base_env=("DASHSCOPE_API_BASE",),
        api_key_env=KEY_ENV,
        operations={"chat", "embedding", "rerank"},
        params=_PARAMS,
        options=("region",),
        description="Alibaba Cloud Model Studio (regions intl, us, cn, hk)",
    )


# --- endpoint --------------------------------------------------------------------------


def _region(call: Call) -> str:
    region = call.options.get("region") or env_value(("DASHSCOPE_REGION",)) or DEFAULT_REGION
    region = str(region).lower()
    if region not in REGIONS:
        raise errors.ConfigError(
            f"unknown DashScope region {region!r}; valid regions: "
            + ", ".join(f"{name} ({url.split('/')[2]})" for name, url in REGIONS.items())
        )
    return region


def _base(call: Call) -> Tuple[str, str]:
    """The base URL and a description of where it points (for error messages)."""
    explicit = call.api_base or env_value(("DASHSCOPE_API_BASE",))
    if explicit:
        return explicit.rstrip("/"), f"the custom api_base {explicit}"
    region = _region(call)
    return REGIONS[region], region


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    base, region = _base(call)
    if not call.api_key and not call.dry_run:
        raise errors.AuthenticationError(
            "no DashScope API key: pass api_key=... or set DASHSCOPE_API_KEY"
            f" (keys are bound to a region; this call would use {region})",
            provider=call.provider,
            model=call.model,
        )
    headers = {"Authorization": f"Bearer {call.api_key}"} if call.api_key else {}
    if call.operation == "rerank":
        # Rerank lives beside compatible-mode: .../compatible-api/v1/reranks
        if base.endswith("/compatible-mode/v1"):
            base = base[: -len("/compatible-mode/v1")] + "/compatible-api/v1"
        return Endpoint(base_url=base, path="/reranks", headers=headers)
    path = {"chat": "/chat/completions", "embedding": "/embeddings"}[call.operation]
    return Endpoint(base_url=base, path=path, headers=headers)


# --- checks before sending ---------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reject(param: str, allowed: str, value: Any) -> errors.InvalidRequestError:
    return errors.InvalidRequestError(
        f"dashscope: {param} must be {allowed}, got {value!r}", param=param, allowed=allowed
    )


def _check_stop(stop: Any) -> None:
    allowed = "a string, or a list of all strings, all token ids, or all token-id lists (not mixed)"
    if isinstance(stop, str):
        return
    if not isinstance(stop, list):
        raise _reject("stop", allowed, stop)
    kinds = set()
    for item in stop:
        if isinstance(item, str):
            kinds.add("string")
        elif _integer(item):
            kinds.add("token id")
        elif isinstance(item, list) and all(_integer(t) for t in item):
            kinds.add("token-id list")
        else:
            raise _reject("stop", allowed, stop)
    if len(kinds) > 1:
        raise _reject("stop", allowed, stop)


def check_chat_params(body: Dict[str, Any]) -> None:
    """Raise ``InvalidRequestError`` for values DashScope documents as out of range."""
    value = body.get("temperature")
    if value is not None and not (_number(value) and 0 <= value < 2):
        raise _reject("temperature", "a number in [0, 2)", value)
    value = body.get("top_p")
    if value is not None and not (_number(value) and 0 < value <= 1):
        raise _reject("top_p", "a number in (0, 1]", value)
    value = body.get("presence_penalty")
    if value is not None and not (_number(value) and -2 <= value <= 2):
        raise _reject("presence_penalty", "a number in [-2, 2]", value)
    value = body.get("n")
    if value is not None:
        if not (_integer(value) and 1 <= value <= 4):
            raise _reject("n", "an integer from 1 to 4", value)
        if body.get("tools") and value != 1:
            raise _reject("n", "1 when tools are given", value)
    value = body.get("seed")
    if value is not None and not (_integer(value) and 0 <= value <= 2**64 - 1):
        raise _reject("seed", "an integer from 0 to 2^64-1", value)
    if body.get("stop") is not None:
        _check_stop(body["stop"])


def _thinking(body: Dict[str, Any], stream: bool) -> Dict[str, Any]:
    body = dict(body)
    effort = body.pop("reasoning_effort", None)
    if effort is not None:
        if effort in ("none", "minimal"):
            body.setdefault("enable_thinking", False)
        elif effort in REASONING_BUDGETS:
            body.setdefault("enable_thinking", True)
            body.setdefault("thinking_budget", REASONING_BUDGETS[effort])
        else:
            raise _reject("reasoning_effort", "one of none, minimal, low, medium, high", effort)
    if not stream and "enable_thinking" not in body:
        # Qwen3 open-source models answer 400 to a non-streaming call with thinking on.
        body["enable_thinking"] = False
    return body


# --- requests and responses --------------------------------------------------------------


def _batches(body: Any) -> List[List[Any]]:
    """The embedding inputs in requests of at most ``EMBEDDING_BATCH`` (one batch when they fit)."""
    inputs = body.get("input")
    if not isinstance(inputs, list) or len(inputs) <= EMBEDDING_BATCH:
        return []
    return [inputs[i : i + EMBEDDING_BATCH] for i in range(0, len(inputs), EMBEDDING_BATCH)]


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> Optional[WireRequest]:
    body = dict(call.body)
    if call.operation == "chat":
        check_chat_params(body)
        body = _thinking(body, call.stream)
    elif call.operation == "embedding":
        batches = _batches(body)
        if batches:
            body["input"] = batches[0]
    return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=body)


@attrs.frozen
class _Merged:
    """Embedding batches answered so far (the state carried between batch requests)."""

    sent: int
    data: Tuple[Dict[str, Any], ...]
    usage: Tuple[Tuple[str, Any], ...]
    extra: Tuple[Tuple[str, Any], ...]


def _merge_embeddings(before: Optional[_Merged], result: Dict[str, Any]) -> _Merged:
    sent = before.sent if before else 0
    offset = sent * EMBEDDING_BATCH
    data = list(before.data) if before else []
    for item in result.get("data") or []:
        data.append({**item, "index": offset + int(item.get("index", 0))})
    usage = dict(before.usage) if before else {}
    for key, value in (result.get("usage") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            usage[key] = usage.get(key, 0) + value
    extra = dict(before.extra) if before else {}
    for key, value in result.items():
        if key not in ("data", "usage"):
            extra.setdefault(key, value)
    return _Merged(sent + 1, tuple(data), tuple(usage.items()), tuple(extra.items()))


@hookimpl
def transform_response(call: Call, response: WireResponse, step: Step) -> Union[Dict[str, Any], FollowUp, None]:
    if call.operation != "embedding":
        return None
    batches = _batches(call.body)
    result = openai.parse_response(call, response)
    if not batches:
        return result
    merged = _merge_embeddings(step.state, result)
    if merged.sent < len(batches):
        sent = response.request
        assert sent is not None  # the engine hands every response its request
        body = {**call.body, "input": batches[merged.sent]}
        return FollowUp(WireRequest("POST", sent.url, dict(sent.headers), json=body), state=merged)
    data = sorted(merged.data, key=lambda item: int(item["index"]))
    return {**dict(merged.extra), "data": data, "usage": dict(merged.usage)}


def _region_used(call: Call) -> str:
    try:
        return _base(call)[1]
    except errors.ConfigError:
        return "an unknown region"


# --- errors ------------------------------------------------------------------------------

_CONTENT_FILTER = {"datainspectionfailed", "data_inspection_failed"}
_THROTTLE = {"insufficient_quota", "limit_requests", "limit_burst_rate", "requests throttling triggered"}


@hookimpl
def map_error(call: Call, response: WireResponse) -> errors.ProviderError:
    fields = openai.error_fields(response)
    code = str(fields["code"] or "")
    lowered = code.lower()
    body = response.json_or_none()
    details = {"id": body.get("id")} if isinstance(body, dict) and body.get("id") else {}
    if lowered in _CONTENT_FILTER:
        return openai.build_error(call, response, errors.ContentFilterError, details=details)
    if lowered == "arrearage":
        return openai.build_error(call, response, errors.QuotaExceededError, details=details)
    if response.status == 429 or lowered.startswith("throttling") or lowered in _THROTTLE:
        return openai.build_error(call, response, errors.RateLimitError, retryable=True, details=details)
    if response.status == 401 or lowered == "invalid_api_key":
        message = (
            f"{fields['message']} (DashScope API keys are bound to a region; this call used"
            f" {_region_used(call)}: use that region's key, or pick the key's"
            " region with region=... or DASHSCOPE_REGION)"
        )
        return openai.build_error(call, response, errors.AuthenticationError, message=message, retryable=False, details=details)
    return openai.build_error(call, response, details=details)
