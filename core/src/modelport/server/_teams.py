"""Gateway for teams: virtual keys, teams, users, budgets and spend (LiteLLM proxy's paths,
field names and error shapes).

On when the gateway has a master key and a database: ``general_settings.database_url``,
else the environment's ``DATABASE_URL``, else (a config file with a master key) the
embedded SQLite file ``modelport.db`` beside the config. ``routes(gateway)`` then installs
the virtual-key auth, the budget guard, the spend observer and the database's
startup (migrations, spend writer) and shutdown (last flush), and returns the admin
routes (master key only, rate-limited per client address):

``POST /key/generate``, ``GET /key/info``, ``POST /key/update``, ``POST /key/delete``,
``GET /key/list``, ``POST /key/block``, ``POST /key/unblock``, ``POST /team/new``,
``GET /team/info``, ``POST /team/update``, ``POST /team/delete``, ``POST /user/new``,
``GET /user/info``, ``POST /user/update``, ``GET /spend/logs``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Tuple

from ..errors import ConfigError
from ._app import Gateway, bearer_token
from ._edge import AddressLimiter, error_json, limited_receive, parse_json_body, request_id_for

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..teams._store import Holder

__all__ = ["routes", "runtime_of", "Teams", "ADMIN_REQUESTS_PER_SECOND"]

log = logging.getLogger("modelport.teams")

#: Admin requests one client address may make per second (more are answered 429).
ADMIN_REQUESTS_PER_SECOND = 20
#: Seconds between spend writes (``general_settings.proxy_batch_write_at``, LiteLLM's key).
DEFAULT_FLUSH_INTERVAL = 1.0
#: Seconds a key lookup is cached (``general_settings.user_api_key_cache_ttl``, LiteLLM's key).
DEFAULT_KEY_CACHE_TTL = 5.0

_RUNTIMES: "weakref.WeakKeyDictionary[Gateway, Teams]" = weakref.WeakKeyDictionary()
Handler = Callable[["Request"], Awaitable[Tuple[Any, Dict[str, str]]]]


def runtime_of(gateway: Gateway) -> Optional["Teams"]:
    """The teams feature installed on ``gateway`` (None: teams are off)."""
    return _RUNTIMES.get(gateway)


def _master_key(gateway: Gateway, config: Any) -> Optional[str]:
    if gateway.master_key:
        return gateway.master_key
    if config is not None:
        resolved: Optional[str] = config.resolved_master_key()
        return resolved or None
    return None


def _number(general: Dict[str, Any], name: str, default: float) -> float:
    value = general.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"general_settings.{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def routes(gateway: Gateway) -> List[Any]:
    """Install the teams feature on ``gateway`` when it has a master key and a database;
    its admin routes (none when teams are off)."""
    import os

    from ..teams import database_url_for
    from ..teams._db import REQUIRES

    router = gateway.client.router
    config = router.config if router is not None else None
    master = _master_key(gateway, config)
    if not master:
        return []
    if config is not None:
        url, implicit = database_url_for(config)
    else:
        url, implicit = os.environ.get("DATABASE_URL") or None, False
    if url is None:
        return []
    try:
        import alembic  # noqa: F401
        import sqlalchemy.ext.asyncio  # noqa: F401

        if url.startswith(("postgres:", "postgresql")):
            import asyncpg  # noqa: F401
        else:
            import aiosqlite  # noqa: F401
    except ImportError as exc:
        if implicit:
            log.warning("virtual keys are off: the embedded database needs %s (missing: %s)", REQUIRES, exc.name)
            return []
        raise ConfigError(f"general_settings.database_url needs {REQUIRES}; install modelport[server] (missing: {exc.name})") from None
    general = dict(config.general) if config is not None else {}
    teams = Teams(
        gateway, master, url, implicit=implicit,
        flush_interval=_number(general, "proxy_batch_write_at", DEFAULT_FLUSH_INTERVAL),
        key_cache_ttl=_number(general, "user_api_key_cache_ttl", DEFAULT_KEY_CACHE_TTL),
    )  # fmt: skip
    return teams.install()


def _query_int(request: "Request", name: str, default: int, low: int, high: int) -> int:
    from ..teams import TeamsError

    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise TeamsError(f"'{name}' must be an integer, got {text[:40]!r}", param=name) from None
    if not low <= value <= high:
        raise TeamsError(f"'{name}' must be between {low} and {high}, got {value}", param=name)
    return value


def _required(body: Dict[str, Any], name: str) -> str:
    from ..teams import TeamsError

    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise TeamsError(f"'{name}' is required (a string)", param=name)
    return value


def _names(body: Dict[str, Any], name: str) -> List[str]:
    from ..teams import TeamsError

    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TeamsError(f"'{name}' must be a list of strings", param=name)
    return list(value)


def _ignored(names: List[str]) -> Dict[str, str]:
    return {"x-modelport-ignored-params": ",".join(names)} if names else {}


class Teams:
    """The teams feature of one gateway: its store, key cache, budgets and spend writer."""

    def __init__(self, gateway: Gateway, master_key: str, url: str, *, implicit: bool = False,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL, key_cache_ttl: float = DEFAULT_KEY_CACHE_TTL) -> None:  # fmt: skip
        from ..teams._access import BudgetGuard, KeyCache, Ledger, SpendObserver, VirtualKeyAuth
        from ..teams._keys import hash_key
        from ..teams._spend import Pricing, SpendWriter
        from ..teams._store import Store

        self.gateway = gateway
        self.url = url
        self.implicit = implicit
        self.enabled = True
        self.store = Store.from_url(url)
        self.ledger = Ledger()
        self.writer = SpendWriter(lambda logs, deltas: self.store.write_spend(logs, deltas), interval=flush_interval, on_written=self.ledger.written)
        self.cache = KeyCache(self.store, self.ledger, self.writer, ttl=key_cache_ttl)
        self.auth = VirtualKeyAuth(master_key, self.cache)
        self.guard = BudgetGuard(self.store, self.ledger, self.writer)
        self.observer = SpendObserver(self.writer, Pricing(gateway.client.router), hash_key(master_key))
        self.limiter = AddressLimiter(ADMIN_REQUESTS_PER_SECOND)
        self._previous_auth = gateway.auth
        self._json_limit = int(gateway.settings.max_request_size_mb * 1024 * 1024)

    # -- installing -------------------------------------------------------------------------

    def install(self) -> List[Any]:
        gateway = self.gateway
        gateway.auth = self.auth
        gateway.observers.append(self.observer)
        gateway.guards.append(self.guard)
        gateway.on_startup.append(self.start)
        gateway.on_shutdown.append(self.stop)
        _RUNTIMES[gateway] = self
        return self.routes()

    async def start(self) -> None:
        from ..teams import safe_url

        try:
            revision = await self.store.upgrade()
        except Exception as exc:
            if not self.implicit:
                log.error("the teams database %s cannot be opened or migrated: %s", safe_url(self.url), type(exc).__name__)
                raise
            log.error("virtual keys are off: the embedded database %s cannot be opened (%s: %s)", safe_url(self.url), type(exc).__name__, exc)
            self._disable()
            return
        log.info("teams: database %s at schema revision %s; spend written every %.1fs", safe_url(self.url), revision, self.writer.interval)
        self.writer.start()

    async def stop(self) -> None:
        if self.enabled:
            if not await self.writer.stop():
                log.error("spend of %d calls could not be written at shutdown", self.writer.buffered)
        await self.store.close()

    def _disable(self) -> None:
        gateway = self.gateway
        self.enabled = False
        gateway.auth = self._previous_auth
        if self.observer in gateway.observers:
            gateway.observers.remove(self.observer)
        if self.guard in gateway.guards:
            gateway.guards.remove(self.guard)

    # -- the admin API ----------------------------------------------------------------------

    def routes(self) -> List[Any]:
        from starlette.routing import Route

        table: List[Tuple[str, str, Handler]] = [
            ("POST", "/key/generate", self.key_generate),
            ("GET", "/key/info", self.key_info),
            ("POST", "/key/update", self.key_update),
            ("POST", "/key/delete", self.key_delete),
            ("GET", "/key/list", self.key_list),
            ("POST", "/key/block", self.key_block),
            ("POST", "/key/unblock", self.key_unblock),
            ("POST", "/team/new", self.team_new),
            ("GET", "/team/info", self.team_info),
            ("POST", "/team/update", self.team_update),
            ("POST", "/team/delete", self.team_delete),
            ("POST", "/user/new", self.user_new),
            ("GET", "/user/info", self.user_info),
            ("POST", "/user/update", self.user_update),
            ("GET", "/spend/logs", self.spend_logs),
        ]
        return [Route(path, self._admin(handler), methods=[method]) for method, path, handler in table]

    def _admin(self, handler: Handler) -> Callable[["Request"], Awaitable["Response"]]:
        from sqlalchemy.exc import SQLAlchemyError

        from ..teams import TeamsError

        gateway = self.gateway

        async def route(request: "Request") -> "Response":
            request_id = request_id_for(request.headers)
            headers = {"x-request-id": request_id}
            address = request.client.host if request.client is not None else "unknown"
            if not self.limiter.allow(address):
                payload = error_json(f"more than {self.limiter.per_second} admin requests a second from this address; slow down", 429, "rate_limit_exceeded")
                return gateway.json_response(payload, 429, {**headers, "retry-after": "1"})
            if not self.auth.is_master(bearer_token(request)):
                payload = error_json("this route needs the master key (Authorization: Bearer <master key>)", 401, "invalid_api_key")
                return gateway.json_response(payload, 401, headers)
            if not self.enabled:
                payload = error_json("virtual keys are off: the teams database could not be opened; see the server log", 503, "database_unavailable")
                return gateway.json_response(payload, 503, headers)
            try:
                result, extra = await handler(request)
            except TeamsError as error:
                return gateway.json_response(error_json(error.message, error.status, error.code, error.param), error.status, headers)
            except (SQLAlchemyError, OSError, asyncio.TimeoutError) as error:
                log.warning("request %s: the teams database failed: %s", request_id, type(error).__name__)
                payload = error_json("the teams database cannot be reached; try again shortly", 503, "database_unavailable")
                return gateway.json_response(payload, 503, {**headers, "retry-after": "1"})
            except Exception as error:
                return gateway.failure(error, request_id)
            return gateway.json_response(result, 200, {**headers, **extra})

        return route

    async def _body(self, request: "Request") -> Dict[str, Any]:
        from starlette.requests import Request

        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._json_limit:
            from ._edge import BodyTooLarge

            raise BodyTooLarge(self._json_limit)
        raw = await Request(request.scope, limited_receive(request.receive, self._json_limit)).body()
        return parse_json_body(raw) if raw.strip() else {}

    def _pending(self, kind: str, ident: str) -> float:
        return self.writer.pending((kind, ident))

    async def _fresh(self, kind: str, ident: str, row: "Holder") -> None:
        """Reset ``row``'s spend when its budget period is over (as the guard would)."""
        from ..teams._keys import utcnow

        if row.budget_reset_at is None or row.budget_reset_at > utcnow():
            return
        self.writer.forget((kind, ident))
        stored = await self.store.reset_budget(kind, ident, utcnow())
        if stored is not None:
            row.spend, row.budget_reset_at = stored
            state = self.ledger.states.get((kind, ident))
            if state is not None:
                state.spend, state.reset_at = stored

    # keys

    async def key_generate(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams._fields import KEY_FIELDS, parse_fields
        from ..teams._keys import utcnow
        from ..teams._store import key_info

        values, ignored = parse_fields(await self._body(request), KEY_FIELDS, utcnow())
        key, row = await self.store.create_key(values)
        self.cache.invalidate(row.token)
        return {"key": key, **key_info(row)}, _ignored(ignored)

    async def _key_row(self, value: Any) -> Any:
        from ..teams import TeamsError, token_of

        if not isinstance(value, str) or not value:
            raise TeamsError("'key' is required: the key or its hash", param="key")
        row = await self.store.get_key(token_of(value))
        if row is None:
            raise TeamsError("no such key", 404, "key_not_found", "key")
        return row

    async def key_info(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams._store import key_info

        await self.writer.flush()
        async with self.writer.settled():
            row = await self._key_row(request.query_params.get("key"))
            await self._fresh("key", row.token, row)
            return {"key": row.token, "info": key_info(row, self._pending("key", row.token))}, {}

    async def key_update(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams._fields import KEY_FIELDS, parse_fields
        from ..teams._keys import utcnow
        from ..teams._store import key_info

        body = await self._body(request)
        row = await self._key_row(body.get("key"))
        values, ignored = parse_fields({k: v for k, v in body.items() if k != "key"}, KEY_FIELDS - {"key"}, utcnow())
        if "spend" in values:
            await self.writer.flush()
            self.writer.forget(("key", row.token))
        row = await self.store.update_key(row.token, values)
        self.cache.invalidate(row.token)
        return key_info(row, self._pending("key", row.token)), _ignored(ignored)

    async def key_delete(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams import TeamsError, token_of

        body = await self._body(request)
        tokens = [token_of(k) for k in _names(body, "keys")]
        aliases = _names(body, "key_aliases")
        if not tokens and not aliases:
            raise TeamsError("give 'keys' (keys or their hashes) or 'key_aliases' to delete", param="keys")
        deleted = await self.store.delete_keys(tokens, aliases)
        for token in deleted:
            self.cache.invalidate(token)
        return {"deleted_keys": deleted}, {}

    async def key_list(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams._store import key_info

        query = request.query_params
        page = _query_int(request, "page", 1, 1, 1_000_000)
        size = _query_int(request, "size", 10, 1, 100)
        async with self.writer.settled():
            rows, total = await self.store.list_keys(user_id=query.get("user_id"), team_id=query.get("team_id"), key_alias=query.get("key_alias"),
                                                     page=page, size=size)  # fmt: skip
            full = query.get("return_full_object", "").lower() in ("1", "true", "yes")
            keys = [key_info(row, self._pending("key", row.token)) if full else row.token for row in rows]
        return {"keys": keys, "total_count": total, "current_page": page, "total_pages": max(1, -(-total // size))}, {}

    async def _set_blocked(self, request: "Request", blocked: bool) -> Tuple[Any, Dict[str, str]]:
        from ..teams._store import key_info

        row = await self._key_row((await self._body(request)).get("key"))
        row = await self.store.update_key(row.token, {"blocked": blocked})
        self.cache.invalidate(row.token)
        return key_info(row, self._pending("key", row.token)), {}

    async def key_block(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        return await self._set_blocked(request, True)

    async def key_unblock(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        return await self._set_blocked(request, False)

    # teams

    async def team_new(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams._fields import TEAM_FIELDS, parse_fields
        from ..teams._keys import utcnow
        from ..teams._store import team_info

        values, ignored = parse_fields(await self._body(request), TEAM_FIELDS, utcnow())
        row = await self.store.create_team(values)
        return team_info(row), _ignored(ignored)

    async def team_info(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams import TeamsError
        from ..teams._store import key_info, team_info

        team_id = request.query_params.get("team_id")
        if not team_id:
            raise TeamsError("'team_id' is required", param="team_id")
        await self.writer.flush()
        async with self.writer.settled():
            found = await self.store.get_team(team_id)
            if found is None:
                raise TeamsError(f"no team {team_id!r}", 404, "team_not_found", "team_id")
            team, keys = found
            await self._fresh("team", team_id, team)
            return {"team_id": team_id, "team_info": team_info(team, self._pending("team", team_id)),
                    "keys": [key_info(k, self._pending("key", k.token)) for k in keys]}, {}  # fmt: skip

    async def team_update(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams._fields import TEAM_FIELDS, parse_fields
        from ..teams._keys import utcnow
        from ..teams._store import team_info

        body = await self._body(request)
        team_id = _required(body, "team_id")
        values, ignored = parse_fields({k: v for k, v in body.items() if k != "team_id"}, TEAM_FIELDS - {"team_id"}, utcnow())
        if "spend" in values:
            await self.writer.flush()
            self.writer.forget(("team", team_id))
        row = await self.store.update_team(team_id, values)
        self.cache.invalidate()
        return team_info(row, self._pending("team", team_id)), _ignored(ignored)

    async def team_delete(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams import TeamsError

        team_ids = _names(await self._body(request), "team_ids")
        if not team_ids:
            raise TeamsError("'team_ids' is required (a list of team ids)", param="team_ids")
        teams, keys = await self.store.delete_teams(team_ids)
        self.cache.invalidate()
        return {"deleted_teams": teams, "deleted_keys": keys}, {}

    # users

    async def user_new(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams import TeamsError
        from ..teams._fields import USER_FIELDS, parse_fields
        from ..teams._keys import utcnow
        from ..teams._store import user_info

        body = await self._body(request)
        auto_key = body.pop("auto_create_key", True)
        if not isinstance(auto_key, bool):
            raise TeamsError("'auto_create_key' must be true or false", param="auto_create_key")
        values, ignored = parse_fields(body, USER_FIELDS, utcnow())
        row = await self.store.create_user(values)
        result = user_info(row)
        if auto_key:  # LiteLLM's /user/new also makes the user a key
            key, key_row = await self.store.create_key({"user_id": row.user_id})
            self.cache.invalidate(key_row.token)
            result.update({"key": key, "token": key_row.token, "key_name": key_row.key_name})
        return result, _ignored(ignored)

    async def user_info(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams import TeamsError
        from ..teams._store import key_info, user_info

        user_id = request.query_params.get("user_id")
        if not user_id:
            raise TeamsError("'user_id' is required", param="user_id")
        await self.writer.flush()
        async with self.writer.settled():
            found = await self.store.get_user(user_id)
            if found is None:
                raise TeamsError(f"no user {user_id!r}", 404, "user_not_found", "user_id")
            user, keys = found
            await self._fresh("user", user_id, user)
            teams = sorted({k.team_id for k in keys if k.team_id})
            return {"user_id": user_id, "user_info": user_info(user, self._pending("user", user_id)),
                    "keys": [key_info(k, self._pending("key", k.token)) for k in keys], "teams": teams}, {}  # fmt: skip

    async def user_update(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams._fields import USER_FIELDS, parse_fields
        from ..teams._keys import utcnow
        from ..teams._store import user_info

        body = await self._body(request)
        user_id = _required(body, "user_id")
        values, ignored = parse_fields({k: v for k, v in body.items() if k != "user_id"}, USER_FIELDS - {"user_id"}, utcnow())
        if "spend" in values:
            await self.writer.flush()
            self.writer.forget(("user", user_id))
        row = await self.store.update_user(user_id, values)
        self.cache.invalidate()
        return user_info(row, self._pending("user", user_id)), _ignored(ignored)

    # spend

    async def spend_logs(self, request: "Request") -> Tuple[Any, Dict[str, str]]:
        from ..teams import TeamsError, token_of
        from ..teams._fields import parse_date

        query = request.query_params
        filters: Dict[str, Any] = {name: query.get(name) or None for name in ("user_id", "team_id", "request_id")}
        if query.get("api_key"):
            filters["api_key"] = token_of(query["api_key"])
        filters["start_date"] = parse_date("start_date", query.get("start_date"))
        filters["end_date"] = parse_date("end_date", query.get("end_date"))
        group_by = query.get("group_by")
        if group_by not in (None, "", "day"):
            raise TeamsError(f"'group_by' may only be 'day', got {group_by[:20]!r}", param="group_by")
        await self.writer.flush()  # this gateway's own calls are in the answer
        if group_by == "day":
            return await self.store.spend_by_day(filters), {}
        return await self.store.spend_logs(filters, limit=_query_int(request, "limit", 1000, 1, 100_000)), {}
