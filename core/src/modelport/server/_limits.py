"""Rate limits of callers (``Identity.rate_limits``), in this process or shared through Redis.

``install(gateway, config)`` adds the limiter to a gateway's guards. Each ``RateLimit``
(a key's, a user's, a team's) counts requests and tokens per wall-clock minute and calls
in flight: a call is admitted while, for every scope, the minute's requests are below
``rpm``, the minute's tokens (of finished calls, from their usage) are below ``tpm`` and
the calls in flight are below ``max_parallel_requests``; otherwise it is refused with a
429 (``rate_limit_exceeded``) whose ``retry-after`` is the seconds to the next minute (1
for the parallel limit). Either every scope counts the call or none does.

With ``router_settings.redis_url`` (or ``redis_host`` / ``redis_port`` /
``redis_password``) the counts live in Redis and hold across processes and hosts: one Lua
script checks and counts every scope at once. When Redis does not answer, that call is
counted in this process (limits hold per process while Redis is down), a warning is
logged at most once a minute, and no request fails because of Redis.

``worker_app()`` is the app factory of ``modelport serve --workers N`` (the config path in
``MODELPORT_CONFIG``); ``run_workers`` runs it in N processes on one socket.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import attrs

from ..errors import ConfigError, RateLimitError
from ..routing._redis import (
    WINDOW,
    Outage,
    RedisSettings,
    minute_window,
    redis_settings,
    router_state_for,
    seconds_to_next_window,
)
from ._app import CallRecord, Gateway, Identity, RateLimit

if TYPE_CHECKING:
    import socket

__all__ = [
    "RateLimiter",
    "Admission",
    "Decision",
    "InProcessLimits",
    "RedisLimits",
    "install",
    "build_app",
    "worker_app",
    "run_workers",
    "router_state_for",
    "CONFIG_ENV",
]

log = logging.getLogger("modelport.server")

#: The environment variable ``worker_app`` reads the config path from.
CONFIG_ENV = "MODELPORT_CONFIG"
_WINDOW_TTL = 2 * WINDOW
_SCOPE_NAMES = {"key": "this key's", "user": "this user's", "team": "this team's"}


@attrs.frozen
class Decision:
    """What a backend decided: admitted, or refused by one scope's limit
    (``limit``: ``requests``, ``tokens`` or ``parallel``); remaining counts of the tightest scope."""

    admitted: bool
    scope: str = ""
    limit: str = ""
    remaining_requests: Optional[int] = None
    remaining_tokens: Optional[int] = None


def _merged(limits: Iterable[RateLimit]) -> Tuple[RateLimit, ...]:
    """The limits that limit something, one per scope (the lowest of each kind)."""
    by_scope: Dict[str, RateLimit] = {}
    for limit in limits:
        if limit.rpm is None and limit.tpm is None and limit.max_parallel_requests is None:
            continue
        before = by_scope.get(limit.scope)
        if before is None:
            by_scope[limit.scope] = limit
            continue
        by_scope[limit.scope] = RateLimit(
            limit.scope,
            _lowest(before.rpm, limit.rpm),
            _lowest(before.tpm, limit.tpm),
            _lowest(before.max_parallel_requests, limit.max_parallel_requests),
        )
    return tuple(by_scope.values())


def _lowest(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return b if a is None else a if b is None else min(a, b)


def _least(values: Iterable[int]) -> Optional[int]:
    found = list(values)
    return max(0, min(found)) if found else None


# --- in this process ---------------------------------------------------------------------


class _Counts:
    __slots__ = ("window", "requests", "tokens", "in_flight")

    def __init__(self, window: int) -> None:
        self.window = window
        self.requests = 0
        self.tokens = 0
        self.in_flight = 0


class InProcessLimits:
    """Counts in this process (the default, and the fallback while Redis is down).
    Called from the event loop only: a check and its count run with no await between."""

    def __init__(self) -> None:
        self._counts: Dict[str, _Counts] = {}
        self._window = 0

    def _of(self, scope: str, window: int) -> _Counts:
        if window != self._window:  # a new minute: forget idle scopes of older ones
            self._window = window
            self._counts = {s: c for s, c in self._counts.items() if c.window >= window - 1 or c.in_flight}
        counts = self._counts.get(scope)
        if counts is None:
            counts = self._counts[scope] = _Counts(window)
        elif counts.window != window:
            counts.window, counts.requests, counts.tokens = window, 0, 0
        return counts

    def admit(self, limits: Tuple[RateLimit, ...], now: float) -> Decision:
        window = minute_window(now)
        counts = [self._of(limit.scope, window) for limit in limits]
        for limit, c in zip(limits, counts):
            if limit.rpm is not None and c.requests >= limit.rpm:
                return Decision(False, limit.scope, "requests")
            if limit.tpm is not None and c.tokens >= limit.tpm:
                return Decision(False, limit.scope, "tokens")
            if limit.max_parallel_requests is not None and c.in_flight >= limit.max_parallel_requests:
                return Decision(False, limit.scope, "parallel")
        for limit, c in zip(limits, counts):
            c.requests += 1
            if limit.max_parallel_requests is not None:
                c.in_flight += 1
        return Decision(
            True,
            remaining_requests=_least(limit.rpm - c.requests for limit, c in zip(limits, counts) if limit.rpm is not None),
            remaining_tokens=_least(limit.tpm - c.tokens for limit, c in zip(limits, counts) if limit.tpm is not None),
        )

    def release(self, limits: Tuple[RateLimit, ...], tokens: int, now: float) -> None:
        window = minute_window(now)
        for limit in limits:
            counts = self._of(limit.scope, window)
            if limit.max_parallel_requests is not None:
                counts.in_flight = max(0, counts.in_flight - 1)
            if tokens and limit.tpm is not None:
                counts.tokens += tokens

    def usage(self, scope: str, now: float) -> Tuple[int, int, int]:
        """(requests this minute, tokens this minute, calls in flight) of ``scope``."""
        counts = self._counts.get(scope)
        if counts is None:
            return 0, 0, 0
        same = counts.window == minute_window(now)
        return (counts.requests if same else 0), (counts.tokens if same else 0), counts.in_flight


# --- in Redis ----------------------------------------------------------------------------

#: KEYS: per scope (requests of the minute, tokens of the minute, leases in flight);
#: ARGV: now, member, lease seconds, counter ttl, then per scope rpm, tpm, parallel (-1: none).
_ADMIT = """
local now, member, lease, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local n = #KEYS / 3
local used = {}
for i = 0, n - 1 do
  local rpm, tpm, par = tonumber(ARGV[5 + i * 3]), tonumber(ARGV[6 + i * 3]), tonumber(ARGV[7 + i * 3])
  if rpm >= 0 and tonumber(redis.call('GET', KEYS[1 + i * 3]) or '0') >= rpm then return {0, i, 1} end
  if tpm >= 0 then
    used[i] = tonumber(redis.call('GET', KEYS[2 + i * 3]) or '0')
    if used[i] >= tpm then return {0, i, 2} end
  end
  if par >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3 + i * 3], '-inf', now)
    if redis.call('ZCARD', KEYS[3 + i * 3]) >= par then return {0, i, 3} end
  end
