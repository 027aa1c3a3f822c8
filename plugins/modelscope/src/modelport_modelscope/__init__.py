"""modelport provider ``modelscope``: ModelScope API-Inference.

What differs from OpenAI: the token's several environment names; Qwen3 thinking that
must be off for non-streaming calls (and, when a caller forces it on, the answer is
fetched as a stream and assembled, all inside the hooks); 429 bodies under ``errors``
(plural) with ``modelscope-ratelimit-*`` headers; and image generation as an
asynchronous task: submit, then poll ``/tasks/{id}`` until ``SUCCEED`` or ``FAILED``,
expressed as ``FollowUp`` steps that the core drives for sync and async callers alike.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Union

from modelport import (
    END_OF_STREAM,
    IGNORE_EVENT,
    Call,
    Endpoint,
    FollowUp,
    ProviderInfo,
    SSEDecoder,
    WireRequest,
    WireResponse,
    errors,
    hookimpl,
    stream_to_completion,
)
from modelport.openai_wire import OpenAIWire, build_error

__all__ = ["DEFAULT_BASE", "TOKEN_ENV", "POLL_INTERVAL", "TASK_TIMEOUT"]

DEFAULT_BASE = "https://api-inference.modelscope.cn/v1"
#: Where the token is looked for after ``api_key``, in this order.
TOKEN_ENV = ("MODELSCOPE_TOKEN", "MODELSCOPE_API_KEY", "MODELSCOPE_SDK_TOKEN")
#: Seconds between polls of an image task, and the most a task may take (``poll_interval=``,
#: ``task_timeout=`` per call).
POLL_INTERVAL = 2.0
TASK_TIMEOUT = 300.0

_WIRE = OpenAIWire()
_DONE, _FAILED = "SUCCEED", "FAILED"


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="modelscope",
        api_base=DEFAULT_BASE,
        api_base_env=("MODELSCOPE_API_BASE",),
        api_key_env=TOKEN_ENV,
        operations={"chat", "image_generation"},
        options=("poll_interval", "task_timeout"),
        description="ModelScope API-Inference (chat, vision, async image generation)",
    )


@hookimpl
def resolve_endpoint(call: Call) -> Optional[Endpoint]:
    if not call.api_key and not call.dry_run:
        raise errors.AuthenticationError(
            "no ModelScope token: pass api_key=... or set one of " + ", ".join(TOKEN_ENV) + " (tried in that order)",
            provider=call.provider,
            model=call.model,
        )
    return None  # the OpenAI endpoint rules: api_base, MODELSCOPE_API_BASE, the default


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> Optional[WireRequest]:
    if call.operation == "image_generation":
        return _submit_image_task(call, endpoint)
    body = dict(call.body)
    if not call.stream:
        body.setdefault("enable_thinking", False)  # otherwise the API answers 400
        if body["enable_thinking"]:
            # Thinking only works streamed: stream it here, assemble it in transform_response.
            body["stream"] = True
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            call.state["assemble_stream"] = True
    return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=body)


@hookimpl
def transform_response(call: Call, response: WireResponse) -> Union[Dict[str, Any], FollowUp, None]:
    if call.operation == "image_generation":
        return _advance_image_task(call, response)
    if call.state.get("assemble_stream"):
        return _assemble(call, response)
    return None


def _assemble(call: Call, response: WireResponse) -> Dict[str, Any]:
    decoder = SSEDecoder()
    chunks = []
    ended = False
    for event in [*decoder.feed(response.content), *decoder.flush()]:
        item = _WIRE.parse_stream_chunk(call, event)
        if item is END_OF_STREAM:
            ended = True
            break
        if item is not IGNORE_EVENT:
            chunks.append(item)
    if not ended or not chunks:
        raise errors.StreamInterruptedError(
            "the streamed answer (thinking needs streaming) ended before its end marker",
            provider=call.provider,
            model=call.model,
        )
    return stream_to_completion(chunks).to_dict()


# --- image generation: submit, then poll ------------------------------------------------------


def _submit_image_task(call: Call, endpoint: Endpoint) -> WireRequest:
    call.state["started"] = time.monotonic()
    call.state["base"] = endpoint.base_url.rstrip("/")
    call.state["headers"] = dict(endpoint.headers)
    headers = {**endpoint.headers, "X-ModelScope-Async-Mode": "true"}
    return WireRequest("POST", endpoint.url, headers, json=call.body)


def _task_failed(call: Call, message: str, response: Optional[WireResponse] = None, **extra: Any) -> errors.TaskFailedError:
    return errors.TaskFailedError(
        message,
        status=response.status if response is not None else None,
        provider=call.provider,
        model=call.model,
        body=response.text if response is not None else None,
        details={"task_id": call.state.get("task_id")},
        **extra,
    )


def _advance_image_task(call: Call, response: WireResponse) -> Union[Dict[str, Any], FollowUp]:
    body = response.json_or_none()
    if not isinstance(body, dict):
        raise _task_failed(call, f"image task: expected JSON, got {response.text[:200]!r}", response)
    state = call.state
    if "task_id" not in state:
        task_id = body.get("task_id")
        if not task_id:
            raise _task_failed(call, f"image task: the submit answer has no task_id: {response.text[:200]!r}", response)
        state["task_id"] = task_id
        return _poll(call, "SUBMITTED")
    status = str(body.get("task_status") or "")
    if status == _DONE:
        images = body.get("output_images") or []
        return {"created": int(time.time()), "data": [{"url": url} for url in images]}
    if status == _FAILED:
        reason = (body.get("errors") or {}).get("message") or "no reason given"
        raise _task_failed(call, f"image task {state['task_id']} failed: {reason}", response, request_id=body.get("request_id"))
    return _poll(call, status or "PENDING")


def _poll(call: Call, status: str) -> FollowUp:
    options = call.options
    timeout = float(options.get("task_timeout") or TASK_TIMEOUT)
    interval = float(options.get("poll_interval") or POLL_INTERVAL)
    elapsed = time.monotonic() - call.state["started"]
    if elapsed + interval > timeout:
        raise _task_failed(call, f"image task {call.state['task_id']} still {status} after {elapsed:.1f}s (task_timeout={timeout:g}s)")
    url = f"{call.state['base']}/tasks/{call.state['task_id']}"
    headers = {**call.state["headers"], "X-ModelScope-Task-Type": "image_generation"}
    return FollowUp(WireRequest("GET", url, headers), delay=interval, status=status)


# --- errors ------------------------------------------------------------------------------------


@hookimpl
def map_error(call: Call, response: WireResponse) -> Optional[errors.ProviderError]:
    limits = {k: v for k, v in response.headers.items() if k.startswith("modelscope-ratelimit")}
    if response.status == 429:
        return build_error(call, response, errors.RateLimitError, details={"ratelimit": limits})
    if not limits:
        return None
    error = _WIRE.map_error(call, response)
    error.details["ratelimit"] = limits
    return error

