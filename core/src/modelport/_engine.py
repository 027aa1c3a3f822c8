"""The sans-IO engine: one call, or one multi-step operation, as a generator of commands.

The engine decides everything (endpoint, request, retries and their delays, follow-up
steps, mock answers, failover between deployments) and *yields* the I/O it needs as
typed commands: ``Send``, ``Sleep``, ``Progress``. A driver performs each command and
sends the result back (or throws the transport's ``ProviderError`` in). The sync
client, the async client and the router all run this one generator; only the two
small driver loops in ``client.py`` know whether I/O blocks or awaits.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable, Dict, Generator, Iterable, List, Mapping, Optional, Union

import attrs

from .errors import APIConnectionError, APITimeoutError, ConfigError, InvalidRequestError, ProviderError
from .provider import openai
from .provider._types import (
    IGNORE_EVENT,
    Call,
    EndOfStream,
    FollowUp,
    Step,
    WireRequest,
    WireResponse,
    redact_headers,
    redact_url,
)
from .provider.decoders import SSEDecoder, StreamDecoder

__all__ = [
    "Send",
    "Sleep",
    "Progress",
    "Command",
    "RetryPolicy",
    "OpenStream",
    "MockHandle",
    "ChunkParser",
    "run_call",
    "run_routed",
    "stamp_error",
    "retry_after_header",
]

log = logging.getLogger("modelport")

_MAX_RETRY_AFTER = 60.0


# --- commands --------------------------------------------------------------------------


# The commands and the policy are plain slotted classes, not attrs ones: attrs generates
# their methods with ``compile`` at import, which is a cold start's largest cost.


class Send:
    """Send ``request``; answer with its ``WireResponse`` or, for a 2xx stream, the open
    stream handle. A streamed error status is answered as a complete ``WireResponse``.
    ``verify``: TLS verification for this request (None: the client's transport as it is)."""

    __slots__ = ("request", "stream", "timeout", "verify")

    def __init__(self, request: WireRequest, stream: bool, timeout: Any, verify: Any = None) -> None:
        self.request = request
        self.stream = stream
        self.timeout = timeout
        self.verify = verify

    def __repr__(self) -> str:
        return f"Send({self.request!r}, stream={self.stream})"


class Sleep:
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Sleep({self.seconds})"


class Progress:
    """Report a multi-step operation's status to the caller's ``on_progress``."""

    __slots__ = ("status", "elapsed")

    def __init__(self, status: str, elapsed: float) -> None:
        self.status = status
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return f"Progress({self.status!r}, {self.elapsed:.2f})"


Command = Union[Send, Sleep, Progress]
Engine = Generator[Command, Any, Any]


class RetryPolicy:
    """How often and how long to retry: exponential backoff with jitter, capped."""

    __slots__ = ("retries", "backoff", "max_delay")

    def __init__(self, retries: int = 2, backoff: float = 0.5, max_delay: float = 8.0) -> None:
        self.retries = retries
        self.backoff = backoff
        self.max_delay = max_delay

    def with_retries(self, retries: int) -> "RetryPolicy":
        return RetryPolicy(retries, self.backoff, self.max_delay)

    def delay(self, attempt: int, error: ProviderError, jitter: Callable[[], float] = random.random) -> float:
        """Seconds before retry number ``attempt``: the upstream's ``retry_after`` when it
        gave one (header or body), else backoff with jitter."""
        after: Optional[float] = error.retry_after if error.retry_after is not None else retry_after_header(error.headers)
        if after is not None:
            return min(_MAX_RETRY_AFTER, max(0.0, after))
        base = min(self.max_delay, self.backoff * 2.0 ** (attempt - 1))
        return base * (0.5 + jitter() / 2)


def retry_after_header(headers: Mapping[str, str]) -> Optional[float]:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), in seconds."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        import email.utils

        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return None if parsed is None else parsed.timestamp() - time.time()


# --- streams ---------------------------------------------------------------------------