end
local requests, tokens = -1, -1
for i = 0, n - 1 do
  local rpm, tpm, par = tonumber(ARGV[5 + i * 3]), tonumber(ARGV[6 + i * 3]), tonumber(ARGV[7 + i * 3])
  if rpm >= 0 then
    local count = redis.call('INCR', KEYS[1 + i * 3])
    if count == 1 then redis.call('EXPIRE', KEYS[1 + i * 3], ttl) end
    if requests < 0 or rpm - count < requests then requests = rpm - count end
  end
  if tpm >= 0 and (tokens < 0 or tpm - used[i] < tokens) then tokens = tpm - used[i] end
  if par >= 0 then
    redis.call('ZADD', KEYS[3 + i * 3], now + lease, member)
    redis.call('EXPIRE', KEYS[3 + i * 3], math.ceil(lease) + 1)
  end
end
return {1, requests, tokens}
"""

#: KEYS: per scope (tokens of the minute, leases in flight); ARGV: tokens, member, ttl,
#: then per scope "1"/"0" for counting tokens and for holding a lease.
_RELEASE = """
local tokens, member, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3]
for i = 0, #KEYS / 2 - 1 do
  if ARGV[4 + i * 2] == '1' and tokens > 0 then
    redis.call('INCRBY', KEYS[1 + i * 2], tokens)
    redis.call('EXPIRE', KEYS[1 + i * 2], ttl)
  end
  if ARGV[5 + i * 2] == '1' then redis.call('ZREM', KEYS[2 + i * 2], member) end
