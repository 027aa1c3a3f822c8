"""modelport provider ``modelscope``: ModelScope API-Inference.

What differs from OpenAI: the token's several environment names; Qwen3 thinking that
must be off for non-streaming calls (and, when a caller forces it on, the answer is
fetched as a stream and assembled, all inside the hooks); 429 bodies under ``errors``
(plural) with ``modelscope-ratelimit-*`` headers; and image generation as an
asynchronous task: submit, then poll ``/tasks/{id}`` until ``SUCCEED`` or ``FAILED``,
expressed as ``FollowUp`` steps that the core drives for sync and async callers alike.
The plugin also adds ModelScope's image options to ``modelport image``.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

import attrs

from modelport.provider import (
    END_OF_STREAM,
    IGNORE_EVENT,
    Call,
    CliOptions,
    Endpoint,
    FollowUp,
    ProviderInfo,
    SSEDecoder,
    Step,
    WireRequest,
    WireResponse,
    errors,
    hookimpl,
    openai,
    stream_to_completion,
)

if TYPE_CHECKING:
    import argparse

__all__ = ["DEFAULT_BASE", "TOKEN_ENV", "POLL_INTERVAL", "TASK_TIMEOUT", "ImageTask"]

DEFAULT_BASE = "https://api-inference.modelscope.cn/v1"
#: Where the token is looked for after ``api_key``, in this order.
TOKEN_ENV = ("MODELSCOPE_TOKEN", "MODELSCOPE_API_KEY", "MODELSCOPE_SDK_TOKEN")
#: Seconds between polls of an image task, and the most a task may take (``poll_interval=``,
#: ``task_timeout=`` per call).
POLL_INTERVAL = 2.0
TASK_TIMEOUT = 300.0

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
        headers = {**endpoint.headers, "X-ModelScope-Async-Mode": "true"}
        return WireRequest("POST", endpoint.url, headers, json=dict(call.body))
    body = dict(call.body)
    if not call.stream:
        body.setdefault("enable_thinking", False)  # otherwise the API answers 400
        if body["enable_thinking"]:
            # Thinking only works streamed: stream it here, assemble it in transform_response.
            body["stream"] = True
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return openai.build_request(call, endpoint, body)


@hookimpl
def transform_response(call: Call, response: WireResponse, step: Step) -> Union[Dict[str, Any], FollowUp, None]:
    if call.operation == "image_generation":
        return _advance_image_task(call, response, step)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return _assemble(call, response)
    return None


def _assemble(call: Call, response: WireResponse) -> Dict[str, Any]:
    decoder = SSEDecoder()
    chunks = []
    ended = False
    for event in [*decoder.feed(response.content), *decoder.flush()]:
        item = openai.parse_chunk(call, event)
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
    result: Dict[str, Any] = stream_to_completion(chunks).to_dict()
    return result


# --- image generation: submit, then poll ------------------------------------------------------


@attrs.frozen
class ImageTask:
    """What the polling steps carry: the task and where to ask about it (never
    credentials: each poll copies its headers from the request before it)."""

    task_id: str
    poll_url: str


def _task_failed(call: Call, message: str, task_id: Optional[str], response: Optional[WireResponse] = None, **extra: Any) -> errors.TaskFailedError:
    return errors.TaskFailedError(
        message,
        status=response.status if response is not None else None,
        provider=call.provider,
        model=call.model,
        body=response.text if response is not None else None,
        details={"task_id": task_id},
        **extra,
    )


def _advance_image_task(call: Call, response: WireResponse, step: Step) -> Union[Dict[str, Any], FollowUp]:
    task: Optional[ImageTask] = step.state
    body = response.json_or_none()
    if not isinstance(body, dict):
        raise _task_failed(call, f"image task: expected JSON, got {response.text[:200]!r}", task.task_id if task else None, response)
    if task is None:
        task_id = body.get("task_id")
        if not task_id:
            raise _task_failed(call, f"image task: the submit answer has no task_id: {response.text[:200]!r}", None, response)
        base = _sent(response).url.rsplit("/images/generations", 1)[0]
        return _poll(call, ImageTask(str(task_id), f"{base}/tasks/{task_id}"), "SUBMITTED", step, response)
    status = str(body.get("task_status") or "")
    if status == _DONE:
        images = body.get("output_images") or []
        return {"created": _created(response), "data": [{"url": url} for url in images]}
    if status == _FAILED:
        reason = (body.get("errors") or {}).get("message") or "no reason given"
        raise _task_failed(call, f"image task {task.task_id} failed: {reason}", task.task_id, response, request_id=body.get("request_id"))
    return _poll(call, task, status or "PENDING", step, response)


def _created(response: WireResponse) -> int:
    """The answer's time from its HTTP ``Date`` header (hooks read no clock), else 0."""
    try:
        return int(parsedate_to_datetime(response.headers.get("date", "")).timestamp())
    except (TypeError, ValueError):
        return 0


def _sent(response: WireResponse) -> WireRequest:
    assert response.request is not None  # the engine hands every response its request
    return response.request


def _poll(call: Call, task: ImageTask, status: str, step: Step, response: WireResponse) -> FollowUp:
    timeout = float(call.options.get("task_timeout") or TASK_TIMEOUT)
    interval = float(call.options.get("poll_interval") or POLL_INTERVAL)
    if step.elapsed + interval > timeout:
        raise _task_failed(
            call, f"image task {task.task_id} still {status} after {step.elapsed:.1f}s (task_timeout={timeout:g}s)", task.task_id
        )
    headers = {k: v for k, v in _sent(response).headers.items() if k.lower() not in ("x-modelscope-async-mode", "content-type")}
    headers["X-ModelScope-Task-Type"] = "image_generation"
    return FollowUp(WireRequest("GET", task.poll_url, headers), delay=interval, status=status, state=task)


# --- errors ------------------------------------------------------------------------------------


@hookimpl
def map_error(call: Call, response: WireResponse) -> Optional[errors.ProviderError]:
    limits = {k: v for k, v in response.headers.items() if k.startswith("modelscope-ratelimit")}
    body = response.json_or_none()
    # ModelScope nests its error under "errors" (plural); OpenAI's reader takes the inner object.
    inner = body.get("errors") if isinstance(body, dict) and isinstance(body.get("errors"), dict) else None
    fields = openai.error_fields(response, inner)
    if response.status == 429:
        return openai.build_error(call, response, errors.RateLimitError, fields=fields, details={"ratelimit": limits})
    if not limits and inner is None:
        return None
    error = openai.map_error(call, response) if inner is None else openai.build_error(call, response, fields=fields)
    error.details["ratelimit"] = limits
    return error


# --- the CLI -----------------------------------------------------------------------------------


def _image_arguments(parser: "argparse.ArgumentParser") -> None:
    parser.add_argument("--negative-prompt", help="ModelScope: what the image should not show")
    parser.add_argument("--steps", type=int, help="ModelScope: sampling steps")
    parser.add_argument("--guidance", type=float, help="ModelScope: guidance scale")
    parser.add_argument("--image-url", help="ModelScope: input image for image-to-image models")


def _image_kwargs(args: "argparse.Namespace") -> Dict[str, Any]:
    names = ("negative_prompt", "steps", "guidance", "image_url")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


@hookimpl
def cli_commands() -> List[Any]:
    return [CliOptions("image", _image_arguments, _image_kwargs, title="ModelScope image options", providers=("modelscope",))]
