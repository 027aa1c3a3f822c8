"""Many calls at once.

- ``batch_completion`` / ``abatch_completion``: LiteLLM's batch call, one chat completion
  per conversation, results in input order, a failed conversation's exception in its place.
- ``run_batch_file`` / ``arun_batch_file``: an OpenAI Batch API input file (JSONL) run
  against any provider, written as an OpenAI Batch output file, one line per input line,
  resumable, with bounded concurrency that adapts to the upstream's 429s (AIMD). This is
  ``modelport batch``.
- ``agenerate_images``: many image prompts, checked before anything is sent, saved as
  ``0001.png``, ``0002.png``, ... and resumable. This is ``modelport images``.

Nothing here is imported by ``import modelport``; the module imports no HTTP library itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import math
import os
import pathlib
import re
import secrets
import shutil
import time
from collections import deque
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

import attrs

from .errors import (
    ConfigError,
    InvalidRequestError,
    ModelportError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    openai_code,
)

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .provider._types import WireRequest, WireResponse
    from .transport import Timeout

__all__ = [
    "batch_completion",
    "abatch_completion",
    "AdaptiveLimiter",
    "BatchStats",
    "ENDPOINTS",
    "run_batch_file",
    "arun_batch_file",
    "recover_output",
    "response_cost",
    "set_cost_function",
    "ImagePrompt",
    "read_prompts",
    "check_prompts",
    "prompt_limit",
    "PROMPT_LIMIT_ATTRIBUTE",
    "agenerate_images",
]

PathLike = Union[str, "os.PathLike[str]"]


# --- LiteLLM's batch_completion ------------------------------------------------------------------


def _check_workers(max_workers: Any) -> int:
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidRequestError(f"max_workers must be a whole number >= 1, got {max_workers!r}", param="max_workers")
    return max_workers


def batch_completion(
    model: str, messages: Sequence[List[Any]], *, max_workers: int = 100, client: Optional["Client"] = None, **kwargs: Any
) -> List[Any]:
    """One chat completion per conversation in ``messages``, at most ``max_workers`` at once.

    Returns a list in input order: a ``ChatCompletion`` (or a ``Stream`` with
    ``stream=True``) per conversation, or, where that call failed, its exception object
    (the other results are kept), as LiteLLM's ``batch_completion`` does. ``client`` is a
    ``modelport.Client`` (e.g. ``Client.from_config(...)``: aliases, fallbacks); without
    one the module functions' shared client is used. ``kwargs`` go to every call.
    """
    workers = _check_workers(max_workers)
    conversations = list(messages)
    if not conversations:
        return []
    if client is None:
        from . import default_client

        client = default_client()
    elif asyncio.iscoroutinefunction(getattr(client, "completion", None)):
        raise InvalidRequestError("batch_completion needs a modelport.Client; for an AsyncClient use abatch_completion", param="client")
    from concurrent.futures import ThreadPoolExecutor

    chosen = client

    def one(conversation: List[Any]) -> Any:
        try:
            return chosen.completion(model, conversation, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the failure is the item's result
            return exc

    with ThreadPoolExecutor(max_workers=min(workers, len(conversations)), thread_name_prefix="modelport-batch") as pool:
        return list(pool.map(one, conversations))


async def abatch_completion(
    model: str, messages: Sequence[List[Any]], *, max_workers: int = 100, client: Optional["AsyncClient"] = None, **kwargs: Any
) -> List[Any]:
    """``batch_completion`` for async code: at most ``max_workers`` calls in flight on one
    ``AsyncClient`` (``client``, else the shared one). Cancelling it cancels every call."""
    workers = _check_workers(max_workers)
    conversations = list(messages)
    if client is None:
        from . import default_async_client

        client = default_async_client()
    elif not asyncio.iscoroutinefunction(getattr(client, "completion", None)):
        raise InvalidRequestError("abatch_completion needs a modelport.AsyncClient; for a Client use batch_completion", param="client")
    slots = asyncio.Semaphore(workers)
    chosen = client

    async def one(conversation: List[Any]) -> Any:
        async with slots:
            try:
                return await chosen.completion(model, conversation, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the failure is the item's result
                return exc

    return list(await asyncio.gather(*(one(c) for c in conversations)))


# --- adaptive concurrency --------------------------------------------------------------------------


class AdaptiveLimiter:
    """Requests in flight, bounded by a window that adapts to the upstream (AIMD).

    Every answered request grows the window by ``1 / window`` (about one more slot per
    window's worth of answers), up to ``limit``. A throttled answer (429, or a 503 with
    ``Retry-After``) halves it, at most once per round trip (answers to requests sent
    before the last cut do not cut again), and holds every new request back for the
    answer's retry-after (``default_pause`` when it names none).
    """

    def __init__(self, limit: int, *, minimum: int = 1, default_pause: float = 0.5, adaptive: bool = True) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        #: False: a fixed bound (throttled answers are only counted).
        self.adaptive = adaptive
        self.max_limit = limit
        self.minimum = max(1, min(minimum, limit))
        self.default_pause = default_pause
        self.window = float(limit)
        self.in_flight = 0
        #: What happened, for progress lines and summaries.
        self.throttled = 0
        self.cuts = 0
        self.lowest = limit
        self.max_in_flight = 0
        self._issued = 0
        self._recovery_mark = 0
        self._paused_until = 0.0
        self._waiters: Deque["asyncio.Future[None]"] = deque()

    @property
    def limit(self) -> int:
        return max(self.minimum, int(self.window))

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when none)."""
        return max(0.0, self._paused_until - time.monotonic())

    async def acquire(self) -> int:
        """Wait for a slot; returns a ticket for ``release``."""
        woken = False
        while True:
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self.in_flight < self.limit and (woken or not self._waiters):
                return self._take()
            waiter: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # it was woken for a slot it will not use: pass it on
                else:
                    try:
                        self._waiters.remove(waiter)
                    except ValueError:
                        pass
                raise
            woken = True

    def _take(self) -> int:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        ticket = self._issued
        self._issued += 1
        if self._waiters and self.in_flight < self.limit:
            self._wake()  # the window has room for more than the caller
        return ticket

    def release(self, ticket: int, *, throttled: bool = False, retry_after: Optional[float] = None, answered: bool = True) -> None:
        """Give the slot back and adapt: ``throttled`` cuts the window, an ``answered``
        request grows it."""
        self.in_flight -= 1
        if not self.adaptive:
            self.throttled += throttled
        elif throttled:
            self.throttled += 1
            if ticket >= self._recovery_mark:
                self.window = max(float(self.minimum), self.window / 2)
                self._recovery_mark = self._issued
                self.cuts += 1
                self.lowest = min(self.lowest, self.limit)
            pause = self.default_pause if retry_after is None else max(0.0, min(retry_after, 60.0))
            self._paused_until = max(self._paused_until, time.monotonic() + pause)
        elif answered:
            self.window = min(float(self.max_limit), self.window + 1.0 / self.window)
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


