"""modelport provider ``dashscope``: Alibaba Cloud Model Studio (DashScope).

What differs from OpenAI: four regions with region-bound keys; parameter ranges checked
before sending (so a bad value costs no request); Qwen3 thinking that works only streamed
(off by default for non-streaming calls; a non-streaming call that asks to think is
fetched as a stream and assembled); ``reasoning_effort`` and Anthropic-style ``thinking``
expressed as ``enable_thinking`` / ``thinking_budget``; embeddings limited to 10 inputs a
request (larger lists are sent in batches and merged); rerank on the ``compatible-api``
path (query and documents checked before sending, answers checked for ``results`` and
their ``index``); and DashScope's error codes (throttling retried, arrears not, content
inspection typed, ``Range of input length should be [1, N]`` a
``ContextWindowExceededError``).

An explicit ``api_base`` that already ends with the operation's path (``.../chat/completions``,
``.../compatible-api/v1/reranks``, ``.../api/v1/services/aigc/text2image/image-synthesis``)
is used as it is.

Two operations have no OpenAI-compatible endpoint and use DashScope's native API (same
key, the region's native root, or an explicit ``api_base`` with its
``/compatible-mode/v1`` removed):

- image generation (qwen-image, wan2.x) is an asynchronous task: a submit with
  ``X-DashScope-Async: enable`` to ``/api/v1/services/aigc/text2image/image-synthesis``
  (``{"model", "input": {"prompt", "negative_prompt"}, "parameters": {"size": "W*H",
  ...}}``), then ``GET /api/v1/tasks/{id}`` until ``SUCCEEDED`` (image URLs) or
  ``FAILED`` / ``CANCELED`` / ``UNKNOWN`` (``TaskFailedError``), written as ``FollowUp``
  steps with ``poll_interval=`` / ``task_timeout=`` call options. The API only answers
  with URLs, so ``response_format="b64_json"`` is refused before sending.
- multimodal embeddings (``multimodal-embedding-v1``, ``tongyi-embedding-vision-*``,
  ``qwen3-vl-embedding``, ``qwen2.5-vl-embedding``) go to
  ``/api/v1/services/embeddings/multimodal-embedding/multimodal-embedding`` with
  ``{"input": {"contents": [{"text"} | {"image"} | ...]}}`` and come back in OpenAI's
  embeddings shape.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from email.utils import parsedate_to_datetime
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import attrs

from modelport.provider import (
    END_OF_STREAM,
    IGNORE_EVENT,
    Call,
    Endpoint,
    FollowUp,
    ProviderInfo,
    SSEDecoder,
    Step,
    WireRequest,
    WireResponse,
    env_value,
    errors,
    hookimpl,
    openai,
    stream_to_completion,
)

__all__ = [
    "REGIONS",
    "NATIVE_ROOTS",
    "IMAGE_REGIONS",
    "MULTIMODAL_EMBEDDING_REGIONS",
    "MULTIMODAL_EMBEDDING_MODELS",
    "EMBEDDING_BATCH",
    "REASONING_BUDGETS",
    "POLL_INTERVAL",
    "TASK_TIMEOUT",
    "ImageTask",
    "check_chat_params",
    "check_rerank_request",
    "native_size",
    "is_multimodal_embedding",
]

#: Region name -> OpenAI-compatible base URL.
REGIONS = {
    "intl": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",  # Singapore
    "us": "https://dashscope-us.aliyuncs.com/compatible-mode/v1",  # Virginia
    "cn": "https://dashscope.aliyuncs.com/compatible-mode/v1",  # Beijing
    "hk": "https://cn-hongkong.dashscope.aliyuncs.com/compatible-mode/v1",  # Hong Kong
}
DEFAULT_REGION = "intl"
_COMPATIBLE = "/compatible-mode/v1"
#: Region name -> root of the native API (``{root}/api/v1/...``): same hosts, same keys.
NATIVE_ROOTS = {name: url[: -len(_COMPATIBLE)] for name, url in REGIONS.items()}
#: Regions whose API reference documents text-to-image (``image-synthesis``) and multimodal
#: embeddings; a call routed to another region is refused before sending.
IMAGE_REGIONS = ("intl", "us", "cn")
MULTIMODAL_EMBEDDING_REGIONS = ("intl", "cn")
#: Model-name prefixes served by the native multimodal-embedding endpoint.
MULTIMODAL_EMBEDDING_MODELS = ("multimodal-embedding", "tongyi-embedding-vision", "qwen3-vl-embedding", "qwen2.5-vl-embedding")
IMAGE_PATH = "/services/aigc/text2image/image-synthesis"
MULTIMODAL_EMBEDDING_PATH = "/services/embeddings/multimodal-embedding/multimodal-embedding"
TASKS_PATH = "/tasks/"
#: Seconds between polls of an image task, and the most a task may take (``poll_interval=``,
#: ``task_timeout=`` per call). The docs suggest polling every few seconds; a task usually
#: takes one to two minutes, longer when queued.
POLL_INTERVAL = 3.0
TASK_TIMEOUT = 600.0
#: Suffixes stripped from an explicit ``api_base`` to reach the native root.
_BASE_SUFFIXES = (_COMPATIBLE, "/compatible-api/v1", "/api/v1")
KEY_ENV = ("DASHSCOPE_API_KEY",)
#: Inputs per embeddings request that DashScope accepts.
EMBEDDING_BATCH = 10
#: ``reasoning_effort`` -> thinking budget in tokens (``none``/``minimal`` turn thinking off).
REASONING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}

_PARAMS = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "presence_penalty",
    "frequency_penalty", "n", "max_tokens", "seed", "stop", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "logprobs", "top_logprobs", "modalities", "audio", "reasoning_effort", "user",
    "input", "dimensions", "encoding_format", "query", "documents", "top_n", "return_documents", "prompt", "size",
}  # fmt: skip


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="dashscope",
        api_base=REGIONS[DEFAULT_REGION],
        api_base_env=("DASHSCOPE_API_BASE",),
        api_key_env=KEY_ENV,
        operations={"chat", "embedding", "rerank", "image_generation"},
        params=_PARAMS,
        options=("region", "poll_interval", "task_timeout"),
        description="Alibaba Cloud Model Studio (regions intl, us, cn, hk; async text-to-image, multimodal embeddings)",
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


def is_multimodal_embedding(model: str) -> bool:
    """True for the models served by the native multimodal-embedding endpoint."""
    return model.lower().startswith(MULTIMODAL_EMBEDDING_MODELS)


def _native_api(call: Call, service: str, regions: Tuple[str, ...]) -> str:
    """``{root}/api/v1`` for a native-API service: an explicit base (its compatible-mode
    suffix removed), or the region's root when the docs list the service there."""
    explicit = call.api_base or env_value(("DASHSCOPE_API_BASE",))
    if explicit:
        root = explicit.rstrip("/")
        for path in (IMAGE_PATH, MULTIMODAL_EMBEDDING_PATH):
            if root.endswith("/api/v1" + path):  # the service's full URL, given as the base
                root = root[: -len(path)]
                break
        for suffix in _BASE_SUFFIXES:
            if root.endswith(suffix):
                root = root[: -len(suffix)]
                break
        return root + "/api/v1"
    region = _region(call)
    if region not in regions:
        offered = ", ".join(f"{name} ({NATIVE_ROOTS[name].split('/')[2]})" for name in regions)
        raise errors.InvalidRequestError(
            f"dashscope: {service} is not offered in region {region}; Model Studio documents it in: {offered}"
            " (choose one with region=... or DASHSCOPE_REGION, and use that region's key)",
            param="region",
            allowed=", ".join(regions),
        )
    return NATIVE_ROOTS[region] + "/api/v1"


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
    if call.operation == "image_generation":
        base = _native_api(call, "image generation (text-to-image)", IMAGE_REGIONS)
        return Endpoint(base_url=base, path=IMAGE_PATH, headers={**headers, "X-DashScope-Async": "enable"})
    if call.operation == "embedding" and is_multimodal_embedding(call.model):
        base = _native_api(call, "multimodal embedding", MULTIMODAL_EMBEDDING_REGIONS)
        return Endpoint(base_url=base, path=MULTIMODAL_EMBEDDING_PATH, headers=headers)
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