class ChunkParser:
    """Bytes of a streamed body -> typed chunks: the provider's decoder, its
    ``parse_stream_chunk``, then the chunk type. Shared by ``Stream`` and ``AsyncStream``.

    An error raised while parsing is held until the chunks before it are delivered.
    """

    __slots__ = ("_decoder", "_parse", "_load", "_call", "done", "error", "content_type")

    def __init__(
        self, decoder: StreamDecoder, parse: Callable[[Call, Any], Any], load: Callable[[Any], Any], call: Call, content_type: str = ""
    ) -> None:
        self._decoder = decoder
        self._parse = parse
        self._load = load
        self._call = call
        self.done = False
        self.error: Optional[BaseException] = None
        #: The stream's content type: a plain JSON answer to a streaming request is named as such.
        self.content_type = content_type

    def feed(self, raw: bytes) -> List[Any]:
        if self.done:
            return []
        try:
            events = self._decoder.feed(raw)
        except Exception as exc:  # a plugin's decoder: typed like a parse error, after what came before
            self.error = stamp_error(exc, self._call) if isinstance(exc, ProviderError) else exc
            self.done = True
            return []
        return self._typed(events)

    def _typed(self, events: Iterable[Any]) -> List[Any]:
        out = []
        parse, load, call = self._parse, self._load, self._call
        try:
            for event in events:
                item = parse(call, event)
                if type(item) is dict:
                    out.append(load(item))
                elif item is IGNORE_EVENT:
                    continue
                elif isinstance(item, EndOfStream):
                    out.extend(load(chunk) for chunk in item.chunks)
                    self.done = True
                    break
                elif isinstance(item, list):
                    out.extend(load(chunk) for chunk in item)
                else:
                    raise TypeError(
                        f"parse_stream_chunk of provider {call.provider!r} returned {type(item).__name__};"
                        " expected a chunk dict, a list of them, IGNORE_EVENT or end_of_stream(...)"
                    )
        except Exception as exc:  # deliver what came before, then raise
            self.error = stamp_error(exc, call) if isinstance(exc, ProviderError) else exc
            self.done = True
        return out

    def finish(self) -> List[Any]:
        """Chunks still framed at the end of the body; raises if the end never came."""
        if self.done:
            return []
        out = self._typed(self._decoder.flush())
        if not self.done:
            call = self._call
            if self.content_type.startswith("application/json"):
                from .errors import MalformedResponseError

                error: ProviderError = MalformedResponseError(
                    "the upstream answered a streaming request with a plain JSON body instead of a stream"
                    " (content-type application/json); it may not support stream=True"
                )
            else:
                cut = " in the middle of an event" if self._decoder.has_partial_line else ""
                error = _interrupted(f"the stream ended{cut} before its end marker; the response is incomplete")
            self.error = stamp_error(error, call)
            self.done = True
        return out


def _interrupted(message: str) -> ProviderError:
    from .errors import StreamInterruptedError

    return StreamInterruptedError(message)


class MockHandle:
    """A stream body held in memory (``mock_response``): the sync and async handle shapes."""

    def __init__(self, payload: bytes, request: Optional[WireRequest] = None) -> None:
        self.head = WireResponse(200, {"content-type": "text/event-stream"}, b"", request)
        self._payload = payload

    def iter_bytes(self) -> Iterable[bytes]:
        return iter((self._payload,))

    async def aiter_bytes(self) -> Any:
        yield self._payload

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class OpenStream:
    """The engine's answer for a stream: the open body and how to turn it into chunks."""

    __slots__ = ("handle", "parser", "call")

    def __init__(self, handle: Any, parser: ChunkParser, call: Call) -> None:
        self.handle = handle
        self.parser = parser
        self.call = call


# --- one call --------------------------------------------------------------------------


def stamp_error(error: Any, call: Call) -> Any:
    """Name the call's provider and model on a ``ProviderError`` and scrub the call's
    secrets from its text: upstreams sometimes echo the key they were sent."""
    if error.provider is None:
        error.provider = call.provider
    if error.model is None:
        error.model = call.model
    for secret in call.secrets():
        if secret in error.message:
            error.message = error.message.replace(secret, "[REDACTED]")
            error.args = (error.message,)
        if error.body and secret in error.body:
            error.body = error.body.replace(secret, "[REDACTED]")
    return error


def _chunk_loader(operation: str) -> Callable[[Any], Any]:
    from .types import ChatCompletionChunk, Completion, loader

    return loader(ChatCompletionChunk if operation == "chat" else Completion)


def _log_request(request: WireRequest, call: Call) -> None:
    info = call.info
    log.debug(
        "%s %s headers=%s",
        request.method,
        redact_url(request.url, info.secret_fields),
        redact_headers(request.headers, info.secret_headers),
    )


def _send(hooks: Any, call: Call, request: WireRequest, policy: RetryPolicy, timeout: Any, verify: Any = None) -> Engine:
    """Send ``request`` with retries; the 2xx response (or open stream handle)."""
    attempt = 0
    while True:
        if log.isEnabledFor(logging.DEBUG):
            _log_request(request, call)
        try:
            response = yield Send(request, call.stream, timeout, verify)
        except (APIConnectionError, APITimeoutError) as exc:
            error: ProviderError = stamp_error(exc, call)
        else:
            if type(response) is not WireResponse or response.status < 400:
                return response
            error = stamp_error(hooks.map_error(call, response) or openai.map_error(call, response), call)
        if not error.retryable or attempt >= policy.retries:
            raise error
        attempt += 1
        delay = policy.delay(attempt, error)
        log.info("retry %d/%d in %.2fs after %s", attempt, policy.retries, delay, type(error).__name__)
        yield Sleep(delay)


