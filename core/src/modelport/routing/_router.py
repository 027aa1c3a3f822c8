"""The router: config aliases to deployments, with cool-downs, round-robin and fallbacks.

Deployment health (cool-downs, round-robin positions) lives in a ``RouterState``
behind a small interface, never on the config objects, so a gateway can keep it in a
shared store; ``InMemoryRouterState`` is the in-process default.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Protocol, Tuple

from ..errors import BadRequestError, ConfigError, InvalidRequestError, ProviderError, UnprocessableEntityError
from ._config import Config, Deployment

__all__ = ["Router", "RouterState", "InMemoryRouterState"]


class RouterState(Protocol):
    """Where the router keeps what it learns about deployments."""

    def next_turn(self, group: str) -> int:
        """A counter per model group: the round-robin position (each call advances it)."""

    def cooling(self, deployment_id: str, now: float) -> bool:
        """True while the deployment is cooling down after a failure."""

    def cool_down(self, deployment_id: str, until: float) -> None:
        """Keep the deployment out of first place until ``until`` (monotonic seconds)."""

    def recovered(self, deployment_id: str) -> None:
        """The deployment answered: forget its cool-down."""


class InMemoryRouterState:
    """``RouterState`` for one process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: Dict[str, int] = {}
        self._cooling_until: Dict[str, float] = {}

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


def fails_over(error: BaseException) -> bool:
    """Whether another deployment might succeed where this one failed."""
    if isinstance(error, (InvalidRequestError, BadRequestError, UnprocessableEntityError)):
        return False
    return isinstance(error, (ProviderError, ConfigError))


class Router:
    """Resolves config aliases to deployments, with cool-downs and fallbacks."""

    def __init__(self, config: Config, state: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.state: RouterState = state if state is not None else InMemoryRouterState()
        self._clock = clock
        self._groups: Dict[str, List[Deployment]] = {}
        for deployment in config.deployments:
            self._groups.setdefault(deployment.model_name, []).append(deployment)

    def __contains__(self, model: object) -> bool:
        return model in self._groups

    @property
    def model_names(self) -> List[str]:
        return list(self._groups)

    def deployments(self, alias: str) -> List[Deployment]:
        """The alias's group and its fallbacks' groups, in config order (no state is read or moved)."""
        out: List[Deployment] = []
        for name in [alias, *self.config.fallbacks.get(alias, [])]:
            out.extend(self._groups.get(name, []))
        return out

    def plan(self, alias: str) -> List[Deployment]:
        """Deployments to try for one call, in order: the alias's group (healthy first,
        round-robin), then each fallback group the same way. Advances the round-robin."""
        order: List[Deployment] = []
        now = self._clock()
        state = self.state
        for name in [alias, *self.config.fallbacks.get(alias, [])]:
            group = self._groups.get(name, [])
            if not group:
                continue
            start = state.next_turn(name) % len(group)
            rotated = group[start:] + group[:start]
            order.extend(sorted(rotated, key=lambda d: state.cooling(d.id, now)))
        return order

    def call_arguments(self, deployment: Deployment, kwargs: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        """The model string and keyword arguments for calling ``deployment`` (caller's win)."""
        merged = deployment.call_kwargs()
        if self.config.num_retries is not None:
            merged.setdefault("num_retries", self.config.num_retries)
        if self.config.timeout is not None:
            merged.setdefault("timeout", self.config.timeout)
        merged.update(kwargs)
        return deployment.model, merged

    def failed(self, deployment: Deployment, error: BaseException) -> bool:
        """Record a failure; True when the next deployment should be tried."""
        if not fails_over(error):
            return False
        self.state.cool_down(deployment.id, self._clock() + self.config.cooldown_time)
        return True

    def succeeded(self, deployment: Deployment) -> None:
        self.state.recovered(deployment.id)
