"""modelport provider ``modelscope``: ModelScope API-Inference.

What differs from OpenAI: the token's several environment names; Qwen3 thinking that
must be off for non-streaming calls (and, when a caller asks for it with
``enable_thinking=True``, Anthropic-style ``thinking={"type": "enabled", ...}`` or a
``reasoning_effort`` other than none / minimal, the answer is fetched as a stream and
assembled, all inside the hooks; ``thinking.budget_tokens`` becomes ``thinking_budget``);
429 bodies under ``errors`` (plural) with ``modelscope-ratelimit-*`` headers; a prompt
over the context window (``Range of input length should be [1, N]``, ``maximum context
length``) as ``ContextWindowExceededError``; and image generation as an asynchronous
task: submit, then poll ``/tasks/{id}`` until ``SUCCEED`` or ``FAILED``, expressed as
``FollowUp`` steps that the core drives for sync and async callers alike. The API
answers with one image URL per task: ``response_format="b64_json"`` and ``n`` > 1 are
refused before sending. The plugin also adds ModelScope's image options to
``modelport image``.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

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

__all__ = ["DEFAULT_BASE", "TOKEN_ENV", "POLL_INTERVAL", "TASK_TIMEOUT", "IMAGE_PROMPT_MAX_CHARS", "ImageTask", "image_body"]

DEFAULT_BASE = "https://api-inference.modelscope.cn/v1"
#: Where the token is looked for after ``api_key``, in this order.
TOKEN_ENV = ("MODELSCOPE_TOKEN", "MODELSCOPE_API_KEY", "MODELSCOPE_SDK_TOKEN")
#: Seconds between polls of an image task, and the most a task may take (``poll_interval=``,
#: ``task_timeout=`` per call).
POLL_INTERVAL = 2.0
TASK_TIMEOUT = 300.0
#: ModelScope's documented limit: a prompt shorter than 2000 characters (``modelport images`` checks it).
IMAGE_PROMPT_MAX_CHARS = 1999

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


def _reject(param: str, message: str, allowed: str) -> errors.InvalidRequestError:
    return errors.InvalidRequestError(f"modelscope: {message}", param=param, allowed=allowed)


def image_body(body: Mapping[str, Any]) -> Dict[str, Any]:
    """The image-task submit body: ``response_format`` and ``n`` checked and left out (the
    API documents neither: it answers with one image URL per task)."""
    out = dict(body)
    response_format = out.pop("response_format", None)
    if response_format not in (None, "url"):
        raise _reject(
            "response_format",
            f"response_format={response_format!r} is not offered: image generation answers with an image URL;"
            " leave response_format unset (or 'url') and download it, e.g. with modelport.save_images",
            "url",
        )
    n = out.pop("n", None)
    if n is not None and n != 1:
        raise _reject(
            "n", f"n={n!r} is not offered: an image task makes one image; submit one call per image", "1"
        )
    return out


def _thinking(body: Dict[str, Any]) -> None:
    """Anthropic-style ``thinking`` and ``reasoning_effort`` as ``enable_thinking`` (and
    ``thinking_budget``); values the caller set explicitly win."""
    thinking = body.pop("thinking", None)
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
        if kind not in ("enabled", "disabled") or (
            budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1)
        ):
            raise _reject(
                "thinking",
                f"thinking must be {{'type': 'enabled', 'budget_tokens': N}} or {{'type': 'disabled'}}, got {thinking!r:.80}",
                "{'type': 'enabled', 'budget_tokens': N} or {'type': 'disabled'}",
            )
        body.setdefault("enable_thinking", kind == "enabled")
        if kind == "enabled" and budget is not None:
            body.setdefault("thinking_budget", budget)
    effort = body.get("reasoning_effort")
    if effort is not None:
        body.setdefault("enable_thinking", effort not in ("none", "minimal"))


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> Optional[WireRequest]:
    if call.operation == "image_generation":
        headers = {**endpoint.headers, "X-ModelScope-Async-Mode": "true"}
        return WireRequest("POST", endpoint.url, headers, json=image_body(call.body))
    body = dict(call.body)
    _thinking(body)
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
    if inner is None:
        error = openai.map_error(call, response)
    else:
        context = openai.is_context_window_error(response.status, fields["code"], fields["message"])
        error = openai.build_error(call, response, errors.ContextWindowExceededError if context else None, fields=fields)
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