@attrs.define
class _CallState:
    """What the transport saw for the call of one batch line (read through a context variable)."""

    status: Optional[int] = None
    request_id: Optional[str] = None


_CALL: "contextvars.ContextVar[Optional[_CallState]]" = contextvars.ContextVar("modelport_batch_call", default=None)

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid")


class _LimitedTransport:
    """The client's transport behind an ``AdaptiveLimiter``: every HTTP request (the
    core's retries and task polls included) takes a slot; throttled answers cut the window."""

    def __init__(self, inner: Any, limiter: AdaptiveLimiter) -> None:
        self.inner = inner
        self.limiter = limiter

    def _observe(self, ticket: int, status: int, headers: Mapping[str, str]) -> None:
        from ._engine import retry_after_header

        after = retry_after_header(headers) if status in (429, 503) else None
        throttled = status == 429 or (status == 503 and after is not None)
        self.limiter.release(ticket, throttled=throttled, retry_after=after)
        state = _CALL.get()
        if state is not None:
            state.status = status
            for name in _REQUEST_ID_HEADERS:
                value = headers.get(name)
                if value:
                    state.request_id = value
                    break

    async def send(self, request: "WireRequest", timeout: "Timeout") -> "WireResponse":
        ticket = await self.limiter.acquire()
        try:
            response = await self.inner.send(request, timeout)
        except BaseException:
            self.limiter.release(ticket, answered=False)
            raise
        self._observe(ticket, response.status, response.headers)
        return response  # type: ignore[no-any-return]

    async def stream(self, request: "WireRequest", timeout: "Timeout") -> Any:
        ticket = await self.limiter.acquire()
        try:
            handle = await self.inner.stream(request, timeout)
        except BaseException:
            self.limiter.release(ticket, answered=False)
            raise
        self._observe(ticket, handle.head.status, handle.head.headers)
        return handle

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def limit_client(client: "AsyncClient", limiter: AdaptiveLimiter) -> None:
    """Put ``client``'s transport behind ``limiter`` (once)."""
    current = client.transport
    if isinstance(current, _LimitedTransport):
        current.limiter = limiter
    else:
        client.transport = _LimitedTransport(current, limiter)  # type: ignore[assignment]


# --- cost and tokens ----------------------------------------------------------------------------------

