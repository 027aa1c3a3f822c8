"""A third-party modelport provider: the Quill API (sample plugin).

Quill lives at ``https://api.quill.example`` (``QUILL_API_BASE`` or ``api_base=`` move it)
and takes its key, from ``QUILL_API_KEY`` or ``api_key=``, in the ``Quill-Token`` header
(declared secret, so ``--dry-run``, logs and reprs redact it). The mapping:

- chat, ``POST /v2/complete``: ``messages`` become the ``dialogue`` of
  ``{"who", "says"}`` (``user`` is ``human``, ``assistant`` is ``quill``, ``system`` and
  ``developer`` are ``rules``; a list of text parts is joined with newlines);
  ``temperature`` is ``knobs.heat``, ``max_completion_tokens`` (else ``max_tokens``) is
  ``knobs.cap``; ``flow`` is always sent (``stream``). Keyword arguments that are not
  OpenAI parameters are Quill's own fields, sent at the top level. Quill reads text only:
  tool messages, tool calls and image, audio, file or video parts raise
  ``InvalidRequestError``; the core refuses the other OpenAI parameters (``params``).
- the answer ``{"ref", "engine", "when", "said", "halt", "counts": {"in", "out"}}`` is one
  choice: ``ref`` / ``engine`` / ``when`` are ``id`` / ``model`` / ``created``, ``said`` is
  the content, ``halt`` ``natural`` is ``stop`` and ``cap`` is ``length`` (other values
  are kept), ``counts`` are the prompt and completion tokens.
- stream (``"flow": true``): NDJSON. A ``piece`` line is a content chunk; the last line
  carries ``halt`` and ``counts``: a finish chunk and a usage chunk, then the end.
- images, ``POST /v2/pictures`` ``{"model", "describe": prompt, "dims": size}`` answers
  ``{"job"}``; ``GET /v2/jobs/{job}`` is polled every ``poll_every`` seconds (provider
  option, default 1.0) until its ``phase`` is ``ready`` (``links`` become ``data[].url``)
  or ``broken`` (``TaskFailedError`` with ``why``), for at most ``give_up_after`` seconds
  (provider option, default 120; then ``TaskFailedError``). Each poll reports the phase
  last seen (``queued`` after the submit) to ``on_progress``. ``created`` is the ``Date``
  header of the final answer (Quill's job answer has no timestamp). Only ``prompt`` and
  ``size`` (default ``1024x1024``) are accepted.
- errors ``{"trouble": {"what", "tag", "wait"}}``: ``wait`` (seconds) is the delay
  before a retry; tag ``no_credit`` is ``QuotaExceededError`` (not retried); the class
  otherwise follows the status (429 and 5xx, among them 503 ``overloaded``, are retried).
"""

from __future__ import annotations

import email.utils
import json
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Union
from urllib.parse import quote

from modelport.provider import (
    Call,
    Endpoint,
    FollowUp,
    InvalidRequestError,
    ProviderInfo,
    Step,
    StreamEvent,
    WireRequest,
    WireResponse,
    end_of_stream,
    errors,
    hookimpl,
    openai,
)

