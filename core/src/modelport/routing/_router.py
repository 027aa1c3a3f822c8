"""The router: config aliases to deployments, with strategies, limits, cool-downs and fallbacks.

What the router learns (cool-downs, failures, calls in flight, latency, usage per minute,
round-robin positions) lives in a ``RouterState`` behind a small interface, never on the
config objects, so a gateway can keep it in a shared store; ``InMemoryRouterState`` is the
in-process default.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import attrs

from ..errors import (
    BadRequestError,
    ConfigError,
    ContentFilterError,
    ContextWindowExceededError,
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    UnprocessableEntityError,
)
from ._config import Config, Deployment

__all__ = ["Router", "RouterState", "InMemoryRouterState", "Ticket", "fails_over"]

_WINDOW = 60.0  # seconds: rpm / tpm and allowed_fails count per minute, as LiteLLM's do


class RouterState(Protocol):
    """Where the router keeps what it learns about deployments."""

    def next_turn(self, group: str) -> int:
        """A counter per model group: the round-robin position (each call advances it)."""

    def cooling(self, deployment_id: str, now: float) -> bool:
        """True while the deployment is cooling down after failures."""

    def cool_down(self, deployment_id: str, until: float) -> None:
        """Keep the deployment out of first place until ``until`` (monotonic seconds)."""

    def recovered(self, deployment_id: str) -> None:
        """The deployment answered: forget its cool-down and failures."""

    def count_failure(self, deployment_id: str, window: int) -> int:
        """Record a failure in minute ``window``; the failures in that minute so far."""

    def begin(self, deployment_id: str, window: int, limits: Tuple[Optional[int], Optional[int], Optional[int]]) -> bool:
        """Count one call (in flight and this minute) unless it would pass ``limits``
        (rpm, tpm, max parallel); False when the deployment is at a limit. Atomic."""

    def end(self, deployment_id: str, window: int, tokens: int, latency: Optional[float]) -> None:
        """The call is over: one fewer in flight, ``tokens`` used, ``latency`` observed."""

    def load(self, deployment_id: str, window: int) -> Tuple[int, int, int, Optional[float]]:
        """(calls in flight, requests this minute, tokens this minute, average latency)."""


class InMemoryRouterState:
    """``RouterState`` for one process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: Dict[str, int] = {}
        self._cooling_until: Dict[str, float] = {}
        self._failures: Dict[Tuple[str, int], int] = {}
        self._in_flight: Dict[str, int] = {}
        self._usage: Dict[Tuple[str, int], List[int]] = {}  # (id, minute) -> [requests, tokens]
        self._latency: Dict[str, float] = {}

    def next_turn(self, group: str) -> int:
        with self._lock:
            turn = self._turns.get(group, 0)
            self._turns[group] = turn + 1
            return turn

    def cooling(self, deployment_id: str, now: float) -> bool:
        return self._cooling_until.get(deployment_id, 0.0) > now

    def cool_down(self, deployment_id: str, until: float) -> None:
        with self._lock:
            self._cooling_until[deployment_id] = max(until, self._cooling_until.get(deployment_id, 0.0))

    def recovered(self, deployment_id: str) -> None:
        if deployment_id in self._cooling_until:
            with self._lock:
                self._cooling_until.pop(deployment_id, None)

    def count_failure(self, deployment_id: str, window: int) -> int:
        with self._lock:
            key = (deployment_id, window)
            self._failures[key] = self._failures.get(key, 0) + 1
            for old in [k for k in self._failures if k[1] < window - 1]:
                del self._failures[old]
            return self._failures[key]

    def begin(self, deployment_id: str, window: int, limits: Tuple[Optional[int], Optional[int], Optional[int]]) -> bool:
        rpm, tpm, parallel = limits
        with self._lock:
            usage = self._usage.setdefault((deployment_id, window), [0, 0])
            flying = self._in_flight.get(deployment_id, 0)
            if (rpm is not None and usage[0] >= rpm) or (tpm is not None and usage[1] >= tpm) or (parallel is not None and flying >= parallel):
                return False
            usage[0] += 1
            self._in_flight[deployment_id] = flying + 1
            for old in [k for k in self._usage if k[1] < window - 1]:
                del self._usage[old]
            return True

    def end(self, deployment_id: str, window: int, tokens: int, latency: Optional[float]) -> None:
        with self._lock:
            self._in_flight[deployment_id] = max(0, self._in_flight.get(deployment_id, 0) - 1)
            if tokens:
                self._usage.setdefault((deployment_id, window), [0, 0])[1] += tokens
            if latency is not None:
                before = self._latency.get(deployment_id)
                self._latency[deployment_id] = latency if before is None else 0.7 * before + 0.3 * latency

    def load(self, deployment_id: str, window: int) -> Tuple[int, int, int, Optional[float]]:
        requests, tokens = self._usage.get((deployment_id, window), (0, 0))
        return self._in_flight.get(deployment_id, 0), requests, tokens, self._latency.get(deployment_id)


