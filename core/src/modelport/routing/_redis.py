"""Router state shared through Redis: every gateway process (``--workers``, several hosts)
sees the same cool-downs, round-robin turns, failure counts, calls in flight, usage per
minute and latency.

    state = router_state_for(config)          # None when router_settings name no Redis
    router = Router(config, state=state)

Redis comes from ``router_settings``: ``redis_url`` or LiteLLM's ``redis_host`` /
``redis_port`` / ``redis_password`` (``os.environ/NAME`` works for each), and
``redis_key_prefix`` (default ``modelport``) to keep configs apart on one Redis.

Every check-and-count is one Lua script, so two processes can never both take the last
request of a minute. Minutes are wall-clock minutes (``time.time() // 60``), the same on
every host whose clock is synchronised; counters expire with their minute, calls in flight
are leases that expire after ``lease_seconds`` (a crashed process cannot hold them forever).

When Redis does not answer, that call uses this process's own ``InMemoryRouterState``
(limits hold per process while Redis is down), a warning is logged at most once a minute,
and Redis is tried again after ``recheck_seconds``; a call never fails because of Redis.

The ``RouterState`` protocol is synchronous (the router runs inside the call engine), so
each Redis round trip here blocks its thread for the round trip: a routed call costs about
three (the round-robin turn, ``begin``, ``end``); cool-downs are read through a local
cache refreshed every ``cache_seconds``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs

from ..errors import ConfigError
from ._config import EnvRef
from ._router import InMemoryRouterState

__all__ = [
    "RedisSettings",
    "RedisRouterState",
    "Outage",
    "redis_settings",
    "raw_router_settings",
    "router_state_for",
    "minute_window",
    "seconds_to_next_window",
    "WINDOW",
]

log = logging.getLogger("modelport.routing")

#: Seconds of one rate window (rpm / tpm / allowed_fails count per minute).
WINDOW = 60
#: Counters of a minute live this long (the minute and the next, for late ``end`` calls).
_WINDOW_TTL = 2 * WINDOW
_LATENCY_TTL = 24 * 3600
#: ``router_settings`` keys read here (``load_config`` must accept them).
REDIS_KEYS = ("redis_url", "redis_host", "redis_port", "redis_password", "redis_key_prefix")


def minute_window(now: float) -> int:
    """The number of the wall-clock minute ``now`` (``time.time()``) falls in."""
    return int(now // WINDOW)


def seconds_to_next_window(now: float) -> float:
    """Seconds until the next wall-clock minute begins (at least 1, for ``retry-after``)."""
    return max(1.0, float(math.ceil(WINDOW - (now % WINDOW))))


# --- settings ----------------------------------------------------------------------------


def _value(raw: Mapping[str, Any], key: str) -> Any:
    value = raw.get(key)
    if isinstance(value, str) and value.startswith("os.environ/"):
        value = EnvRef(value[len("os.environ/") :])
    if isinstance(value, EnvRef):
        return value.resolve(f"router_settings.{key}")
    return value


@attrs.frozen
class RedisSettings:
    """Where Redis is: a URL, or host / port / password (never shown in logs or reprs)."""

    url: Optional[str] = attrs.field(default=None, repr=False)
    host: Optional[str] = None
    port: int = 6379
    password: Optional[str] = attrs.field(default=None, repr=False)
    key_prefix: str = "modelport"
    #: Seconds to connect / to wait for an answer; Redis answers a healthy LAN in a millisecond.
    connect_timeout: float = 0.25
    timeout: float = 0.5

    @classmethod
    def from_router_settings(cls, raw: Mapping[str, Any]) -> Optional["RedisSettings"]:
        """The settings ``router_settings`` give, or None when they name no Redis."""
        url, host = _value(raw, "redis_url"), _value(raw, "redis_host")
        if not url and not host:
            return None
        if url is not None and not isinstance(url, str):
            raise ConfigError("router_settings.redis_url must be a URL such as redis://host:6379/0")
        if url and not re.match(r"^(redis|rediss|unix)://", url):
            raise ConfigError("router_settings.redis_url must start with redis://, rediss:// or unix://")
        port = _value(raw, "redis_port")
        try:
            port_number = int(port) if port is not None else 6379
        except (TypeError, ValueError):
            raise ConfigError(f"router_settings.redis_port must be a port number, got {port!r}") from None
        password = _value(raw, "redis_password")
        prefix = _value(raw, "redis_key_prefix") or "modelport"
        return cls(
            url=url or None,
            host=None if url else str(host),
            port=port_number,
            password=str(password) if password else None,
            key_prefix=str(prefix),
        )

    def where(self) -> str:
        """Where Redis is, for logs: no password, no URL userinfo."""
        if self.url:
            from ..provider._types import redact_url

            return redact_url(self.url)
        return f"{self.host}:{self.port}"

    def client_options(self) -> Dict[str, Any]:
        return {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.timeout,
            "health_check_interval": 30,
        }

    def sync_client(self) -> Any:
        """A ``redis.Redis`` (thread-safe pool); one immediate retry, for a pooled
        connection that a Redis restart closed."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options = {**self.client_options(), "retry": Retry(NoBackoff(), 1)}
        if self.url:
            return redis.Redis.from_url(self.url, **options)
        return redis.Redis(host=self.host or "127.0.0.1", port=self.port, password=self.password, **options)

    def async_client(self) -> Any:
        """A ``redis.asyncio.Redis`` bound to the running event loop."""
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options = {**self.client_options(), "retry": Retry(NoBackoff(), 1)}
        if self.url:
            return aioredis.Redis.from_url(self.url, **options)
        return aioredis.Redis(host=self.host or "127.0.0.1", port=self.port, password=self.password, **options)