#: ``fn(model, response_body) -> cost in USD or None``; set by ``set_cost_function``.
CostFunction = Callable[[str, Mapping[str, Any]], Optional[float]]
_cost_function: Optional[CostFunction] = None


def set_cost_function(function: Optional[CostFunction]) -> None:
    """Install the pricing hook used by ``modelport batch`` (``None`` removes it).

    It is called with the model string the line names (after ``--model-override``) and
    the response body (OpenAI's JSON); what it returns (USD) is added to the run's cost.
    Without one, only a cost the response carries counts (see ``response_cost``).
    """
    global _cost_function
    _cost_function = function


def response_cost(model: str, body: Mapping[str, Any], result: Any = None) -> float:
    """The cost of one answer: the pricing hook's figure; else the cost the result carries
    (LiteLLM's place, ``result._hidden_params["response_cost"]``); else one in its JSON
    (``usage.cost``, as OpenRouter reports it, or a top-level ``cost``); else 0."""
    if _cost_function is not None:
        figure = _cost_function(model, body)
        if figure is not None:
            return float(figure)
    hidden = getattr(result, "_hidden_params", None)
    usage = body.get("usage")
    candidates = (
        hidden.get("response_cost") if isinstance(hidden, Mapping) else None,
        usage.get("cost") if isinstance(usage, Mapping) else None,
        body.get("cost"),
    )
    for value in candidates:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return 0.0


def _tokens(body: Mapping[str, Any]) -> int:
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return 0
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool):
        return total
    parts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")]
    return sum(p for p in parts if isinstance(p, int) and not isinstance(p, bool))


# --- the OpenAI Batch file runner ----------------------------------------------------------------------

#: Batch ``url``s served, and the client method each maps to.
ENDPOINTS = {
    "/v1/chat/completions": ("completion", "messages"),
    "/v1/embeddings": ("embedding", "input"),
    "/v1/completions": ("text_completion", "prompt"),
}

#: Call options a batch line's body may not set: the run's credentials, base URLs and
#: headers come from the command line or the config, never from the input file.
_BODY_IGNORED = frozenset({"api_key", "api_base", "base_url", "extra_headers", "mock_response", "on_progress", "timeout", "num_retries"})


@attrs.define
class BatchStats:
    """Counts for one run; ``done`` lines were written by this run."""

    lines: int = 0
    to_do: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    invalid: int = 0
    tokens: int = 0
    cost: float = 0.0
    started: float = attrs.field(factory=time.monotonic)
    finished: Optional[float] = None
    interrupted: bool = False
    #: Adaptive concurrency: throttled answers, window cuts, current and lowest limit.
    throttled: int = 0
    cuts: int = 0
    concurrency: int = 0
    lowest_concurrency: int = 0
    recovered_partial_line: bool = False

    @property
    def done(self) -> int:
        return self.ok + self.failed

    @property
    def elapsed(self) -> float:
        return (self.finished if self.finished is not None else time.monotonic()) - self.started

    @property
    def requests_per_second(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "lines": self.lines,
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "invalid": self.invalid,
            "tokens": self.tokens,
            "cost": self.cost,
            "elapsed": round(self.elapsed, 3),
            "requests_per_second": round(self.requests_per_second, 2),
            "interrupted": self.interrupted,
            "throttled": self.throttled,
            "concurrency_cuts": self.cuts,
            "lowest_concurrency": self.lowest_concurrency,
        }


@attrs.frozen
class _Job:
    line: int
    custom_id: str
    url: str
    body: Dict[str, Any]


@attrs.frozen
class _Invalid:
    line: int
    custom_id: Optional[str]
    code: str
    message: str


_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count()


def _new_id() -> str:
    """``batch_req_`` and 24 hex digits: random per process, then a counter."""
    return f"batch_req_{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def _invalid_record(item: _Invalid) -> Dict[str, Any]:
    return {
        "id": _new_id(),
        "custom_id": item.custom_id,
        "response": None,
        "error": {"code": item.code, "message": f"line {item.line}: {item.message}", "line": item.line},
    }


_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*("(?:[^"\\]|\\.)*")')


def _readable_custom_id(raw: bytes) -> Optional[str]:
    """The custom_id of a line that is not valid JSON, when it can still be read."""
    found = _CUSTOM_ID.search(raw)
    if found is None:
        return None
    try:
        value = json.loads(found.group(1))
    except ValueError:
        return None
    return value if isinstance(value, str) and value else None


