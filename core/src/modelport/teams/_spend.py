"""What calls cost, and the writer that records it without slowing any request.

The gateway's observer computes a call's cost and hands it to ``SpendWriter.add``
(memory only). A background task flushes the buffer every ``interval`` seconds (and at
shutdown) in one transaction: spend log rows inserted, each key's, user's and team's
spend increased. A failed flush keeps its batch for the next one, so a database that is
away for a while loses nothing; a crash loses at most the last interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
from typing import Any, AsyncIterator, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from ._keys import utcnow

__all__ = ["Pricing", "cost_of", "SpendWriter", "Scope"]

log = logging.getLogger("modelport.teams")

#: A budget holder: ("key", hash), ("user", id) or ("team", id).
Scope = Tuple[str, str]


class Pricing:
    """USD per token of the models a router serves."""

    def __init__(self, router: Any) -> None:
        self._router = router
        self._cache: Dict[Tuple[str, Optional[str]], Tuple[float, float]] = {}

    def price_of(self, model: str, upstream_model: Optional[str] = None) -> Tuple[float, float]:
        """(input, output) USD per token for a call to ``model`` (a config alias) answered by
        ``upstream_model``: the serving deployment's ``input_cost_per_token`` /
        ``output_cost_per_token``, else (0, 0). A model catalog would be consulted here."""
        known = self._cache.get((model, upstream_model))
        if known is not None:
            return known
        price = (0.0, 0.0)
        deployments = self._router.deployments(model) if self._router is not None else []
        priced = [d for d in deployments if d.input_cost_per_token is not None or d.output_cost_per_token is not None]
        if upstream_model:  # the deployment that answered, when its model name says so
            named = [d for d in priced if d.model == upstream_model or d.model.split("/", 1)[-1] == upstream_model]
            priced = named or priced
        if priced:
            price = (float(priced[0].input_cost_per_token or 0.0), float(priced[0].output_cost_per_token or 0.0))
        if len(self._cache) < 10_000:
            self._cache[(model, upstream_model)] = price
        return price


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0


def cost_of(usage: Optional[Mapping[str, Any]], price: Tuple[float, float]) -> Tuple[int, int, int, float]:
    """(prompt tokens, completion tokens, total tokens, USD) of a call's ``usage``."""
    if not usage:
        return 0, 0, 0, 0.0
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    total = _count(usage, "total_tokens") or prompt + completion
    cost = prompt * price[0] + completion * price[1]
    return prompt, completion, total, cost if math.isfinite(cost) else 0.0


class SpendWriter:
    """Buffers spend in memory and writes it in batches (see the module's doc)."""

    def __init__(
        self,
        write: Callable[[List[Dict[str, Any]], Dict[Scope, float]], Any],
        *,
        interval: float = 1.0,
        max_buffered: int = 100_000,
        on_written: Optional[Callable[[Dict[Scope, float]], None]] = None,
    ) -> None:
        self._write = write
        self.interval = interval
        self.max_buffered = max_buffered
        self._on_written = on_written
        self._logs: List[Dict[str, Any]] = []
        self._deltas: Dict[Scope, float] = {}
        self._inflight: Dict[Scope, float] = {}
        self._lock = asyncio.Lock()
        self._task: Optional["asyncio.Task[None]"] = None
        self._failing = False
        self.dropped = 0
        self.failures = 0

    # -- the request path: memory only ------------------------------------------------------

    def add(self, row: Dict[str, Any], scopes: Iterable[Scope]) -> None:
        """Record one call: its spend log row, its cost added to each holder's pending spend."""
        cost = float(row.get("spend") or 0.0)
        if cost:
            for scope in scopes:
                self._deltas[scope] = self._deltas.get(scope, 0.0) + cost
        self._logs.append(row)
        if len(self._logs) > self.max_buffered:  # the database has been away long: keep the totals, drop old rows
            excess = len(self._logs) - self.max_buffered
            del self._logs[:excess]
            self.dropped += excess
            log.error("spend buffer full: %d spend log rows dropped (spend totals kept); is the database reachable?", self.dropped)

    def pending(self, scope: Scope) -> float:
        """Spend of ``scope`` recorded here and not yet in the database."""
        return self._deltas.get(scope, 0.0) + self._inflight.get(scope, 0.0)

    def forget(self, scope: Scope) -> None:
        """Drop ``scope``'s pending spend (its budget period was just reset)."""
        self._deltas.pop(scope, None)

    @contextlib.asynccontextmanager
    async def settled(self, timeout: float = 1.0) -> AsyncIterator[None]:
        """Hold off flushes while a caller reads stored spend and adds ``pending`` to it (so
        a batch is never counted twice or not at all); after ``timeout`` seconds of waiting
        for a slow flush the caller goes on without."""
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout)
        except asyncio.TimeoutError:
            yield
            return
        try:
            yield
        finally:
            self._lock.release()

    @property
    def buffered(self) -> int:
        return len(self._logs)

    # -- flushing ---------------------------------------------------------------------------

    async def flush(self) -> bool:
        """Write what is buffered; False (and everything kept for the next flush) on failure."""
        async with self._lock:
            if not self._logs and not self._deltas:
                return True
            logs, deltas = self._logs, self._deltas
            self._logs, self._deltas, self._inflight = [], {}, deltas
            try:
                await self._write(logs, deltas)
            except Exception as exc:
                self._inflight = {}
                self._logs[:0] = logs
                for scope, delta in deltas.items():
                    self._deltas[scope] = self._deltas.get(scope, 0.0) + delta
                self.failures += 1
                if not self._failing:
                    log.warning("writing spend failed (%s); %d calls kept in memory, retrying every %.1fs", type(exc).__name__, len(self._logs), self.interval)
                self._failing = True
                return False
            self._inflight = {}
            if self._on_written is not None:
                self._on_written(deltas)
            if self._failing:
                log.warning("writing spend works again; the buffered calls are written")
                self._failing = False
            return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:  # never let the loop die
                log.exception("spend flush failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="modelport-spend-writer")

    async def stop(self, timeout: float = 10.0) -> bool:
        """Stop the loop and write what is left (True when nothing is left unwritten)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            return await asyncio.wait_for(self.flush(), timeout)
        except asyncio.TimeoutError:
            log.error("spend for %d calls could not be written before shutdown", len(self._logs))
            return False


def spend_row(*, request_id: str, api_key: Optional[str], user: Optional[str], team_id: Optional[str], model: str,
              call_type: str, usage: Optional[Mapping[str, Any]], price: Tuple[float, float], status_code: int,
              seconds: float, ended: Optional[dt.datetime] = None) -> Dict[str, Any]:  # fmt: skip
    """One spend log row (column names of ``modelport_spend_logs``)."""
    ended = ended or utcnow()
    prompt, completion, total, cost = cost_of(usage, price)
    return {
        "request_id": request_id[:128], "api_key": api_key, "user": user, "team_id": team_id, "model": model[:255],
        "call_type": call_type[:32], "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
        "spend": cost, "status": "success" if status_code < 400 else "failure", "status_code": status_code,
        "start_time": ended - dt.timedelta(seconds=max(0.0, seconds)), "end_time": ended, "day": ended.date(),
    }  # fmt: skip