def fails_over(error: BaseException) -> bool:
    """Whether another deployment might succeed where this one failed."""
    if isinstance(error, (InvalidRequestError, BadRequestError, UnprocessableEntityError)):
        return False
    return isinstance(error, (ProviderError, ConfigError))


@attrs.frozen
class Ticket:
    """One call counted against a deployment (``Router.begin``), handed back to ``end``."""

    deployment: Deployment
    window: int
    started: float


class Router:
    """Resolves config aliases to deployments, with strategies, limits, cool-downs and fallbacks."""

    def __init__(
        self,
        config: Config,
        state: Any = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.config = config
        self.state: RouterState = state if state is not None else InMemoryRouterState()
        self._clock = clock
        self._rng = rng or random.Random()
        self._groups: Dict[str, List[Deployment]] = {}
        self._wildcards: List[Tuple[str, str, str]] = []  # (model_name, prefix, suffix), most specific first
        for deployment in config.deployments:
            self._groups.setdefault(deployment.model_name, []).append(deployment)
            if deployment.is_wildcard and deployment.model_name not in [w[0] for w in self._wildcards]:
                prefix, _, suffix = deployment.model_name.partition("*")
                self._wildcards.append((deployment.model_name, prefix, suffix))
        self._wildcards.sort(key=lambda w: -(len(w[1]) + len(w[2])))

    def now(self) -> float:
        """The router's clock (monotonic seconds): what cool-downs in its state are measured on."""
        return self._clock()

    # -- names ------------------------------------------------------------------------------

    def group_of(self, model: str) -> Optional[str]:
        """The model group that serves a requested name: the group itself, an alias of one
        (``model_group_alias``), or the most specific wildcard group matching it."""
        if model in self._groups and "*" not in model:
            return model
        alias = self.config.model_group_alias.get(model)
        if alias is not None:
            return alias
        for name, prefix, suffix in self._wildcards:
            if model.startswith(prefix) and model.endswith(suffix) and len(model) >= len(prefix) + len(suffix):
                return name
        return None

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.group_of(model) is not None

    @property
    def model_names(self) -> List[str]:
        return [*self._groups, *self.config.model_group_alias]

    def _members(self, group: str, requested: str) -> List[Deployment]:
        members = self._groups.get(group, [])
        return [d.for_model(requested) if d.is_wildcard else d for d in members]

    def _fallback_groups(self, group: str) -> List[str]:
        table = self.config.fallbacks
        return table[group] if group in table else [g for g in self.config.default_fallbacks if g != group]

    def deployments(self, model: str) -> List[Deployment]:
        """The group's deployments and its fallbacks', in config order (no state read or moved)."""
        group = self.group_of(model)
        if group is None:
            return []
        out: List[Deployment] = []
        for name in [group, *self._fallback_groups(group)]:
            out.extend(self._members(name, model))
        return out

    # -- ordering ---------------------------------------------------------------------------

    def plan(self, model: str) -> List[Deployment]:
        """Deployments to try for one call, in order: the group's (by priority tier, the
        strategy's order within a tier, healthy ones first), then each fallback group."""
        group = self.group_of(model)
        if group is None:
            return []
        order: List[Deployment] = []
        for name in [group, *self._fallback_groups(group)]:
            order.extend(self._ordered(name, self._members(name, model)))
        return order

    def _ordered(self, group: str, members: List[Deployment]) -> List[Deployment]:
        if not members:
            return []
        now = self._clock()
        window = int(now // _WINDOW)
        state = self.state
        strategy = self.config.routing_strategy
        if strategy == "simple-shuffle":
            ranked = self._shuffled(members)
        elif strategy == "round-robin":
            start = state.next_turn(group) % len(members)
            ranked = members[start:] + members[:start]
        else:
            loads = {d.id: state.load(d.id, window) for d in members}
            if strategy == "least-busy":
                ranked = sorted(members, key=lambda d: loads[d.id][0])
            elif strategy == "latency-based-routing":
                ranked = sorted(members, key=lambda d: loads[d.id][3] or 0.0)
            else:  # usage-based routing: the least used share of its limits this minute
                ranked = sorted(members, key=lambda d: (_share(loads[d.id][2], d.tpm), _share(loads[d.id][1], d.rpm)))
        tiers = sorted({d.order for d in ranked if d.order is not None})
        by_tier = [d for tier in tiers for d in ranked if d.order == tier] + [d for d in ranked if d.order is None]
        return sorted(by_tier, key=lambda d: state.cooling(d.id, now))

    def _shuffled(self, members: List[Deployment]) -> List[Deployment]:
        """Weighted random order (``weight``, else ``rpm``, else ``tpm``, else equal)."""
        pool = list(members)
        out = []
        while pool:
            weights = [float(d.weight if d.weight is not None else d.rpm or d.tpm or 1) for d in pool]
            pick = self._rng.choices(range(len(pool)), weights=weights)[0] if sum(weights) > 0 else 0
            out.append(pool.pop(pick))
        return out

    # -- one call ---------------------------------------------------------------------------

    def call_arguments(self, deployment: Deployment, kwargs: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        """The model string and keyword arguments for calling ``deployment`` (caller's win)."""
        merged = {**self.config.call_defaults, **deployment.call_kwargs()}
        retries = deployment.num_retries if deployment.num_retries is not None else self.config.num_retries
        if retries is not None:
            merged.setdefault("num_retries", retries)
        timeout = deployment.stream_timeout if kwargs.get("stream") and deployment.stream_timeout is not None else deployment.timeout
        if timeout is None:
            timeout = self.config.timeout
        if timeout is not None:
            merged.setdefault("timeout", timeout)
        merged.update(kwargs)
        return deployment.model, merged

    def begin(self, deployment: Deployment) -> Optional[Ticket]:
        """Count a call against ``deployment``; None when it is at its rpm / tpm / parallel limit."""
        now = self._clock()
        window = int(now // _WINDOW)
        if not self.state.begin(deployment.id, window, (deployment.rpm, deployment.tpm, deployment.max_parallel_requests)):
            return None
        return Ticket(deployment, window, now)

    def end(self, ticket: Ticket, *, result: Any = None, error: Optional[BaseException] = None) -> None:
        """Record how the call went: usage and latency, or a failure (and a cool-down once
        ``allowed_fails`` is passed within a minute)."""
        now = self._clock()
        deployment = ticket.deployment
        tokens = _tokens(result) if error is None else 0
        self.state.end(deployment.id, ticket.window, tokens, now - ticket.started if error is None else None)
        if error is None:
            self.state.recovered(deployment.id)
        elif fails_over(error):
            if self.state.count_failure(deployment.id, int(now // _WINDOW)) > self.config.allowed_fails:
                self.state.cool_down(deployment.id, now + self.config.cooldown_time)

    def redirect(self, model: str, error: BaseException) -> List[Deployment]:
        """Deployments of the context-window or content-policy fallbacks for ``error``."""
        group = self.group_of(model)
        if group is None:
            return []
        if isinstance(error, ContextWindowExceededError):
            targets = self.config.context_window_fallbacks.get(group, [])
        elif isinstance(error, ContentFilterError):
            targets = self.config.content_policy_fallbacks.get(group, [])
        else:
            return []
        return [d for name in targets for d in self._ordered(name, self._members(name, model))]

    def context_window(self, deployment: Deployment) -> Optional[int]:
        """The deployment's input limit in tokens: its ``model_info`` (``max_input_tokens``,
        else ``max_tokens``), else the model catalog; None when unknown."""
        for key in ("max_input_tokens", "max_tokens"):
            value = deployment.info.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        try:
            from ..catalog import get_model_info

            info = get_model_info(deployment.model, config_deployment=deployment)
        except Exception:  # not in the catalog, or the catalog's plugin is not installed
            return None
        value = info.get("max_input_tokens") or info.get("max_tokens")
        return value if isinstance(value, int) and value > 0 else None

    def fitting(self, deployments: List[Deployment], prompt_tokens: Optional[int]) -> List[Deployment]:
        """``deployments`` whose context window holds ``prompt_tokens`` (when pre-call
        checks are on; a deployment of unknown window is kept)."""
        if not self.config.enable_pre_call_checks or prompt_tokens is None:
            return deployments
        return [d for d in deployments if (window := self.context_window(d)) is None or prompt_tokens <= window]

    def limit_error(self, model: str) -> RateLimitError:
        """Every deployment of ``model`` is at its limits: retry when the minute turns."""
        next_window = getattr(self.state, "seconds_to_next_window", None)  # a shared state's own minutes
        wait = next_window() if callable(next_window) else _WINDOW - (self._clock() % _WINDOW)
        return RateLimitError(
            f"every deployment of {model!r} is at its rpm / tpm / parallel-request limit; retry in {wait:.0f}s",
            status=429,
            code="rate_limit_exceeded",
            retry_after=wait,
            retryable=False,  # the limits are the router's own: retrying at once cannot help
        )

    # -- v1 names ---------------------------------------------------------------------------

    def failed(self, deployment: Deployment, error: BaseException) -> bool:
        """Record a failure outside a counted call; True when the next deployment should be tried."""
        if not fails_over(error):
            return False
        now = self._clock()
        if self.state.count_failure(deployment.id, int(now // _WINDOW)) > self.config.allowed_fails:
            self.state.cool_down(deployment.id, now + self.config.cooldown_time)
        return True

    def succeeded(self, deployment: Deployment) -> None:
        self.state.recovered(deployment.id)


def _share(used: int, limit: Optional[int]) -> float:
    return used / limit if limit else float(used)


def _tokens(result: Any) -> int:
    usage = result.get("usage") if isinstance(result, dict) else None
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else 0