end
return 1
"""

_LIMITS = ("requests", "tokens", "parallel")


class RedisLimits:
    """Counts in Redis, shared by every process with the same Redis and key prefix.
    Calls in flight are leases that expire after ``lease_seconds``, so a process that dies
    holding some does not hold them forever. Raises whatever Redis raises."""

    def __init__(self, settings: RedisSettings, *, lease_seconds: float = 900.0, client_factory: Optional[Callable[[], Any]] = None) -> None:
        self.settings = settings
        self._lease = lease_seconds
        self._prefix = f"{settings.key_prefix}:limits"
        self._factory = client_factory or settings.async_client
        self._client: Any = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._admit: Any = None
        self._release: Any = None

    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # asyncio clients belong to one loop
            self._client, self._loop = self._factory(), loop
            self._admit = self._client.register_script(_ADMIT)
            self._release = self._client.register_script(_RELEASE)
        return self._client

    def _key(self, kind: str, scope: str, window: Optional[int] = None) -> str:
        return f"{self._prefix}:{kind}:{scope}" if window is None else f"{self._prefix}:{kind}:{scope}:{window}"

    async def admit(self, limits: Tuple[RateLimit, ...], member: str, now: float) -> Decision:
        self._redis()
        window = minute_window(now)
        keys: List[str] = []
        args: List[Any] = [repr(now), member, self._lease, _WINDOW_TTL]
        for limit in limits:
            keys += [self._key("req", limit.scope, window), self._key("tok", limit.scope, window), self._key("fly", limit.scope)]
            args += [-1 if value is None else value for value in (limit.rpm, limit.tpm, limit.max_parallel_requests)]
        admitted, first, second = await self._admit(keys=keys, args=args)
        if not admitted:
            return Decision(False, limits[int(first)].scope, _LIMITS[int(second) - 1])
        return Decision(True, remaining_requests=None if first < 0 else int(first), remaining_tokens=None if second < 0 else max(0, int(second)))

    async def release(self, limits: Tuple[RateLimit, ...], member: str, tokens: int, now: float) -> None:
        self._redis()
        window = minute_window(now)
        keys: List[str] = []
        args: List[Any] = [int(tokens), member, _WINDOW_TTL]
        for limit in limits:
            keys += [self._key("tok", limit.scope, window), self._key("fly", limit.scope)]
            args += ["1" if limit.tpm is not None else "0", "1" if limit.max_parallel_requests is not None else "0"]
        await self._release(keys=keys, args=args)

    async def ping(self) -> None:
        await self._redis().ping()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


# --- the guard ---------------------------------------------------------------------------


class Admission:
    """An admitted call: awaited with its ``CallRecord`` when the call is over (gives back
    its parallel slot, counts its tokens). ``headers`` are OpenAI's ``x-ratelimit-*``
    headers for the answer."""

    __slots__ = ("_limiter", "_limits", "_member", "_shared", "headers")

    def __init__(self, limiter: "RateLimiter", limits: Tuple[RateLimit, ...], member: str, shared: bool, headers: Dict[str, str]) -> None:
        self._limiter = limiter
        self._limits = limits
        self._member = member
        self._shared = shared
        self.headers = headers

    async def __call__(self, record: CallRecord) -> None:
        await self._limiter._release(self._limits, self._member, self._shared, tokens_of(record))


def tokens_of(record: CallRecord) -> int:
    """The tokens a finished call used (``total_tokens``, else prompt + completion)."""
    usage = record.usage
    if not isinstance(usage, Mapping):
        return 0
    total = usage.get("total_tokens")
    if not isinstance(total, int) or isinstance(total, bool):
        parts = [usage.get(name) for name in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")]
        total = sum(p for p in parts if isinstance(p, int) and not isinstance(p, bool))
    return max(0, total)


class RateLimiter:
    """The gateway guard enforcing ``Identity.rate_limits`` (see the module docstring)."""

    def __init__(self, redis: Optional[RedisLimits] = None, *, clock: Callable[[], float] = time.time, recheck_seconds: float = 2.0) -> None:
        self.local = InProcessLimits()
        self.redis = redis
        self._clock = clock
        self._member = f"{uuid.uuid4().hex[:12]}:"
        self._numbers = itertools.count()
        where = redis.settings.where() if redis is not None else ""
        self.outage = Outage(where, "rate limits hold per process until it answers", recheck_seconds)

    async def admit(self, identity: Identity, operation: str, model: str, body: Dict[str, Any]) -> Optional[Admission]:
        if not identity.rate_limits:
            return None
        limits = _merged(identity.rate_limits)
        if not limits:
            return None
        now = self._clock()
        member = f"{self._member}{next(self._numbers)}"
        decision: Optional[Decision] = None
        if self.redis is not None and self.outage.usable():
            try:
                decision = await self.redis.admit(limits, member, now)
            except Exception as error:  # Redis is down or failing: count in this process
                self.outage.failed(error)
            else:
                self.outage.answered()
        shared = decision is not None
        if decision is None:
            decision = self.local.admit(limits, now)
        if not decision.admitted:
            raise refusal(decision, limits, now)
        return Admission(self, limits, member, shared, ratelimit_headers(decision, limits, now))

    async def _release(self, limits: Tuple[RateLimit, ...], member: str, shared: bool, tokens: int) -> None:
        now = self._clock()
        if not shared:
            self.local.release(limits, tokens, now)
            return
        redis = self.redis
        if redis is None:
            return

        async def give_back() -> None:
            try:
                await redis.release(limits, member, tokens, now)
            except Exception as error:  # the lease expires in Redis on its own
                self.outage.failed(error)

        await asyncio.shield(give_back())  # a cancelled request still gives back its lease

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def refusal(decision: Decision, limits: Tuple[RateLimit, ...], now: float) -> RateLimitError:
    """The 429 for a refused call: which limit (never the key or its hash), when to retry."""
    limit = next(lm for lm in limits if lm.scope == decision.scope)
    whose = _SCOPE_NAMES.get(decision.scope.split(":", 1)[0], "a")
    if decision.limit == "parallel":
        wait = 1.0
        what = f"{whose} limit of {limit.max_parallel_requests} requests in parallel"
    else:
        wait = seconds_to_next_window(now)
        what = f"{whose} limit of {limit.rpm} requests per minute" if decision.limit == "requests" else f"{whose} limit of {limit.tpm} tokens per minute"
    return RateLimitError(
        f"rate limit reached: {what}; retry in {math.ceil(wait)}s",
        status=429,
        code="rate_limit_exceeded",
        retry_after=wait,
        retryable=False,  # the gateway did not retry; the client may, after retry-after
    )


def ratelimit_headers(decision: Decision, limits: Tuple[RateLimit, ...], now: float) -> Dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers of the tightest scope."""
    headers: Dict[str, str] = {}
    reset = f"{math.ceil(seconds_to_next_window(now))}s"
    rpms = [lm.rpm for lm in limits if lm.rpm is not None]
    tpms = [lm.tpm for lm in limits if lm.tpm is not None]
    if rpms and decision.remaining_requests is not None:
        headers["x-ratelimit-limit-requests"] = str(min(rpms))
        headers["x-ratelimit-remaining-requests"] = str(decision.remaining_requests)
        headers["x-ratelimit-reset-requests"] = reset
    if tpms and decision.remaining_tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(min(tpms))
        headers["x-ratelimit-remaining-tokens"] = str(decision.remaining_tokens)
        headers["x-ratelimit-reset-tokens"] = reset
    return headers