def _anthropic_thinking(body: Dict[str, Any]) -> None:
    """Anthropic-style ``thinking`` as ``enable_thinking`` / ``thinking_budget`` (explicit
    values win)."""
    thinking = body.pop("thinking", None)
    if thinking is None:
        return
    allowed = "{'type': 'enabled', 'budget_tokens': N} or {'type': 'disabled'}"
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        body.setdefault("enable_thinking", False)
    elif kind == "enabled":
        budget = thinking.get("budget_tokens")
        if budget is not None and not (_integer(budget) and budget >= 1):
            raise _reject("thinking", "budget_tokens as a whole number >= 1", thinking)
        body.setdefault("enable_thinking", True)
        if budget is not None:
            body.setdefault("thinking_budget", budget)
    else:
        raise _reject("thinking", allowed, thinking)


def _thinking(body: Dict[str, Any], stream: bool) -> Dict[str, Any]:
    body = dict(body)
    _anthropic_thinking(body)
    effort = body.pop("reasoning_effort", None)
    if effort is not None:
        if effort in ("none", "minimal"):
            body.setdefault("enable_thinking", False)
        elif effort in REASONING_BUDGETS:
            body.setdefault("enable_thinking", True)
            body.setdefault("thinking_budget", REASONING_BUDGETS[effort])
        else:
            raise _reject("reasoning_effort", "one of none, minimal, low, medium, high", effort)
    if not stream:
        # Qwen3 thinking works only streamed (a non-streaming call with it on is answered
        # 400): off unless the caller asked to think; then the answer is fetched as a
        # stream here and assembled in transform_response.
        body.setdefault("enable_thinking", False)
        if body["enable_thinking"]:
            body["stream"] = True
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body


