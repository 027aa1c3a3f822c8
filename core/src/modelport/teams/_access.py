"""The gateway's side of the teams database: who a virtual key is (cached in memory so the
request path rarely touches the database), budgets, and the spend observer.

- ``KeyCache``: a key's row, with its user's and team's, kept ``ttl`` seconds (unknown
  keys too); one load per key at a time; when the database cannot be reached, a key
  seen before keeps being served from memory.
- ``Ledger``: each key's, user's and team's budget and spend as last read or written,
  plus what the ``SpendWriter`` holds unwritten: the budget guard reads only memory.
- ``VirtualKeyAuth``, ``BudgetGuard``, ``SpendObserver``: the gateway's ``auth``, guard
  and observer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

import attrs

from ..errors import BadRequestError, ServiceUnavailableError
from ..server._app import CallRecord, Identity, RateLimit, bearer_token
from ._keys import add_duration, hash_key, utcnow
from ._spend import Pricing, Scope, SpendWriter, spend_row

if TYPE_CHECKING:
    from starlette.requests import Request

    from ._store import Access, Holder, Store

__all__ = ["BudgetExceededError", "KeyCache", "KeyEntry", "Ledger", "VirtualKeyAuth", "BudgetGuard", "SpendObserver", "scopes_of"]

log = logging.getLogger("modelport.teams")

#: Model list entries that mean "every model" (LiteLLM's).
_ALL_MODELS = frozenset({"all-proxy-models", "all-team-models", "*"})


class BudgetExceededError(BadRequestError):
    """A key's, user's or team's spend reached its ``max_budget`` (LiteLLM's error: 400,
    type ``budget_exceeded``, code ``"400"``)."""

    def __init__(self, current: float, max_budget: float) -> None:
        self.current_cost = round(current, 10)
        self.max_budget = max_budget
        super().__init__(
            f"Budget has been exceeded! Current cost: {self.current_cost}, Max budget: {max_budget}",
            status=400, code="400", type="budget_exceeded", retryable=False,
            details={"error_type": "budget_exceeded"},  # the type the gateway answers with
        )  # fmt: skip


def scopes_of(identity: Identity) -> List[Scope]:
    """The budget holders a call is charged to: its key, its user, its team."""
    scopes: List[Scope] = []
    if identity.key_hash is not None:
        scopes.append(("key", identity.key_hash))
        if identity.team_id is not None:
            scopes.append(("team", identity.team_id))
        if identity.user_id is not None:
            scopes.append(("user", identity.user_id))
    return scopes


def _intersect(*lists: Optional[Sequence[str]]) -> Optional[Tuple[str, ...]]:
    """Models allowed by every non-empty list (an empty list, or "all-proxy-models": all)."""
    allowed: Optional[List[str]] = None
    for models in lists:
        if not models or _ALL_MODELS & set(models):
            continue
        allowed = list(models) if allowed is None else [m for m in allowed if m in models]
    return tuple(allowed) if allowed is not None else None


def _settled(future: "asyncio.Future[Any]", _: Any = None) -> None:
    """Mark a shared future's outcome as seen (its waiters may all have gone)."""
    if not future.cancelled():
        future.exception()


@attrs.frozen
class KeyEntry:
    """A cached key: the identity it gives, and what can make it unusable."""

    identity: Identity
    blocked: bool
    #: Epoch seconds after which the key is refused (None: never).
    expires: Optional[float]

    def usable(self, now: float) -> bool:
        return not self.blocked and (self.expires is None or now < self.expires)