# --- wiring ------------------------------------------------------------------------------


def install(gateway: Gateway, config: Any, *, router_settings: Optional[Mapping[str, Any]] = None, **options: Any) -> RateLimiter:
    """Add the rate limiter to ``gateway`` (Redis-backed when the config names a Redis),
    with a start-up check of Redis and its connections closed at shutdown."""
    settings = redis_settings(router_settings if router_settings is not None else config)
    limiter = RateLimiter(RedisLimits(settings) if settings is not None else None, **options)
    gateway.guards.append(limiter)

    async def check_redis() -> None:
        if limiter.redis is None:
            return
        try:
            await limiter.redis.ping()
        except Exception as error:
            limiter.outage.failed(error)
        else:
            log.info("rate limits are shared through Redis at %s", limiter.redis.settings.where())

    gateway.on_startup.append(check_redis)
    gateway.on_shutdown.append(limiter.aclose)
    return limiter


def build_app(config_path: str, *, router_settings: Optional[Mapping[str, Any]] = None, auth: Any = None, **client_options: Any) -> Any:
    """``app_from_config`` with shared state: the router keeps its state in Redis and the
    rate limiter is installed when the config names a Redis (in-process otherwise).
    ``auth`` replaces the master-key check (an ``Auth``)."""
    from ..client import AsyncClient
    from ..routing import load_config
    from . import feature_routes, settings_from_config

    config = load_config(config_path)
    settings = settings_from_config(config.general)
    client_options.setdefault("max_connections", settings.max_connections)
    client = AsyncClient.from_config(config, **client_options)
    state = router_state_for(config, router_settings)
    if state is not None and client.router is not None:
        client.router.state = state
    master_key = config.resolved_master_key()
    if not master_key and auth is None:
        log.warning("no general_settings.master_key: the gateway accepts every request")
    gateway = Gateway(client, master_key=master_key, settings=settings, auth=auth)
    routes = feature_routes(gateway)
    install(gateway, config, router_settings=router_settings)  # last: other guards refuse before it counts
    if state is not None:

        async def close_state() -> None:
            state.close()

        gateway.on_shutdown.append(close_state)
    return gateway.app(routes)