def raw_router_settings(config: Any) -> Dict[str, Any]:
    """``router_settings`` as written in a loaded ``Config``.

    Read from ``config.router_settings`` once ``load_config`` keeps that section; until
    then, from the config's file again (a config built from a mapping has none).
    """
    kept = getattr(config, "router_settings", None)
    if isinstance(kept, Mapping):
        return dict(kept)
    path = getattr(config, "path", "")
    if not path or not os.path.isfile(path):
        return {}
    import pathlib

    from ._config import _env_refs, _read

    section = _env_refs(_read(pathlib.Path(path))).get("router_settings") or {}
    return dict(section) if isinstance(section, dict) else {}


def redis_settings(source: Any) -> Optional[RedisSettings]:
    """The Redis a config names: ``source`` is a loaded ``Config`` or a raw
    ``router_settings`` mapping; None when it names none."""
    raw = source if isinstance(source, Mapping) else raw_router_settings(source)
    return RedisSettings.from_router_settings(raw)


# --- outages -----------------------------------------------------------------------------


_USERINFO = re.compile(r"(://)[^/\s@]+@")


class Outage:
    """Whether to ask Redis now: after a failure it is left alone for ``recheck_seconds``
    (so a Redis that hangs costs one timeout per interval, not one per call), and the
    failure is logged at most once a minute."""

    def __init__(self, where: str, consequence: str, recheck_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.where = where
        self.consequence = consequence
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._down_until = 0.0
        self._warned_at: Optional[float] = None
        self.down = False
        self.failures = 0

    def usable(self) -> bool:
        """Whether to ask Redis now: always while it answers; while it is down, one caller
        per ``recheck_seconds`` (the others go on without it meanwhile)."""
        if not self.down:
            return True
        now = self._clock()
        if now < self._down_until:
            return False
        self._down_until = now + self.recheck_seconds
        return True

    def failed(self, error: BaseException) -> None:
        now = self._clock()
        self.failures += 1
        self.down = True
        self._down_until = now + self.recheck_seconds
        if self._warned_at is None or now - self._warned_at >= 60.0:
            self._warned_at = now
            detail = _USERINFO.sub(r"\1[REDACTED]@", f"{type(error).__name__}: {error}")[:300]
            log.warning("Redis at %s did not answer (%s): %s", self.where, detail, self.consequence)

    def answered(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis at %s answers again: state is shared again", self.where)


# --- the router state --------------------------------------------------------------------

_BEGIN = """
local rpm, tpm, par = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now, lease = tonumber(ARGV[4]), tonumber(ARGV[6])
if rpm >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= rpm then return 0 end
if tpm >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= tpm then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if par >= 0 and redis.call('ZCARD', KEYS[3]) >= par then return 0 end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[7]) end
redis.call('ZADD', KEYS[3], now + lease, ARGV[5])
redis.call('EXPIRE', KEYS[3], math.ceil(lease) + 1)
return 1
"""

_END = """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  redis.call('INCRBY', KEYS[2], tokens)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
if ARGV[3] ~= '' then
  local latency = tonumber(ARGV[3])
  local before = redis.call('GET', KEYS[3])
  if before then latency = 0.7 * tonumber(before) + 0.3 * latency end
  redis.call('SET', KEYS[3], string.format('%.6f', latency), 'EX', ARGV[5])
end
return 1
"""

_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

_COOL = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""


class RedisRouterState:
    """``RouterState`` in Redis, shared by every process that names the same Redis and
    key prefix. Thread-safe; falls back to an in-process state while Redis is down.

    ``clock`` must be the router's clock (``cool_down`` gets a time on it); minutes and
    leases use ``wall_clock``.
    """

    def __init__(
        self,
        settings: RedisSettings,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        cache_seconds: float = 1.0,
        lease_seconds: float = 900.0,
        recheck_seconds: float = 2.0,
    ) -> None:
        self.settings = settings
        self._redis = client if client is not None else settings.sync_client()
        self._clock = clock
        self._wall = wall_clock
        self._cache_seconds = cache_seconds
        self._lease = lease_seconds
        self._prefix = f"{settings.key_prefix}:router"
        self.fallback = InMemoryRouterState()
        self.outage = Outage(settings.where(), "cool-downs, round-robin and deployment limits hold per process until it answers", recheck_seconds)
        self._lock = threading.Lock()
        #: deployment id -> (cooling until, wall time; when read from Redis, wall time).
        self._cooling: Dict[str, Tuple[float, float]] = {}
        #: deployment id -> leases this process holds (None: counted by the fallback).
        self._tickets: Dict[str, List[Optional[str]]] = {}
        self._member = f"{uuid.uuid4().hex[:12]}:"
        self._numbers = itertools.count()
        self._begin = self._redis.register_script(_BEGIN)
        self._end = self._redis.register_script(_END)
        self._count = self._redis.register_script(_COUNT)
        self._cool = self._redis.register_script(_COOL)

    def __repr__(self) -> str:
        return f"RedisRouterState({self.settings.where()!r}, prefix={self.settings.key_prefix!r})"

    def _key(self, kind: str, name: str, window: Optional[int] = None) -> str:
        return f"{self._prefix}:{kind}:{name}" if window is None else f"{self._prefix}:{kind}:{name}:{window}"

    def _try(self, work: Callable[[], Any]) -> Tuple[bool, Any]:
        """(True, result) from Redis, or (False, None) when it is down or fails now."""
        if not self.outage.usable():
            return False, None
        try:
            result = work()
        except Exception as error:  # any Redis trouble: this call goes on without it
            self.outage.failed(error)
            return False, None
        self.outage.answered()
        return True, result

    def seconds_to_next_window(self) -> float:
        """What a 429 of the router should say in ``retry-after`` (minutes are wall-clock)."""
        return seconds_to_next_window(self._wall())

    # -- RouterState ----------------------------------------------------------------------

    def next_turn(self, group: str) -> int:
        ok, turn = self._try(lambda: self._redis.incr(self._key("turn", group)))
        return int(turn) - 1 if ok else self.fallback.next_turn(group)

    def cooling(self, deployment_id: str, now: float) -> bool:
        wall = self._wall()
        cached = self._cooling.get(deployment_id)
        if cached is None or wall - cached[1] >= self._cache_seconds:
            ok, left = self._try(lambda: self._redis.pttl(self._key("cool", deployment_id)))
            if ok:
                cached = (wall + int(left) / 1000.0 if int(left) > 0 else 0.0, wall)
                self._cooling[deployment_id] = cached
        return (cached is not None and cached[0] > wall) or self.fallback.cooling(deployment_id, now)

    def cool_down(self, deployment_id: str, until: float) -> None:
        millis = int((until - self._clock()) * 1000)
        if millis <= 0:
            return
        ok, _ = self._try(lambda: self._cool(keys=[self._key("cool", deployment_id)], args=[millis]))
        if not ok:
            self.fallback.cool_down(deployment_id, until)
            return
        wall = self._wall()
        before = self._cooling.get(deployment_id, (0.0, 0.0))[0]
        self._cooling[deployment_id] = (max(before, wall + millis / 1000.0), wall)

    def recovered(self, deployment_id: str) -> None:
        self.fallback.recovered(deployment_id)
        wall = self._wall()
        cached = self._cooling.get(deployment_id)
        if cached is not None and cached[0] <= wall:
            return  # not cooling when last read (the plan just read it): no round trip
        ok, _ = self._try(lambda: self._redis.delete(self._key("cool", deployment_id)))
        if ok:
            self._cooling[deployment_id] = (0.0, wall)

    def count_failure(self, deployment_id: str, window: int) -> int:
        minute = minute_window(self._wall())
        ok, count = self._try(lambda: self._count(keys=[self._key("fail", deployment_id, minute)], args=[_WINDOW_TTL]))
        return int(count) if ok else self.fallback.count_failure(deployment_id, window)

    def begin(self, deployment_id: str, window: int, limits: Tuple[Optional[int], Optional[int], Optional[int]]) -> bool:
        wall = self._wall()
        minute = minute_window(wall)
        member = f"{self._member}{next(self._numbers)}"
        keys = [self._key("req", deployment_id, minute), self._key("tok", deployment_id, minute), self._key("fly", deployment_id)]
        args = [-1 if limit is None else limit for limit in limits] + [repr(wall), member, self._lease, _WINDOW_TTL]
        ok, admitted = self._try(lambda: self._begin(keys=keys, args=args))
        ticket: Optional[str] = member
        if not ok:
            admitted, ticket = self.fallback.begin(deployment_id, window, limits), None
        if admitted:
            with self._lock:
                self._tickets.setdefault(deployment_id, []).append(ticket)
        return bool(admitted)

    def end(self, deployment_id: str, window: int, tokens: int, latency: Optional[float]) -> None:
        with self._lock:
            held = self._tickets.get(deployment_id)
            member = held.pop() if held else ""
        if member is None:  # counted by the fallback while Redis was down
            self.fallback.end(deployment_id, window, tokens, latency)
            return
        minute = minute_window(self._wall())
        keys = [self._key("fly", deployment_id), self._key("tok", deployment_id, minute), self._key("lat", deployment_id)]
        args = [member, int(tokens or 0), "" if latency is None else repr(float(latency)), _WINDOW_TTL, _LATENCY_TTL]
        ok, _ = self._try(lambda: self._end(keys=keys, args=args))
        if not ok:  # the lease in Redis expires on its own
            self.fallback.end(deployment_id, window, tokens, latency)

    def load(self, deployment_id: str, window: int) -> Tuple[int, int, int, Optional[float]]:
        wall = self._wall()
        minute = minute_window(wall)

        def read() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zcount(self._key("fly", deployment_id), f"({wall!r}", "+inf")
            pipe.get(self._key("req", deployment_id, minute))
            pipe.get(self._key("tok", deployment_id, minute))
            pipe.get(self._key("lat", deployment_id))
            return pipe.execute()

        ok, values = self._try(read)
        if not ok:
            return self.fallback.load(deployment_id, window)
        flying, requests, tokens, latency = values
        return int(flying), int(requests or 0), int(tokens or 0), float(latency) if latency is not None else None

    def close(self) -> None:
        """Close the connections (the state falls back to in-process afterwards if used)."""
        self._redis.close()


def router_state_for(config: Any, router_settings: Optional[Mapping[str, Any]] = None, **options: Any) -> Optional[RedisRouterState]:
    """The shared router state a config asks for (``router_settings.redis_url`` or
    ``redis_host``...), or None: then the router keeps its own in-process state."""
    settings = redis_settings(router_settings if router_settings is not None else config)
    return RedisRouterState(settings, **options) if settings is not None else None