CHAT_PATH = "/v2/complete"
PICTURES_PATH = "/v2/pictures"
JOBS_PATH = "/v2/jobs/"
TOKEN_HEADER = "Quill-Token"
#: The OpenAI parameters Quill has (chat, then images); the core refuses the others.
CHAT_PARAMS = ("messages", "temperature", "max_tokens", "max_completion_tokens", "stream", "stream_options")
IMAGE_PARAMS = ("prompt", "size")
PARAMS = CHAT_PARAMS + IMAGE_PARAMS
_MAPPED = frozenset({"model", *PARAMS})
DEFAULT_SIZE = "1024x1024"
DEFAULT_POLL_EVERY = 1.0
DEFAULT_GIVE_UP_AFTER = 120.0
_WHO = {"system": "rules", "developer": "rules", "user": "human", "assistant": "quill"}
#: Quill's halt values -> OpenAI's finish reasons, and back (OpenAI's others have no Quill name).
HALT = {"natural": "stop", "cap": "length"}
_QUILL_HALT = {"stop": "natural", "length": "cap"}
_CHUNK = "chat.completion.chunk"
#: Fields of Quill's chat answers and stream lines, and of OpenAI's results and chunks: any
#: other field is kept as it is, in both directions (the types are lossless).
_QUILL_FIELDS = frozenset({"ref", "engine", "when", "said", "piece", "halt", "counts"})
_OPENAI_FIELDS = frozenset({"id", "object", "created", "model", "choices", "usage"})
_JSON = {"content-type": "application/json"}
_NDJSON = {"content-type": "application/x-ndjson"}


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="quill",
        api_base="https://api.quill.example",
        api_base_env=("QUILL_API_BASE",),
        api_key_env=("QUILL_API_KEY",),
        operations={"chat", "image_generation"},
        params=PARAMS,
        options=("poll_every", "give_up_after"),
        stream_framing="ndjson",
        secret_headers={TOKEN_HEADER},
        description="the Quill API (sample plugin: own wire format, NDJSON streams, polled image jobs)",
    )


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    base = openai.resolve_endpoint(call).base_url  # api_base=, QUILL_API_BASE, or the default
    path = PICTURES_PATH if call.operation == "image_generation" else CHAT_PATH
    headers = {TOKEN_HEADER: call.api_key} if call.api_key else {}
    return Endpoint(base_url=base, path=path, headers=headers)


# --- requests ----------------------------------------------------------------------------


def _line(message: Mapping[str, Any], position: int) -> Dict[str, str]:
    where = f"messages[{position}]"
    who = _WHO.get(message.get("role", ""))
    if who is None or message.get("tool_calls") or message.get("function_call"):
        raise InvalidRequestError(
            f"{where}: Quill has no tool calling and speaks system, user and assistant turns only", param=where
        )
    content = message.get("content")
    if isinstance(content, list):
        if not all(isinstance(part, dict) and part.get("type") == "text" for part in content):
            raise InvalidRequestError(
                f"{where}: Quill reads text only (no image, audio, file or video parts)", param=where
            )
        content = "\n".join(str(part.get("text", "")) for part in content)
    if not isinstance(content, str):
        raise InvalidRequestError(f"{where}: a Quill line needs text content", param=where)
    return {"who": who, "says": content}


def _extras(body: Mapping[str, Any]) -> Dict[str, Any]:
    """Keyword arguments that are not OpenAI parameters: Quill's own fields (top level)."""
    return {key: value for key, value in body.items() if key not in _MAPPED}


def _seconds(call: Call, name: str, default: float) -> float:
    value = call.options.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidRequestError(f"{name} must be a positive number of seconds, not {value!r}", param=name)
    return float(value)


def _image_request(call: Call, endpoint: Endpoint) -> WireRequest:
    body = call.body
    _seconds(call, "poll_every", DEFAULT_POLL_EVERY)  # refused before sending, not mid-task
    _seconds(call, "give_up_after", DEFAULT_GIVE_UP_AFTER)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise InvalidRequestError("Quill needs a text prompt to draw", param="prompt")
    size = body.get("size")
    wire = {
        **_extras(body),
        "model": call.model,
        "describe": prompt,
        "dims": size if isinstance(size, str) and size else DEFAULT_SIZE,
    }
    return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=wire)


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> WireRequest:
    if call.operation == "image_generation":
        return _image_request(call, endpoint)
    body = call.body
    knobs: Dict[str, Any] = {}
    if body.get("temperature") is not None:
        knobs["heat"] = body["temperature"]
    cap = body.get("max_completion_tokens")
    if cap is None:
        cap = body.get("max_tokens")
    if cap is not None:
        knobs["cap"] = cap
    wire = {
        **_extras(body),
        "model": call.model,
        "dialogue": [_line(message, position) for position, message in enumerate(body["messages"])],
        "knobs": knobs,
        "flow": bool(call.stream),
    }
    return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=wire)


# --- responses and streams ---------------------------------------------------------------


class Job(NamedTuple):
    """A submitted picture job: what each poll needs."""

    job: str
    poll_url: str
    poll_every: float
    give_up_after: float


def _head(data: Mapping[str, Any], kind: str) -> Dict[str, Any]:
    """OpenAI's head for a Quill answer or line, with the fields Quill adds kept."""
    extra = {key: value for key, value in data.items() if key not in _QUILL_FIELDS and key not in _OPENAI_FIELDS}
    return {**extra, "id": data.get("ref"), "object": kind, "created": data.get("when"), "model": data.get("engine")}