def check_rerank_request(body: Mapping[str, Any]) -> None:
    """Raise ``InvalidRequestError`` for a rerank request the API cannot answer."""
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise _reject("query", "a non-empty string", query)
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        raise _reject("documents", "a non-empty list of documents", documents)
    top_n = body.get("top_n")
    if top_n is not None and not (_integer(top_n) and top_n >= 1):
        raise _reject("top_n", "a whole number >= 1", top_n)


# --- requests and responses --------------------------------------------------------------


def _batches(body: Any) -> List[List[Any]]:
    """The embedding inputs in requests of at most ``EMBEDDING_BATCH`` (one batch when they fit)."""
    inputs = body.get("input")
    if not isinstance(inputs, list) or len(inputs) <= EMBEDDING_BATCH:
        return []
    return [inputs[i : i + EMBEDDING_BATCH] for i in range(0, len(inputs), EMBEDDING_BATCH)]


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> Optional[WireRequest]:
    if call.operation == "image_generation":
        return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=image_request(call))
    if call.operation == "embedding" and is_multimodal_embedding(call.model):
        return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=multimodal_embedding_request(call))
    body = dict(call.body)
    if call.operation == "chat":
        check_chat_params(body)
        body = _thinking(body, call.stream)
    elif call.operation == "rerank":
        check_rerank_request(body)
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
    if call.operation == "image_generation":
        return _advance_image_task(call, response, step)
    if call.operation == "chat":
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return _assemble(call, response)  # a non-streaming call that asked to think
        return None
    if call.operation == "rerank":
        return _rerank_result(call, response)
    if call.operation != "embedding":
        return None
    if is_multimodal_embedding(call.model):
        return _multimodal_embeddings(call, response)
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


def _assemble(call: Call, response: WireResponse) -> Dict[str, Any]:
    """The streamed answer of a non-streaming call, as one chat completion."""
    decoder = SSEDecoder()
    chunks = []
    ended = False
    for event in [*decoder.feed(response.content), *decoder.flush()]:
        item = openai.parse_chunk(call, event)  # an error event is raised typed
        if item is END_OF_STREAM:
            ended = True
            break
        if item is not IGNORE_EVENT:
            chunks.append(item)
    if not ended or not chunks:
        raise errors.StreamInterruptedError(
            "the streamed answer (thinking works only streamed) ended before its end marker",
            provider=call.provider,
            model=call.model,
        )
    result: Dict[str, Any] = stream_to_completion(chunks).to_dict()
    return result


def _rerank_result(call: Call, response: WireResponse) -> Dict[str, Any]:
    """A rerank answer, checked: ``results`` with the integer ``index`` of each document."""
    result = openai.parse_response(call, response)
    results = result.get("results")
    if not isinstance(results, list):
        raise openai.malformed_response(call, response, f"a rerank answer needs a 'results' list: {response.text[:200]!r}")
    for position, item in enumerate(results):
        index = item.get("index") if isinstance(item, dict) else None
        if not _integer(index):
            raise openai.malformed_response(call, response, f"rerank results[{position}] has no integer 'index': {item!r:.200}")
    return result


# --- image generation: submit, then poll (native API) ---------------------------------------

_SIZE = re.compile(r"^\s*(\d+)\s*[x*X×]\s*(\d+)\s*$")
_SEED_MAX = 2**31 - 1
#: Task statuses: still working, done, and the ends that are failures.
_PENDING = ("PENDING", "RUNNING")
_DONE = "SUCCEEDED"
_FAILED = ("FAILED", "CANCELED", "UNKNOWN")