def prepared_request(hooks: Any, call: Call) -> WireRequest:
    """The provider's request for ``call``, with the call's extra headers and its secrets named."""
    return _outgoing(hooks.transform_request(call, hooks.resolve_endpoint(call)), call)


def _outgoing(request: WireRequest, call: Call) -> WireRequest:
    request = request.with_headers(call.extra_headers)
    if call.extra_query:
        from urllib.parse import urlencode

        joiner = "&" if "?" in request.url else "?"
        request = attrs.evolve(request, url=f"{request.url}{joiner}{urlencode(dict(call.extra_query), doseq=True)}")
    if "@" in request.url:
        request = _userinfo_as_header(request)
    info = call.info
    if info.secret_headers or info.secret_fields:
        request = attrs.evolve(request, secrets=info.secret_headers | info.secret_fields)
    return request


def _userinfo_as_header(request: WireRequest) -> WireRequest:
    """A base URL with ``user:password@`` becomes Basic auth, unless the request already
    authenticates (an API key wins); the credentials never stay in the URL, where HTTP
    libraries refuse them next to an Authorization header and logs would print them."""
    scheme, sep, rest = request.url.partition("://")
    authority, slash, tail = rest.partition("/")
    if not sep or "@" not in authority:
        return request
    userinfo, _, host = authority.rpartition("@")
    headers = dict(request.headers)
    if not any(name.lower() == "authorization" for name in headers):
        import base64
        from urllib.parse import unquote

        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return attrs.evolve(request, url=f"{scheme}://{host}{slash}{tail}", headers=headers)


def run_call(
    hooks: Any,
    call: Call,
    policy: RetryPolicy,
    *,
    timeout: Any = None,
    mock: Any = None,
    verify: Any = None,
    clock: Callable[[], float] = time.monotonic,
) -> Engine:
    """One call, start to finish: the typed-ready result dict, or an ``OpenStream``."""
    request = prepared_request(hooks, call)
    if mock is not None:
        return _mocked(hooks, call, request, mock)
    started = clock()
    number, state = 1, None
    while True:
        response = yield from _send(hooks, call, request, policy, timeout, verify)
        if type(response) is not WireResponse:
            decoder = hooks.stream_decoder(call, response.head)
            content_type = response.head.headers.get("content-type", "")
            parser = ChunkParser(decoder, hooks.parse_stream_chunk, _chunk_loader(call.operation), call, content_type)
            return OpenStream(response, parser, call)
        result = hooks.transform_response(call, response, Step(number, clock() - started, state))
        if not isinstance(result, FollowUp):
            return result
        yield Progress(result.status, clock() - started)
        if result.delay:
            yield Sleep(result.delay)
        request = _outgoing(result.request, call)
        number, state = number + 1, result.state


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """A rough token count of a request's input (about four characters a token), for the
    router's context-window pre-checks; no tokenizer is loaded."""
    import json as _json

    content = body.get("messages") if "messages" in body else body.get("prompt", body.get("input", ""))
    return len(_json.dumps(content, ensure_ascii=False)) // 4


def run_routed(router: Any, alias: str, attempt: Callable[[Any], Engine], prompt_tokens: Optional[int] = None) -> Engine:
    """Try the alias's deployments in the router's order until one answers.

    ``attempt(deployment)`` builds the engine for one deployment. A deployment at its
    rpm / tpm / parallel limit is skipped; an error another deployment may cure moves on
    (context-window and content-policy errors to their own fallbacks); others are raised
    at once. When every deployment was at its limit, the caller gets a 429.
    """
    from .errors import ContextWindowExceededError
    from .routing import fails_over

    planned = list(router.plan(alias))
    plan = router.fitting(planned, prompt_tokens)
    if planned and not plan:  # no deployment's context window holds the prompt
        too_long = ContextWindowExceededError(
            f"the prompt (about {prompt_tokens} tokens) does not fit the context window of any deployment of {alias!r}",
            status=400,
            code="context_length_exceeded",
        )
        plan = router.fitting(router.redirect(alias, too_long), prompt_tokens)
        if not plan:
            raise too_long
    last: Optional[BaseException] = None
    limited = False
    redirected = False
    position = 0
    while position < len(plan):
        deployment = plan[position]
        position += 1
        ticket = router.begin(deployment)
        if ticket is None:
            limited = True
            continue
        try:
            result = yield from attempt(deployment)
        except (ProviderError, ConfigError, InvalidRequestError) as exc:
            router.end(ticket, error=exc)
            extra = [] if redirected else router.redirect(alias, exc)
            if extra:
                redirected = True
                plan[position:] = extra  # the request itself must change: only these can serve it
            elif not fails_over(exc):
                raise
            last = exc
            continue
        except BaseException as exc:  # cancelled or closed: uncounted, no cool-down
            router.end(ticket, error=exc)
            raise
        router.end(ticket, result=result)
        return result
    if last is None:
        raise router.limit_error(alias) if limited else ConfigError(f"model group {alias!r} has no deployment to try")
    raise last