def entry_of(access: "Access") -> KeyEntry:
    key, user, team = access.key, access.user, access.team
    limits = []
    for scope, row in ((f"key:{key.token}", key), (f"user:{key.user_id}", user), (f"team:{key.team_id}", team)):
        if row is not None and (row.rpm_limit is not None or row.tpm_limit is not None or row.max_parallel_requests is not None):
            limits.append(RateLimit(scope, row.rpm_limit, row.tpm_limit, row.max_parallel_requests))
    metadata = dict(key.metadata_ or {})
    identity = Identity(
        is_master=False,
        key_hash=key.token,
        key_alias=key.key_alias,
        user_id=key.user_id,
        team_id=key.team_id,
        models=_intersect(key.models, team.models if team is not None else None, user.models if user is not None else None),
        rate_limits=tuple(limits),
        allow_client_options=metadata.get("allow_client_options") is True,
        metadata=metadata,
    )
    blocked = bool(key.blocked) or bool(team is not None and team.blocked) or bool(user is not None and user.blocked)
    expires = key.expires.replace(tzinfo=dt.timezone.utc).timestamp() if key.expires is not None else None
    return KeyEntry(identity, blocked, expires)


@attrs.define
class BudgetState:
    """One holder's budget as the gateway knows it (stored spend, without the unwritten)."""

    spend: float
    max_budget: Optional[float]
    duration: Optional[str]
    reset_at: Optional[dt.datetime]


class Ledger:
    """Budget states by holder, refreshed whenever a key is loaded and when spend is written."""

    def __init__(self) -> None:
        self.states: Dict[Scope, BudgetState] = {}

    def load(self, access: "Access") -> None:
        holders: List[Tuple[Scope, Optional["Holder"]]] = [(("key", access.key.token), access.key)]
        if access.user is not None:
            holders.append((("user", access.user.user_id), access.user))
        if access.team is not None:
            holders.append((("team", access.team.team_id), access.team))
        for scope, row in holders:
            if row is not None:
                self.states[scope] = BudgetState(float(row.spend or 0.0), row.max_budget, row.budget_duration, row.budget_reset_at)

    def written(self, deltas: Dict[Scope, float]) -> None:
        for scope, delta in deltas.items():
            state = self.states.get(scope)
            if state is not None:
                state.spend += delta

    def forget(self, scope: Optional[Scope] = None) -> None:
        if scope is None:
            self.states.clear()
        else:
            self.states.pop(scope, None)


class KeyCache:
    """Keys by hash, each kept ``ttl`` seconds (see the module's doc)."""

    def __init__(self, store: "Store", ledger: Ledger, writer: SpendWriter, *, ttl: float = 5.0, max_entries: int = 100_000) -> None:
        self._store = store
        self._ledger = ledger
        self._writer = writer
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: Dict[str, Tuple[float, Optional[KeyEntry]]] = {}
        self._loading: Dict[str, "asyncio.Future[Optional[KeyEntry]]"] = {}
        self._generation = 0
        self._store_down = False

    async def get(self, token: str) -> Optional[KeyEntry]:
        """The entry for a key hash (None: no such key); raises ``ServiceUnavailableError``
        when the key was never seen and the database cannot be reached."""
        hit = self._entries.get(token)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        loading = self._loading.get(token)
        if loading is None:
            loading = asyncio.ensure_future(self._load(token, hit))
            self._loading[token] = loading
            loading.add_done_callback(lambda done: _settled(done, self._loading.pop(token, None)))
        return await asyncio.shield(loading)

    async def _load(self, token: str, hit: Optional[Tuple[float, Optional[KeyEntry]]]) -> Optional[KeyEntry]:
        generation = self._generation
        try:
            async with self._writer.settled():  # the stored spend and the unwritten add up exactly
                access = await self._store.load_access(token)
                if access is not None:
                    self._ledger.load(access)
        except Exception as exc:
            if not self._store_down:
                log.warning("the teams database cannot be reached (%s); keys seen before are served from memory", type(exc).__name__)
                self._store_down = True
            if hit is not None:  # keep serving it; ask the database again in a second
                self._entries[token] = (time.monotonic() - self.ttl + 1.0, hit[1])
                return hit[1]
            raise ServiceUnavailableError("the key store cannot be reached; try again shortly", status=503, code="key_store_unavailable",
                                          retryable=True, retry_after=1.0) from None  # fmt: skip
        if self._store_down:
            log.warning("the teams database is reachable again")
            self._store_down = False
        entry = entry_of(access) if access is not None else None
        if generation == self._generation:  # not invalidated while loading
            if len(self._entries) >= self.max_entries:
                for stale in list(self._entries)[: self.max_entries // 10 or 1]:
                    del self._entries[stale]
            self._entries[token] = (time.monotonic(), entry)
        return entry

    def invalidate(self, token: Optional[str] = None) -> None:
        """Forget one key (or every key) so the next request reads the database."""
        self._generation += 1
        if token is None:
            self._entries.clear()
            self._ledger.forget()
        else:
            self._entries.pop(token, None)
            self._ledger.forget(("key", token))


class VirtualKeyAuth:
    """The master key (constant-time compare) or a virtual key (by its hash, cached)."""

    def __init__(self, master_key: str, cache: KeyCache) -> None:
        self._master = master_key.encode()
        self._cache = cache

    def is_master(self, token: Optional[str]) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self._master)

    async def identify(self, request: "Request") -> Optional[Identity]:
        token = bearer_token(request)
        if token is None:
            return None
        if self.is_master(token):
            return Identity(is_master=True)
        entry = await self._cache.get(hash_key(token))
        if entry is None or not entry.usable(time.time()):
            return None
        return entry.identity