def native_size(size: Any) -> str:
    """OpenAI's ``"1024x1024"`` (or DashScope's ``"1024*1024"``) as DashScope's ``"1024*1024"``."""
    match = _SIZE.match(size) if isinstance(size, str) else None
    if match is None:
        raise _reject("size", "'WIDTHxHEIGHT' or 'WIDTH*HEIGHT' in pixels, e.g. '1328*1328'", size)
    return f"{match[1]}*{match[2]}"


def _check_task_options(options: Mapping[str, Any]) -> None:
    for name in ("poll_interval", "task_timeout"):
        value = options.get(name)
        if value is not None and not (_number(value) and value > 0):
            raise _reject(name, "a number of seconds > 0", value)


def _mapping(body: Dict[str, Any], key: str) -> Dict[str, Any]:
    """A provider field given as an object (``input`` / ``parameters`` passed through ``extra_body``)."""
    value = body.pop(key, None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _reject(key, "an object (its fields are merged into the request's)", value)
    return dict(value)


def image_request(call: Call) -> Dict[str, Any]:
    """The ``image-synthesis`` submit body for an OpenAI-shaped image request.

    ``prompt`` / ``negative_prompt`` go under ``input``; ``size`` (as ``W*H``), ``n``,
    ``seed``, ``prompt_extend``, ``watermark`` and other provider fields under
    ``parameters``; ``user`` has no DashScope counterpart and is not sent.
    """
    _check_task_options(call.options)
    body = dict(call.body)
    body.pop("model", None)
    body.pop("user", None)
    response_format = body.pop("response_format", None)
    if response_format not in (None, "url"):
        raise errors.InvalidRequestError(
            f"dashscope: response_format={response_format!r} is not offered: image generation answers with image"
            " URLs only (kept 24 hours); leave response_format unset (or 'url') and download them, e.g. with"
            " modelport.save_images",
            param="response_format",
            allowed="url",
        )
    wire_input = _mapping(body, "input")
    parameters = _mapping(body, "parameters")
    prompt = body.pop("prompt", None)
    if not isinstance(prompt, str) or not prompt.strip():
        raise _reject("prompt", "a non-empty string", prompt)
    wire_input["prompt"] = prompt
    negative = body.pop("negative_prompt", None)
    if negative is not None:
        if not isinstance(negative, str):
            raise _reject("negative_prompt", "a string", negative)
        wire_input["negative_prompt"] = negative
    if body.get("size") is not None:
        parameters["size"] = native_size(body.pop("size"))
    value = body.pop("n", None)
    if value is not None:
        if not (_integer(value) and value >= 1):
            raise _reject("n", "a whole number >= 1", value)
        parameters["n"] = value
    value = body.pop("seed", None)
    if value is not None:
        if not (_integer(value) and 0 <= value <= _SEED_MAX):
            raise _reject("seed", f"an integer from 0 to {_SEED_MAX}", value)
        parameters["seed"] = value
    for flag in ("prompt_extend", "watermark"):
        value = body.pop(flag, None)
        if value is not None:
            if not isinstance(value, bool):
                raise _reject(flag, "true or false", value)
            parameters[flag] = value
    parameters.update({key: value for key, value in body.items() if value is not None})
    wire: Dict[str, Any] = {"model": call.model, "input": wire_input}
    if parameters:
        wire["parameters"] = parameters
    return wire


@attrs.frozen
class ImageTask:
    """What the polling steps carry: the task and where (and with which headers) to ask about it."""

    task_id: str
    poll_url: str
    headers: Tuple[Tuple[str, str], ...]


def _created(response: WireResponse, output: Mapping[str, Any]) -> int:
    """When the task ended, without a clock read: the task's ``end_time``
    (``2025-01-01 12:00:00.123``, Beijing time per the docs) is not reliable across
    regions, so the HTTP ``Date`` header of the answer is used, else 0."""
    try:
        return int(parsedate_to_datetime(response.headers.get("date", "")).timestamp())
    except (TypeError, ValueError):
        return 0


def _task_failed(
    call: Call, message: str, task_id: Optional[str], response: Optional[WireResponse] = None, **extra: Any
) -> errors.TaskFailedError:
    details = {"task_id": task_id, **extra.pop("details", {})}
    return errors.TaskFailedError(
        message,
        status=response.status if response is not None else None,
        provider=call.provider,
        model=call.model,
        body=response.text if response is not None else None,
        details=details,
        **extra,
    )


def _advance_image_task(call: Call, response: WireResponse, step: Step) -> Union[Dict[str, Any], FollowUp]:
    task: Optional[ImageTask] = step.state
    body = response.json_or_none()
    output = body.get("output") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(output, dict):
        raise _task_failed(
            call, f"image task: expected a JSON object with 'output', got {response.text[:200]!r}", task.task_id if task else None, response
        )
    if task is None:  # the submit answer: {"output": {"task_id", "task_status": "PENDING"}, "request_id"}
        task_id = output.get("task_id")
        if not task_id:
            raise _task_failed(call, f"image task: the submit answer has no task_id: {response.text[:200]!r}", None, response)
        submitted = response.request
        assert submitted is not None  # the engine hands every response its request
        base = submitted.url.rsplit(IMAGE_PATH, 1)[0]
        headers = tuple((k, v) for k, v in submitted.headers.items() if k.lower() not in ("x-dashscope-async", "content-type"))
        task = ImageTask(str(task_id), f"{base}{TASKS_PATH}{task_id}", headers)
    status = str(output.get("task_status") or "").upper()
    if status == _DONE:
        return _image_result(call, response, body, output, task)
    if status in _FAILED:
        reason = output.get("message") or "no reason given"
        code = output.get("code")
        raise _task_failed(
            call,
            f"image task {task.task_id} ended {status}: {f'{code}: ' if code else ''}{reason}",
            task.task_id,
            response,
            code=code,
            request_id=body.get("request_id"),
            details={"task_status": status},
        )
    return _poll(call, task, status or "PENDING", step)


def _image_result(call: Call, response: WireResponse, body: Dict[str, Any], output: Dict[str, Any], task: ImageTask) -> Dict[str, Any]:
    """A finished task as OpenAI's images result; sub-images that failed are listed in
    ``failed_images`` (index, code, message), the successful ones kept."""
    images: List[Dict[str, Any]] = []
    failed: List[Dict[str, Any]] = []
    for index, item in enumerate(output.get("results") or []):
        if isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
            image: Dict[str, Any] = {"url": item["url"]}
            if item.get("actual_prompt"):
                image["revised_prompt"] = item["actual_prompt"]  # the prompt after prompt_extend rewrote it
            image.update({k: v for k, v in item.items() if k not in ("url", "actual_prompt")})
            images.append(image)
        else:
            entry = item if isinstance(item, dict) else {}
            failed.append({"index": index, "code": entry.get("code"), "message": entry.get("message")})
    if not images:
        reasons = "; ".join(f"{f['code']}: {f['message']}" for f in failed) or "the task returned no image"
        raise _task_failed(
            call,
            f"image task {task.task_id} produced no image: {reasons}",
            task.task_id,
            response,
            code=failed[0]["code"] if failed else None,
            request_id=body.get("request_id"),
            details={"task_status": _DONE, "failed_images": failed},
        )
    result: Dict[str, Any] = {"created": _created(response, output), "data": images}
    if isinstance(body.get("usage"), dict):
        result["usage"] = dict(body["usage"])  # {"image_count": n}
    result["task_id"] = task.task_id
    if body.get("request_id"):
        result["request_id"] = body["request_id"]
    if isinstance(output.get("task_metrics"), dict):
        result["task_metrics"] = dict(output["task_metrics"])
    if failed:
        result["failed_images"] = failed
    return result


def _poll(call: Call, task: ImageTask, status: str, step: Step) -> FollowUp:
    interval = float(call.options.get("poll_interval") or POLL_INTERVAL)
    timeout = float(call.options.get("task_timeout") or TASK_TIMEOUT)
    if step.elapsed + interval > timeout:
        raise _task_failed(
            call,
            f"image task {task.task_id} still {status} after {step.elapsed:.1f}s (task_timeout={timeout:g}s);"
            f" it may still finish upstream (GET /api/v1/tasks/{task.task_id} within 24 hours)",
            task.task_id,
            details={"task_status": status},
        )
    return FollowUp(WireRequest("GET", task.poll_url, dict(task.headers)), delay=interval, status=status, state=task)


# --- multimodal embeddings (native API) -------------------------------------------------------


def _content(item: Any, position: int) -> Dict[str, Any]:
    where = f"input[{position}]"
    if isinstance(item, str):
        return {"text": item}
    if isinstance(item, dict):
        kind = item.get("type")
        if kind is None and item:
            return dict(item)  # DashScope's own content object: {"text"}, {"image"}, {"video"}, ...
        if kind == "text" and isinstance(item.get("text"), str):
            return {"text": item["text"]}
        if kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str) and url:
                return {"image": url}
    raise errors.InvalidRequestError(
        f"dashscope: {where} must be a string, a content object such as {{'image': url}} or {{'video': url}},"
        f" or an OpenAI text / image_url part, got {item!r:.80}",
        param=where,
        allowed="string, {'text'|'image'|'video': ...}, {'type': 'text'|'image_url', ...}",
    )