def worker_app() -> Any:
    """The app of one ``modelport serve --workers N`` process: ``build_app`` of the config
    file named by ``MODELPORT_CONFIG`` (uvicorn imports it by name, with ``factory=True``)."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"{CONFIG_ENV} must name the config file of the gateway's workers")
    level = os.environ.get("MODELPORT_LOG_LEVEL")
    if level:
        from . import _configure_logging

        _configure_logging(level, os.environ.get("MODELPORT_LOG_FORMAT") == "json")
    return build_app(path)


def shared_state_warning(config: Any, workers: int) -> Optional[str]:
    """What ``serve`` must say at start when ``workers`` processes share no Redis."""
    if workers > 1 and redis_settings(config) is None:
        return (
            f"{workers} workers without router_settings.redis_url: rate limits, deployment rpm / tpm / "
            "parallel limits, cool-downs and round-robin hold per process (each worker allows the full limits)"
        )
    return None


def run_workers(
    config_path: str,
    sock: "socket.socket",
    workers: int,
    *,
    config: Any = None,
    log_level: str = "info",
    access_log: bool = True,
    json_logs: bool = False,
    limit_concurrency: int = 4096,
    timeout_keep_alive: int = 5,
) -> int:
    """Serve ``worker_app`` in ``workers`` processes accepting on ``sock`` (bound by the
    caller) until interrupted; the exit code. Warns when the workers share no Redis."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from ..routing import load_config

    warning = shared_state_warning(config if config is not None else load_config(config_path), workers)
    if warning:
        log.warning("%s", warning)
    os.environ[CONFIG_ENV] = os.path.abspath(config_path)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # /metrics counts every worker's calls
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelport-metrics-")
    os.environ["MODELPORT_LOG_LEVEL"] = log_level
    os.environ["MODELPORT_LOG_FORMAT"] = "json" if json_logs else "text"
    uv_config = uvicorn.Config(
        f"{__name__}:worker_app",
        factory=True,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
        log_config=None,
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=timeout_keep_alive,
    )
    Multiprocess(uv_config, sockets=[sock]).run()
    return 0