class BudgetGuard:
    """Refuses a call whose key, user or team has spent its ``max_budget``; resets spend
    when a holder's ``budget_reset_at`` has come (lazily, on its next call)."""

    def __init__(self, store: "Store", ledger: Ledger, writer: SpendWriter) -> None:
        self._store = store
        self._ledger = ledger
        self._writer = writer
        self._resetting: Dict[Scope, "asyncio.Future[None]"] = {}

    async def admit(self, identity: Identity, operation: str, model: str, body: Dict[str, Any]) -> Optional[Callable[[CallRecord], Awaitable[None]]]:
        if identity.key_hash is None:
            return None
        now: Optional[dt.datetime] = None
        for scope in scopes_of(identity):
            state = self._ledger.states.get(scope)
            if state is None:
                continue
            if state.reset_at is not None:
                now = now or utcnow()
                if now >= state.reset_at:
                    await self._reset(scope, state)
            if state.max_budget is not None:
                current = state.spend + self._writer.pending(scope)
                if current >= state.max_budget:
                    raise BudgetExceededError(current, state.max_budget)
        return None

    async def _reset(self, scope: Scope, state: BudgetState) -> None:
        running = self._resetting.get(scope)
        if running is None:
            running = asyncio.ensure_future(self._do_reset(scope, state))
            self._resetting[scope] = running
            running.add_done_callback(lambda done: _settled(done, self._resetting.pop(scope, None)))
        await asyncio.shield(running)

    async def _do_reset(self, scope: Scope, state: BudgetState) -> None:
        async with self._writer.settled():  # no batch of the old period is written after the reset
            now = utcnow()
            self._writer.forget(scope)
            try:
                stored = await self._store.reset_budget(scope[0], scope[1], now)
            except Exception as exc:  # reset in memory; the database is reset on a later call
                log.warning("resetting the budget of %s %s failed (%s)", scope[0], scope[1][:12], type(exc).__name__)
                stored = (0.0, add_duration(now, state.duration) if state.duration else None)
            if stored is not None:
                state.spend, state.reset_at = stored
            else:
                state.reset_at = None


class SpendObserver:
    """Gives each finished call's cost to the spend writer (memory only, never blocks)."""

    def __init__(self, writer: SpendWriter, pricing: Pricing, master_hash: str) -> None:
        self._writer = writer
        self._pricing = pricing
        self._master_hash = master_hash

    def record(self, record: CallRecord) -> None:
        if record.refused:
            return  # refused by a guard (budget, rate limit) before any upstream call: nothing spent, nothing logged
        identity = record.identity
        api_key = self._master_hash if identity.is_master else identity.key_hash
        row = spend_row(
            request_id=record.request_id, api_key=api_key, user=identity.user_id, team_id=identity.team_id, model=record.model,
            call_type=record.operation, usage=record.usage, price=self._pricing.price_of(record.model, record.upstream_model),
            status_code=record.status, seconds=record.seconds,
        )  # fmt: skip
        self._writer.add(row, scopes_of(identity))