def _finish(value: Any) -> Any:
    return HALT.get(value, value) if isinstance(value, str) else value


def _usage(counts: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(counts, dict):
        return None
    prompt, completion = counts.get("in") or 0, counts.get("out") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _created(response: WireResponse) -> Optional[int]:
    date = response.headers.get("date")
    if not date:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(date).timestamp())
    except (TypeError, ValueError):
        return None


def _failed(call: Call, message: str) -> errors.ProviderError:
    return errors.TaskFailedError(message, provider=call.provider, model=call.model)


def _image_step(call: Call, response: WireResponse, step: Step) -> Union[Dict[str, Any], FollowUp]:
    data = openai.parse_response(call, response)
    job: Optional[Job] = step.state
    phase: Any
    if job is None:  # the submit answer
        job_id = data.get("job")
        if not isinstance(job_id, str) or not job_id:
            raise openai.malformed_response(
                call, response, f"a Quill picture answer needs a job: {response.text[:200]!r}"
            )
        request = response.request
        assert request is not None  # the engine hands every response its request
        base = request.url.split("?", 1)[0].rsplit(PICTURES_PATH, 1)[0]
        job = Job(
            job=job_id,
            poll_url=f"{base}{JOBS_PATH}{quote(job_id, safe='')}",
            poll_every=_seconds(call, "poll_every", DEFAULT_POLL_EVERY),
            give_up_after=_seconds(call, "give_up_after", DEFAULT_GIVE_UP_AFTER),
        )
        phase = "queued"
    else:
        phase = data.get("phase")
        if phase == "ready":
            links = data.get("links")
            if not isinstance(links, list):
                raise openai.malformed_response(
                    call, response, f"a ready Quill job needs links: {response.text[:200]!r}"
                )
            result: Dict[str, Any] = {"data": [{"url": url} for url in links]}
            created = _created(response)
            if created is not None:
                result = {"created": created, **result}
            return result
        if phase == "broken":
            raise _failed(call, f"Quill job {job.job} broke: {data.get('why') or 'no reason given'}")
        if not isinstance(phase, str):
            raise openai.malformed_response(
                call, response, f"a Quill job answer needs a phase: {response.text[:200]!r}"
            )
    if step.elapsed + job.poll_every > job.give_up_after:  # the engine's clock: hooks never read one
        raise _failed(
            call, f"Quill job {job.job} still {phase} after {step.elapsed:.1f}s (give_up_after={job.give_up_after:g})"
        )
    # The request that got this answer carries the auth header (the state does not: it shows in reprs).
    headers = dict(response.request.headers) if response.request is not None else {}
    poll = WireRequest("GET", job.poll_url, headers)
    return FollowUp(poll, delay=job.poll_every, status=phase, state=job)


@hookimpl
def transform_response(call: Call, response: WireResponse, step: Step) -> Union[Dict[str, Any], FollowUp]:
    if call.operation == "image_generation":
        return _image_step(call, response, step)
    data = openai.parse_response(call, response)  # the JSON object, or MalformedResponseError
    said = data.get("said")
    if not isinstance(said, str):
        raise openai.malformed_response(call, response, f"a Quill answer needs said: {response.text[:200]!r}")
    message = {"role": "assistant", "content": said, "refusal": None}
    choice = {"index": 0, "message": message, "finish_reason": _finish(data.get("halt")), "logprobs": None}
    return {**_head(data, "chat.completion"), "choices": [choice], "usage": _usage(data.get("counts"))}


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    try:
        line = json.loads(event.data)  # NDJSON: one line per event
    except ValueError:
        line = None
    if not isinstance(line, dict):
        raise errors.MalformedStreamError(
            f"a Quill stream line is not a JSON object: {event.data[:200]!r}", provider=call.provider, model=call.model
        )
    if "trouble" in line:  # an error reported in the middle of the stream
        trouble = line["trouble"] if isinstance(line["trouble"], dict) else {}
        raise openai.stream_error(call, {"error": {"message": trouble.get("what"), "code": trouble.get("tag")}})
    if "halt" not in line:
        delta = {"content": line.get("piece") or ""}
        return {
            **_head(line, _CHUNK),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        }
    # The last line carries the finish reason and the usage: two chunks, then the end.
    finish = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": _finish(line.get("halt"))}
    chunks = [{**_head(line, _CHUNK), "choices": [finish]}]
    usage = _usage(line.get("counts"))
    if usage is not None:
        chunks.append({**_head(line, _CHUNK), "choices": [], "usage": usage})
    return end_of_stream(*chunks)