def _parse_line(number: int, raw: bytes) -> Union[_Job, _Invalid]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return _Invalid(number, _readable_custom_id(raw), "invalid_json_line", f"not valid JSON ({exc})")
    if not isinstance(data, dict):
        return _Invalid(number, None, "invalid_json_line", f"expected a JSON object, got {type(data).__name__}")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _Invalid(number, None, "missing_required_parameter", "custom_id must be a non-empty string")
    method = data.get("method")
    if not isinstance(method, str) or method.upper() != "POST":
        return _Invalid(number, custom_id, "invalid_method", f"method must be POST, got {method!r}")
    url = data.get("url")
    path = url if isinstance(url, str) else ""
    if not path.startswith("/v1/"):
        path = "/v1" + path if path.startswith("/") else path
    if path not in ENDPOINTS:
        return _Invalid(number, custom_id, "invalid_url", f"url must be one of {', '.join(ENDPOINTS)}, got {url!r}")
    body = data.get("body")
    if not isinstance(body, dict):
        return _Invalid(number, custom_id, "missing_required_parameter", "body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _Invalid(number, custom_id, "missing_required_parameter", "body.model must be a non-empty string")
    field = ENDPOINTS[path][1]
    if body.get(field) is None:
        return _Invalid(number, custom_id, "missing_required_parameter", f"body.{field} is required for {path}")
    if body.get("stream"):
        return _Invalid(number, custom_id, "invalid_request", "stream is not supported in a batch: remove it")
    return _Job(number, custom_id, path, body)


def _scan(path: PathLike, done_ids: Set[str], done_lines: Set[int]) -> Iterator[Union[_Job, _Invalid, None]]:
    """Every non-blank input line, in order: a job, an invalid line, or None when the
    output already has its line. The first line with a custom_id owns it; a later one is
    a ``duplicate_custom_id`` error."""
    seen: Set[str] = set()
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            item = _parse_line(number, raw)
            if isinstance(item, _Job):
                if item.custom_id in seen:
                    item = _Invalid(number, item.custom_id, "duplicate_custom_id", f"custom_id {item.custom_id!r} already used by an earlier line")
                else:
                    seen.add(item.custom_id)
                    yield None if item.custom_id in done_ids else item
                    continue
            yield None if item.line in done_lines else item


@attrs.define
class Recovered:
    """What an existing output file already holds."""

    done_ids: Set[str] = attrs.field(factory=set)
    done_lines: Set[int] = attrs.field(factory=set)
    ok: int = 0
    failed: int = 0
    dropped_partial_line: bool = False
    dropped_failed: int = 0
    unreadable: int = 0


def _fsync_directory(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def recover_output(path: PathLike, *, drop_failed: bool = False) -> Recovered:
    """Read an output file left by an earlier run (it may have been killed).

    A last line without its newline was cut off mid-write: it is removed (its request is
    made again). ``drop_failed`` removes the lines of failed requests (rewriting the file
    atomically) so that they are tried again.
    """
    found = Recovered()
    target = pathlib.Path(path)
    if not target.exists():
        return found
    keep_end = 0
    kept: List[bytes] = []
    with open(target, "rb") as handle:
        while True:
            raw = handle.readline()
            if not raw:
                break
            if not raw.endswith(b"\n"):
                found.dropped_partial_line = True
                break
            keep_end += len(raw)
            try:
                record = json.loads(raw) if raw.strip() else None
            except ValueError:
                record = None
            if not isinstance(record, dict):
                if raw.strip():
                    found.unreadable += 1
                kept.append(raw)
                continue
            error = record.get("error")
            if drop_failed and error is not None:
                found.dropped_failed += 1
                continue
            kept.append(raw)
            if error is not None:
                found.failed += 1
            else:
                found.ok += 1
            line = error.get("line") if isinstance(error, dict) else None
            if isinstance(line, int) and not isinstance(line, bool):
                found.done_lines.add(line)
            elif isinstance(record.get("custom_id"), str):
                found.done_ids.add(record["custom_id"])
    if found.dropped_failed:
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
        _fsync_directory(target.parent)
    elif found.dropped_partial_line:
        with open(target, "r+b") as out:
            out.truncate(keep_end)
            out.flush()
            os.fsync(out.fileno())
    return found


#: The system call writing output lines (replaceable in tests: a full disk).
_write = os.write


class _Sink:
    """The output file, on an ``O_APPEND`` descriptor. Lines finished in one turn of the
    event loop are written by one ``write`` right after it (a killed run leaves at most a
    cut-off last line, which ``recover_output`` removes; a line not yet written is a
    request made again, never a duplicate), and an ``fsync`` runs in a thread behind the
    writes, at most every ``sync_interval`` seconds (group commit)."""

    def __init__(self, path: PathLike, *, sync_interval: float = 0.05) -> None:
        self.path = path
        self.fd = self._open_locked()
        self.sync_interval = sync_interval
        self._pending: List[bytes] = []
        self._dirty = False
        self._syncing: Optional["asyncio.Task[None]"] = None
        self._closing = False
        self._in_fsync = False
        self.error: Optional[OSError] = None

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _open_locked(self) -> int:
        """Open for appending, holding an exclusive lock: a second run writing the same
        output at the same time would duplicate lines, so it is refused."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        fd = os.open(self.path, flags, 0o644)
        try:
            import fcntl
        except ImportError:  # no advisory locks here (Windows)
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"another run is writing {os.fspath(self.path)}: wait for it, or stop it first") from None
        return fd

    def reopen(self) -> None:
        """After the file was replaced (``recover_output(drop_failed=True)``)."""
        old = self.fd
        self.fd = self._open_locked()
        os.close(old)

    def close_now(self) -> None:
        """Close before anything was written (a run that stops before it starts)."""
        os.close(self.fd)

    def write(self, record: Mapping[str, Any]) -> None:
        try:
            data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from upstream: escape it instead
            data = (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Write the pending lines now (one system call), and have them synced soon. A
        failure (disk full) is kept and raised by ``check``: the run stops."""
        if not self._pending or self.error is not None:
            return
        view = memoryview(b"".join(self._pending))
        self._pending.clear()
        try:
            while view:
                written = _write(self.fd, view)
                view = view[written:]
        except OSError as exc:
            self.error = exc
            return
        self._dirty = True
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.get_running_loop().create_task(self._sync())

    async def _sync(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty and not self._closing:
            self._dirty = False
            started = loop.time()
            self._in_fsync = True
            try:
                await asyncio.shield(loop.run_in_executor(None, os.fsync, self.fd))
            except OSError as exc:
                self.error = exc
                return
            finally:
                self._in_fsync = False
            if not self._closing:
                await asyncio.sleep(max(0.0, self.sync_interval - (loop.time() - started)))

    async def aclose(self) -> None:
        """Write what is pending, sync, close (the descriptor is closed only once no
        thread is syncing it)."""
        self._closing = True
        try:
            self.flush()
            task = self._syncing
            if task is not None and not task.done():
                if not self._in_fsync:
                    task.cancel()  # it is between syncs
                await asyncio.gather(task, return_exceptions=True)
        finally:
            os.fsync(self.fd)
            os.close(self.fd)


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def _error_record(custom_id: str, error: BaseException) -> Dict[str, Any]:
    response: Optional[Dict[str, Any]] = None
    if isinstance(error, ProviderError) and error.status is not None and error.status >= 400:
        body: Any = None
        if error.body:
            try:
                body = json.loads(error.body)
            except ValueError:
                body = None
        if not isinstance(body, dict):
            status = error.status
            body = {
                "error": {
                    "message": error.message,
                    "type": error.type or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
                    "param": error.param,
                    "code": error.code,
                }
            }
        response = {"status_code": error.status, "request_id": error.request_id, "body": body}
    if isinstance(error, ModelportError):
        message = str(error)
    else:
        message = f"{type(error).__name__}: {error}"
    return {"id": _new_id(), "custom_id": custom_id, "response": response, "error": {"code": openai_code(error), "message": message}}


def _parse_overrides(overrides: Union[None, str, Mapping[str, str], Sequence[str]]) -> Tuple[Optional[str], Dict[str, str]]:
    """``MODEL`` (every line) and ``NAME=MODEL`` (lines naming NAME) overrides."""
    if overrides is None:
        return None, {}
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, Mapping):
        return None, dict(overrides)
    every: Optional[str] = None
    table: Dict[str, str] = {}
    for item in overrides:
        name, sep, model = item.partition("=")
        if sep and name and model:
            table[name] = model
        elif not sep and item:
            every = item
        else:
            raise InvalidRequestError(f"model override must be MODEL or NAME=MODEL, got {item!r}", param="model_override")
    return every, table


_PREFLIGHT: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "/v1/chat/completions": ("chat", {"messages": [{"role": "user", "content": "x"}]}),
    "/v1/embeddings": ("embedding", {"input": "x"}),
    "/v1/completions": ("text_completion", {"prompt": "x"}),
}


def _preflight(client: Any, models: Mapping[Tuple[str, str], int], options: Mapping[str, Any]) -> None:
    """Build (never send) one request per endpoint and model: a model no installed provider
    or config serves stops the run before anything is sent, as OpenAI rejects such a file."""
    for (url, model), line in models.items():
        operation, arguments = _PREFLIGHT[url]
        try:
            client.build_request(operation, model, **arguments, **options)
        except ModelportError as exc:
            hint = "" if "/" in model else f" (map it with --model-override {model}=<provider>/<model>)"
            message = f"line {line}: model {model!r} cannot be called on {url}: {exc}{hint}; nothing was sent"
            raise (ConfigError if isinstance(exc, ConfigError) else InvalidRequestError)(message) from exc


async def arun_batch_file(
    input_path: PathLike,
    output_path: PathLike,
    *,
    client: "AsyncClient",
    concurrency: int = 16,
    model_override: Union[None, str, Mapping[str, str], Sequence[str]] = None,
    adaptive: bool = True,
    throttle_retries: int = 5,
    retry_failed: bool = False,
    call_options: Optional[Mapping[str, Any]] = None,
    on_update: Optional[Callable[[BatchStats], None]] = None,
    stats: Optional[BatchStats] = None,
) -> BatchStats:
    """Run an OpenAI Batch input file through ``client`` into an OpenAI Batch output file.

    Exactly one output line per non-blank input line, errors included. Lines whose
    ``custom_id`` (or, for a malformed line, whose line number) the output already holds
    are skipped, so rerunning after an interruption finishes the job; ``retry_failed``
    first removes the output's failed lines. At most ``concurrency`` HTTP requests are in
    flight (a few more lines wait ready behind them, so that a slot an answer frees is
    taken at once); with ``adaptive`` that bound is an AIMD window that halves on 429 and
    pauses for the upstream's retry-after, and a line that still ends in a rate-limit
    error is tried again (``throttle_retries`` times) once the window has backed off.
    ``call_options`` (``api_base``, ``api_key``, ``timeout``, ``num_retries``, ...) go to
    every call. Cancelling the run (Ctrl-C) keeps every line already written.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError(f"concurrency must be a whole number >= 1, got {concurrency!r}", param="concurrency")
    if not os.path.isfile(input_path):
        raise ConfigError(f"input file not found: {os.fspath(input_path)}")
    if os.path.exists(output_path) and os.path.samefile(input_path, output_path):
        raise ConfigError(f"the output file is the input file: {os.fspath(output_path)}")
    every, table = _parse_overrides(model_override)
    options = dict(call_options or {})
    stats = stats if stats is not None else BatchStats()
    existed = os.path.exists(output_path)
    sink = _Sink(output_path)  # locked from here: recovery and the run see no other writer
    try:
        recovered = recover_output(output_path, drop_failed=retry_failed)
        if recovered.dropped_failed:
            sink.reopen()
        stats.recovered_partial_line = recovered.dropped_partial_line
        models: Dict[Tuple[str, str], int] = {}
        for item in _scan(input_path, recovered.done_ids, recovered.done_lines):
            stats.lines += 1
            if item is None:
                stats.skipped += 1
            elif isinstance(item, _Job) and len(models) < 1000:
                requested = item.body["model"]
                models.setdefault((item.url, table.get(requested, every or requested)), item.line)
        stats.to_do = stats.lines - stats.skipped
        _preflight(client, models, options)
    except BaseException:
        sink.close_now()
        if not existed:
            os.unlink(output_path)
        raise
    limiter = AdaptiveLimiter(concurrency, adaptive=adaptive)
    limit_client(client, limiter)
    stats.concurrency = stats.lowest_concurrency = concurrency
    stats.started = time.monotonic()

    def finished(record: Dict[str, Any], model: Optional[str] = None, result: Any = None) -> None:
        sink.write(record)
        if record["error"] is None:
            stats.ok += 1
            body = record["response"]["body"]
            stats.tokens += _tokens(body)
            stats.cost += response_cost(model or "", body, result)
        else:
            stats.failed += 1
        stats.throttled, stats.cuts = limiter.throttled, limiter.cuts
        stats.concurrency, stats.lowest_concurrency = limiter.limit, limiter.lowest
        if on_update is not None:
            on_update(stats)

    async def run(job: _Job) -> None:
        state = _CallState()
        _CALL.set(state)  # this task's own context
        method_name, field = ENDPOINTS[job.url]
        body = dict(job.body)
        requested = body.pop("model")
        model = table.get(requested, every or requested)
        first = body.pop(field)
        kwargs = {k: v for k, v in body.items() if k not in _BODY_IGNORED}
        kwargs.update(options)
        method = getattr(client, method_name)
        attempt = 0
        while True:
            try:
                result = await method(model, first, **kwargs)
            except RateLimitError as exc:
                if adaptive and attempt < throttle_retries and not isinstance(exc, QuotaExceededError):
                    attempt += 1
                    await asyncio.sleep(max(limiter.paused_for(), 0.05 * attempt))
                    continue
                finished(_error_record(job.custom_id, exc), model)
            except Exception as exc:  # noqa: BLE001 - every failure becomes the line's error
                finished(_error_record(job.custom_id, exc), model)
            else:
                status = state.status if state.status is not None and 200 <= state.status < 300 else 200
                answer = result.to_dict()
                request_id = state.request_id or (answer.get("request_id") if isinstance(answer.get("request_id"), str) else None)
                response = {"status_code": status, "request_id": request_id, "body": answer}
                finished({"id": _new_id(), "custom_id": job.custom_id, "response": response, "error": None}, model, result)
            return

    # Lines in progress: the requests in flight (bounded by the limiter) plus a few ready
    # behind them, so that the client's own work on an answer and on the next line does
    # not leave an upstream slot idle.
    slots = asyncio.Semaphore(concurrency + max(2, concurrency // 2))
    running: Set["asyncio.Task[None]"] = set()

    def done(task: "asyncio.Task[None]") -> None:
        running.discard(task)
        slots.release()

    try:
        for item in _scan(input_path, recovered.done_ids, recovered.done_lines):
            if item is None:
                continue
            if isinstance(item, _Invalid):
                stats.invalid += 1
                finished(_invalid_record(item))
                continue
            await slots.acquire()
            sink.check()
            task = asyncio.get_running_loop().create_task(run(item))
            running.add(task)
            task.add_done_callback(done)
        while running:
            await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
            sink.check()
        await asyncio.sleep(0)  # the last lines' write
        sink.check()
    except BaseException:
        stats.interrupted = True
        for task in list(running):
            task.cancel()
        if running:
            await asyncio.wait(set(running))
        raise
    finally:
        stats.finished = time.monotonic()
        await sink.aclose()
    sink.check()
    return stats


def run_batch_file(input_path: PathLike, output_path: PathLike, *, client: Optional["AsyncClient"] = None, **options: Any) -> BatchStats:
    """``arun_batch_file`` from sync code (its own event loop); ``client`` defaults to a
    new ``AsyncClient`` closed at the end."""

    async def main() -> BatchStats:
        from .client import AsyncClient

        own = client is None
        chosen = client if client is not None else AsyncClient(max_connections=max(100, int(options.get("concurrency", 16))))
        try:
            return await arun_batch_file(input_path, output_path, client=chosen, **options)
        finally:
            if own:
                await chosen.aclose()

    return asyncio.run(main())


# --- images in bulk -----------------------------------------------------------------------------------------

#: The attribute a provider plugin module may define with the longest image prompt its
#: API accepts, in characters (from the provider's documentation), e.g.
#: ``IMAGE_PROMPT_MAX_CHARS = 1999``. ``modelport images`` checks prompts against it.
PROMPT_LIMIT_ATTRIBUTE = "IMAGE_PROMPT_MAX_CHARS"

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")


@attrs.frozen
class ImagePrompt:
    """One prompt of a prompts file: its number (1-based), text and extra call arguments."""

    number: int
    prompt: Any
    params: Mapping[str, Any] = attrs.field(factory=dict)
    line: int = 0


def read_prompts(path: PathLike) -> Tuple[List[ImagePrompt], List[str]]:
    """Prompts from a text file (one per line) or a ``.jsonl`` file (a JSON string, or an
    object with ``prompt`` and extra arguments such as ``negative_prompt``, ``seed``).

    Every line is a prompt (a trailing newline ends the file, it is no empty prompt); the
    second item lists lines that cannot be read.
    """
    problems: List[str] = []
    prompts: List[ImagePrompt] = []
    target = pathlib.Path(path)
    try:
        text = target.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [f"{target}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    structured = target.suffix.lower() == ".jsonl"
    for number, raw in enumerate(lines, 1):
        raw = raw.rstrip("\r")
        if not structured:
            prompts.append(ImagePrompt(number, raw, {}, number))
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            problems.append(f"line {number}: not valid JSON ({exc})")
            continue
        if isinstance(value, dict):
            params = {k: v for k, v in value.items() if k != "prompt"}
            prompts.append(ImagePrompt(number, value.get("prompt"), params, number))
        else:
            prompts.append(ImagePrompt(number, value, {}, number))
    return prompts, problems


def prompt_limit(client: Any, model: str) -> Optional[int]:
    """The shortest documented prompt limit (characters) of the providers serving
    ``model`` (a config alias may route to several), or None when none declares one."""
    models = [model]
    router = getattr(client, "router", None)
    if router is not None and model in router:
        models = [d.model for d in router.deployments(model)]
    limits: List[int] = []
    for name in models:
        provider = name.partition("/")[0]
        try:
            hooks = client.provider_hooks(provider)
        except ModelportError:
            continue
        value = getattr(hooks.plugin, PROMPT_LIMIT_ATTRIBUTE, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            limits.append(value)
    return min(limits) if limits else None


def check_prompts(prompts: Sequence[ImagePrompt], *, max_chars: Optional[int]) -> List[str]:
    """Every problem that would make a prompt fail: empty, not text, longer than
    ``max_chars`` (also ``negative_prompt``). Nothing is sent while any remains."""
    problems: List[str] = []
    for item in prompts:
        where = f"prompt {item.number} (line {item.line})"
        if not isinstance(item.prompt, str):
            problems.append(f"{where}: the prompt must be text, got {type(item.prompt).__name__}")
            continue
        if not item.prompt.strip():
            problems.append(f"{where}: empty prompt")
            continue
        for field, value in (("prompt", item.prompt), ("negative_prompt", item.params.get("negative_prompt"))):
            if max_chars is not None and isinstance(value, str) and len(value) > max_chars:
                problems.append(f"{where}: {field} has {len(value)} characters, the limit is {max_chars}")
    return problems


def _existing(out_dir: pathlib.Path, stem: str) -> Optional[pathlib.Path]:
    for suffix in _IMAGE_EXTENSIONS:
        candidate = out_dir / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


def _save_atomically(result: Any, out_dir: pathlib.Path, stem: str, http_client: Any) -> List[pathlib.Path]:
    """Download into a hidden folder, fsync, then move into place: the prompt's first file
    last, so that ``NNNN.<ext>`` existing means all of that prompt's images are there."""
    from ._images import save_images

    staging = out_dir / f".partial-{stem}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        paths = save_images(result, staging / stem, http_client=http_client)
        for path in paths:
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        final = [out_dir / p.name for p in paths]
        for source, target in reversed(list(zip(paths, final))):
            os.replace(source, target)
        _fsync_directory(out_dir)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def agenerate_images(
    prompts: Sequence[ImagePrompt],
    out_dir: PathLike,
    *,
    model: str,
    client: "AsyncClient",
    concurrency: int = 4,
    call_options: Optional[Mapping[str, Any]] = None,
    on_update: Optional[Callable[[BatchStats], None]] = None,
    on_failure: Optional[Callable[[ImagePrompt, BaseException], None]] = None,
    stats: Optional[BatchStats] = None,
) -> BatchStats:
    """Generate one image task per prompt, at most ``concurrency`` at once, saving prompt
    N as ``NNNN.<ext>`` (several images: ``NNNN-2.<ext>``, ...) in ``out_dir``. Prompts
    whose file exists are skipped, so a rerun finishes an interrupted or partly failed
    run. Check the prompts first (``check_prompts``)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError(f"concurrency must be a whole number >= 1, got {concurrency!r}", param="concurrency")
    directory = pathlib.Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(".partial-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    width = max(4, len(str(max((p.number for p in prompts), default=0))))
    stats = stats if stats is not None else BatchStats()
    options = dict(call_options or {})
    pending: List[ImagePrompt] = []
    for item in prompts:
        stats.lines += 1
        if _existing(directory, f"{item.number:0{width}d}") is not None:
            stats.skipped += 1
        else:
            pending.append(item)
    stats.to_do = len(pending)
    limiter = AdaptiveLimiter(concurrency)
    limit_client(client, limiter)
    stats.concurrency = stats.lowest_concurrency = concurrency
    stats.started = time.monotonic()
    slots = asyncio.Semaphore(concurrency)

    import httpx

    downloads = httpx.Client(follow_redirects=True, timeout=60.0)

    def update() -> None:
        stats.throttled, stats.cuts = limiter.throttled, limiter.cuts
        stats.concurrency, stats.lowest_concurrency = limiter.limit, limiter.lowest
        if on_update is not None:
            on_update(stats)

    async def one(item: ImagePrompt) -> None:
        async with slots:
            try:
                result = await client.image_generation(model, item.prompt, **{**item.params, **options})
                await asyncio.to_thread(_save_atomically, result, directory, f"{item.number:0{width}d}", downloads)
            except Exception as exc:  # noqa: BLE001 - reported, the prompt stays to do
                stats.failed += 1
                if on_failure is not None:
                    on_failure(item, exc)
            else:
                stats.ok += 1
            update()

    tasks = [asyncio.get_running_loop().create_task(one(item)) for item in pending]
    try:
        if tasks:
            await asyncio.gather(*tasks)
    except BaseException:
        stats.interrupted = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        stats.finished = time.monotonic()
        downloads.close()
    return stats