def multimodal_embedding_request(call: Call) -> Dict[str, Any]:
    """The native multimodal-embedding body: ``input`` items become ``input.contents``,
    ``dimensions`` becomes ``parameters.dimension``, other provider fields go to ``parameters``."""
    body = dict(call.body)
    body.pop("model", None)
    body.pop("user", None)
    encoding = body.pop("encoding_format", None)
    if encoding not in (None, "float", "base64"):  # the API sends floats; base64 is encoded on the way back
        raise _reject("encoding_format", "'float' or 'base64'", encoding)
    parameters = _mapping(body, "parameters")
    items = body.pop("input", None)
    items = [items] if isinstance(items, (str, dict)) else items
    if not isinstance(items, list) or not items:
        raise _reject("input", "a string, a content object, or a non-empty list of them", items)
    dimensions = body.pop("dimensions", None)
    if dimensions is not None:
        parameters["dimension"] = dimensions
    parameters.update({key: value for key, value in body.items() if value is not None})
    wire: Dict[str, Any] = {"model": call.model, "input": {"contents": [_content(item, i) for i, item in enumerate(items)]}}
    if parameters:
        wire["parameters"] = parameters
    return wire


def _multimodal_embeddings(call: Call, response: WireResponse) -> Dict[str, Any]:
    body = openai.parse_response(call, response)
    output = body.get("output")
    items = output.get("embeddings") if isinstance(output, dict) else None
    if not isinstance(items, list):
        raise openai.malformed_response(call, response, f"a multimodal-embedding answer needs output.embeddings: {response.text[:200]!r}")
    data = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
            raise openai.malformed_response(call, response, f"output.embeddings[{position}] has no embedding list")
        index = item.get("index")
        entry: Dict[str, Any] = {"object": "embedding", "index": index if _integer(index) else position, "embedding": item["embedding"]}
        entry.update({k: v for k, v in item.items() if k not in entry})  # "type": text / image / video
        if call.body.get("encoding_format") == "base64":  # OpenAI's: little-endian float32, base64
            vector = entry["embedding"]
            entry["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append(entry)
    data.sort(key=lambda entry: int(entry["index"]))
    native: Dict[str, Any] = body["usage"] if isinstance(body.get("usage"), dict) else {}
    tokens = native.get("input_tokens", 0)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens, **{k: v for k, v in native.items() if k != "input_tokens"}}
    result: Dict[str, Any] = {"object": "list", "data": data, "model": call.model, "usage": usage}
    if body.get("request_id"):
        result["request_id"] = body["request_id"]
    return result