# --- errors ------------------------------------------------------------------------------


@hookimpl
def map_error(call: Call, response: WireResponse) -> Optional[errors.ProviderError]:
    body = response.json_or_none()
    trouble = body.get("trouble") if isinstance(body, dict) else None
    if not isinstance(trouble, dict):
        return None  # not Quill's envelope (a proxy's HTML page): OpenAI's reader takes it
    fields = openai.error_fields(response, {"message": trouble.get("what"), "code": trouble.get("tag")})
    wait = trouble.get("wait")
    retry_after = float(wait) if isinstance(wait, (int, float)) and not isinstance(wait, bool) else None
    if trouble.get("tag") == "no_credit":  # billing: waiting does not cure it
        return openai.build_error(call, response, errors.QuotaExceededError, fields=fields)
    return openai.build_error(call, response, fields=fields, retry_after=retry_after)


# --- encoders: OpenAI shapes -> Quill's wire (mock_response and the conformance kit) -----


def _quill_head(data: Mapping[str, Any]) -> Dict[str, Any]:
    """Quill's head for an OpenAI result or chunk, with the fields OpenAI's has beyond it kept."""
    extra = {key: value for key, value in data.items() if key not in _OPENAI_FIELDS and key not in _QUILL_FIELDS}
    return {**extra, "ref": data.get("id"), "engine": data.get("model"), "when": data.get("created")}


def _quill_counts(usage: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(usage, dict):
        return None
    return {"in": usage.get("prompt_tokens", 0), "out": usage.get("completion_tokens", 0)}


def _quill_halt(reason: Any) -> str:
    return _QUILL_HALT.get(reason, "natural") if isinstance(reason, str) else "natural"


@hookimpl
def encode_response(call: Call, result: Dict[str, Any]) -> Optional[WireResponse]:
    if call.operation != "chat":
        return None  # a picture job takes several answers: not one body (OpenAI's encoding)
    choices = result.get("choices") or [{}]
    choice = choices[0]  # Quill says one thing: a result with several choices is written as its first
    message = choice.get("message") or {}
    body: Dict[str, Any] = {
        **_quill_head(result),
        "said": message.get("content") or "",
        "halt": _quill_halt(choice.get("finish_reason")),
    }
    counts = _quill_counts(result.get("usage"))
    if counts is not None:
        body["counts"] = counts
    return WireResponse(200, dict(_JSON), json.dumps(body).encode("utf-8"))


@hookimpl
def encode_stream(call: Call, chunks: List[Dict[str, Any]]) -> bytes:
    lines: List[Dict[str, Any]] = []
    # The last line stands for the chunks after the last piece (finish, usage): their fields.
    tail: Dict[str, Any] = {}
    head: Dict[str, Any] = {}
    halt, counts = "natural", None
    for chunk in chunks:
        head = _quill_head(chunk)
        counts = _quill_counts(chunk.get("usage")) or counts
        pieces = 0
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") or ""
            if choice.get("finish_reason") is None or text:
                lines.append({**head, "piece": text})
                pieces += 1
            if choice.get("finish_reason") is not None:
                halt = _quill_halt(choice["finish_reason"])
        tail = {} if pieces else {**tail, **head}
    last = tail or {key: head.get(key) for key in ("ref", "engine", "when")}
    lines.append({**last, "halt": halt, **({"counts": counts} if counts else {})})
    return b"".join(json.dumps(line).encode("utf-8") + b"\n" for line in lines)


@hookimpl
def encode_error(call: Call, status: int, message: str, code: Optional[str]) -> WireResponse:
    trouble = {"what": message, "tag": code or "error", "wait": None}
    return WireResponse(status, dict(_JSON), json.dumps({"trouble": trouble}).encode("utf-8"))