# --- mock responses --------------------------------------------------------------------


def _mocked(hooks: Any, call: Call, request: WireRequest, mock: Any) -> Any:
    """What the upstream would have answered, without the network.

    Providers that decode OpenAI's wire format, or supply encoders, run their own
    response hooks on the mock; others get the OpenAI-shaped answer as it is.
    """
    if isinstance(mock, BaseException):
        raise mock
    if isinstance(mock, dict) and call.operation not in ("chat", "text_completion"):
        # A mocked embedding / rerank / image result is the final answer: multi-step
        # operations (submit, then poll) have no single upstream response to stand for.
        return mock
    if not isinstance(mock, dict) and call.operation not in ("chat", "text_completion"):
        raise InvalidRequestError(f"mock_response for {call.operation} must be a full response dict", param="mock_response")
    body = mock if isinstance(mock, dict) else _mock_body(call, mock)
    if call.stream:
        chunks = list(_chunks_of(body, call))
        load = _chunk_loader(call.operation)
        if hooks.encodes_streams:
            payload = hooks.encode_stream(call, chunks)
            handle = MockHandle(payload, request)
            parser = ChunkParser(hooks.stream_decoder(call, handle.head), hooks.parse_stream_chunk, load, call)
        else:
            handle = MockHandle(openai.encode_stream(call, chunks), request)
            parser = ChunkParser(SSEDecoder(), openai.parse_chunk, load, call)
        return OpenStream(handle, parser, call)
    if not hooks.encodes_responses:
        return body
    response = hooks.encode_response(call, body)
    response.request = request
    result = hooks.transform_response(call, response, Step())
    if isinstance(result, FollowUp):
        raise InvalidRequestError(
            f"mock_response: provider {call.provider!r} answers this call in several steps; pass the final result",
            param="mock_response",
        )
    return result


def _mock_body(call: Call, mock: Any) -> Dict[str, Any]:
    created = int(time.time())
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    if call.operation == "text_completion":
        choice: Dict[str, Any] = {"index": 0, "text": str(mock), "logprobs": None, "finish_reason": "stop"}
        return {"id": "cmpl-mock", "object": "text_completion", "created": created, "model": call.model, "choices": [choice], "usage": usage}
    message = {"role": "assistant", "content": str(mock), "refusal": None}
    choice = {"index": 0, "finish_reason": "stop", "logprobs": None, "message": message}
    return {"id": "chatcmpl-mock", "object": "chat.completion", "created": created, "model": call.model, "choices": [choice], "usage": usage}


def _chunks_of(body: Dict[str, Any], call: Call) -> Iterable[Dict[str, Any]]:
    head: Dict[str, Any] = {k: body[k] for k in ("id", "created", "model") if k in body}
    if call.operation == "text_completion":
        obj = "text_completion"
        for choice in body.get("choices", []):
            index = choice.get("index", 0)
            for piece in _pieces(choice.get("text") or ""):
                yield {**head, "object": obj, "choices": [{"index": index, "text": piece, "logprobs": None, "finish_reason": None}]}
            yield {**head, "object": obj, "choices": [{"index": index, "text": "", "logprobs": None, "finish_reason": choice.get("finish_reason")}]}
    else:
        obj = "chat.completion.chunk"
        for choice in body.get("choices", []):
            index = choice.get("index", 0)
            message = choice.get("message") or {}
            yield {**head, "object": obj, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]}
            for piece in _pieces(message.get("content") or ""):
                yield {**head, "object": obj, "choices": [{"index": index, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}]}
            yield {**head, "object": obj, "choices": [{"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason", "stop")}]}
    if (call.body.get("stream_options") or {}).get("include_usage") and body.get("usage"):
        yield {**head, "object": obj, "choices": [], "usage": body["usage"]}


def _pieces(text: str) -> List[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)] if text else []