@hookimpl
def encode_response(call: Call, result: Dict[str, Any]) -> Optional[WireResponse]:
    """The native multimodal-embedding answer for an OpenAI embeddings result (other
    calls use OpenAI's encoder: compatible mode answers in OpenAI's shapes)."""
    if call.operation != "embedding" or not is_multimodal_embedding(call.model):
        return None
    embeddings = [{k: v for k, v in item.items() if k != "object"} for item in result.get("data") or []]
    for item in embeddings:
        if isinstance(item.get("embedding"), str):  # a base64 result: the API sent floats
            raw = base64.b64decode(item["embedding"])
            item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    usage = dict(result.get("usage") or {})
    native_usage = {"input_tokens": usage.pop("prompt_tokens", 0), **{k: v for k, v in usage.items() if k != "total_tokens"}}
    wire: Dict[str, Any] = {"output": {"embeddings": embeddings}, "usage": native_usage}
    if result.get("request_id"):
        wire["request_id"] = result["request_id"]
    return WireResponse(200, {"content-type": "application/json"}, openai.dumps(wire).encode("utf-8"))


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
    if openai.is_context_window_error(response.status, code, fields["message"]):
        # "Range of input length should be [1, N]" (code InvalidParameter, or
        # invalid_parameter_error in compatible mode)
        return openai.build_error(call, response, errors.ContextWindowExceededError, details=details)
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
