"""The admin page: ``GET /ui``, a small server-rendered HTML page over JSON routes, all
behind the master key.

- ``GET /ui``: the page (static HTML, no secrets and no data in it). It asks for the master
  key, keeps it in ``sessionStorage`` and sends it as ``Authorization: Bearer`` to the
  JSON routes; ``GET /ui/static/<file>``: its script, styles and the vendored chart
  library (uPlot), cached by content hash.
- ``GET /ui/api/session``: checks the key (401 when it is not the master key); whether
  teams are on, the model names.
- ``GET /ui/api/requests``: the last calls through the gateway, newest first (kept in
  memory by an observer this module installs: time, request id, model, key alias,
  status, latency, tokens).
- ``GET /ui/api/deployments``: every deployment of the router with its model group,
  provider, api_base host, cooling or not and its limits and current load.
- ``GET /ui/api/spend?days=30``: spend per key and per model per day, from the teams
  database (404 ``teams_disabled`` when teams are off).

The page also calls the teams admin routes (``/key/list``, ``/key/generate``,
``/key/block``, ``/key/unblock``, ``/key/delete``) when teams are on; when they are off it
shows only the deployments and the request log. A gateway without a master key serves no
admin data (403 ``admin_disabled``). Every answer carries a strict Content-Security-Policy
(``default-src 'self'``, no inline script or style); the JSON routes are limited to
``ADMIN_REQUESTS_PER_SECOND`` requests per second per client address.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import html
import logging
import string
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Deque, Dict, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import InvalidRequestError
from ._app import CallRecord, Gateway, bearer_token
from ._edge import AddressLimiter, error_json, request_id_for

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ._teams import Teams

__all__ = ["routes", "AdminUI", "RequestLog", "REQUEST_LOG_SIZE", "ADMIN_REQUESTS_PER_SECOND", "CONTENT_SECURITY_POLICY"]

log = logging.getLogger("modelport.server")

#: Calls the request log keeps (the oldest are dropped).
REQUEST_LOG_SIZE = 500
#: Requests to the page's JSON routes one client address may make per second.
ADMIN_REQUESTS_PER_SECOND = 20
#: Series a spend chart draws at most; the rest are summed as "other".
MAX_SERIES = 8
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
#: Files served under /ui/static/ and their media types (templates are not served).
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_MASTER_LABEL = "master key"


def _read_ui(name: str) -> bytes:
    from importlib import resources

    return resources.files("modelport.server").joinpath("ui").joinpath(name).read_bytes()


class _Asset(NamedTuple):
    body: bytes
    media_type: str
    version: str  # the first 16 hex digits of its SHA-256


def _load_assets() -> Dict[str, _Asset]:
    assets = {}
    for name, media_type in _ASSETS.items():
        body = _read_ui(name)
        assets[name] = _Asset(body, media_type, hashlib.sha256(body).hexdigest()[:16])
    return assets


# -- the request log -----------------------------------------------------------------------


class _Entry(NamedTuple):
    time: float
    request_id: str
    operation: str
    model: str
    key_alias: Optional[str]
    key_hash: Optional[str]
    is_master: bool
    status: int
    seconds: float
    usage: Optional[Mapping[str, Any]]
    stream: bool


def _tokens(usage: Optional[Mapping[str, Any]], name: str) -> Optional[int]:
    value = usage.get(name) if usage else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


class RequestLog:
    """The gateway observer that keeps the last ``size`` calls in memory (O(1) per call;
    only the fields the page shows are kept, never the error or the request)."""

    def __init__(self, size: int = REQUEST_LOG_SIZE) -> None:
        self.size = size
        self._entries: Deque[_Entry] = collections.deque(maxlen=size)

    def record(self, record: CallRecord) -> None:
        identity = record.identity
        self._entries.append(
            _Entry(time.time(), record.request_id, record.operation, record.model, identity.key_alias, identity.key_hash,
                   identity.is_master, record.status, record.seconds, record.usage, record.stream)
        )  # fmt: skip

    def recent(self, limit: int) -> List[Dict[str, Any]]:
        """The last ``limit`` calls, newest first."""
        entries = list(self._entries)[-limit:] if limit > 0 else []
        out = []
        for entry in reversed(entries):
            if entry.key_alias:
                key = entry.key_alias
            elif entry.key_hash:
                key = f"key {entry.key_hash[:8]}"
            else:
                key = _MASTER_LABEL if entry.is_master else None
            prompt, completion, total = (_tokens(entry.usage, n) for n in ("prompt_tokens", "completion_tokens", "total_tokens"))
            if total is None and (prompt is not None or completion is not None):
                total = (prompt or 0) + (completion or 0)
            out.append({
                "time": dt.datetime.fromtimestamp(entry.time, dt.timezone.utc).isoformat(timespec="milliseconds"),
                "request_id": entry.request_id, "operation": entry.operation, "model": entry.model,
                "key_alias": entry.key_alias, "key": key, "status": entry.status,
                "latency_ms": round(entry.seconds * 1000.0, 1), "prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": total, "stream": entry.stream,
            })  # fmt: skip
        return out


# -- deployments ---------------------------------------------------------------------------


def _host(value: Any, where: str) -> Optional[str]:
    """The host (and port) of an ``api_base``: never its path, query or credentials."""
    from ..errors import ConfigError
    from ..routing import EnvRef

    if isinstance(value, EnvRef):
        try:
            value = value.resolve(where)
        except ConfigError:
            return None
    if not isinstance(value, str) or not value:
        return None
    try:
        parts = urlsplit(value if "//" in value else f"//{value}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def _static_deployments(router: Any) -> List[Dict[str, Any]]:
    """What the config says about each deployment (read once)."""
    out = []
    for deployment in router.config.deployments:
        provider, _, model = deployment.model.partition("/")
        params = deployment.params
        where = f"model_list entry {deployment.model_name!r}"
        out.append({
            "id": deployment.id, "model_group": deployment.model_name, "provider": provider if model else None,
            "model": model or provider, "api_base": _host(params.get("api_base") or params.get("base_url"), where),
            "rpm": deployment.rpm, "tpm": deployment.tpm, "max_parallel_requests": deployment.max_parallel_requests,
            "order": deployment.order, "weight": deployment.weight,
        })  # fmt: skip
    return out


def _deployment_state(router: Any, static: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``static`` with each deployment's state now (cooling, calls in flight, this minute's use)."""
    now = router.now()
    window = int(now // 60)
    state = router.state
    out = []
    for entry in static:
        row = dict(entry)
        try:
            row["cooling"] = bool(state.cooling(entry["id"], now))
            in_flight, requests, tokens, latency = state.load(entry["id"], window)
            row.update(in_flight=in_flight, requests_this_minute=requests, tokens_this_minute=tokens,
                       latency_ms=round(latency * 1000.0, 1) if latency is not None else None, state_error=False)  # fmt: skip
        except Exception:  # a shared state (Redis) that cannot be read now
            log.warning("admin page: the router state of %s could not be read", entry["id"], exc_info=True)
            row.update(cooling=None, in_flight=None, requests_this_minute=None, tokens_this_minute=None, latency_ms=None, state_error=True)
        out.append(row)
    return out


# -- spend ---------------------------------------------------------------------------------


def _series(totals: Dict[str, Dict[str, Any]], days: List[str]) -> List[Dict[str, Any]]:
    """Chart series, the ``MAX_SERIES - 1`` largest kept and the rest summed as "other"."""
    ranked = sorted(totals.values(), key=lambda s: (-s["total"], s["label"]))
    if len(ranked) > MAX_SERIES:
        kept, rest = ranked[: MAX_SERIES - 1], ranked[MAX_SERIES - 1 :]
        other: Dict[str, Any] = {"label": "other", "id": None, "total": 0.0, "requests": 0, "tokens": 0, "by_day": {}}
        for series in rest:
            other["total"] += series["total"]
            other["requests"] += series["requests"]
            other["tokens"] += series["tokens"]
            for day, value in series["by_day"].items():
                other["by_day"][day] = other["by_day"].get(day, 0.0) + value
        ranked = [*kept, other]
    return [
        {"label": s["label"], "id": s["id"], "total": s["total"], "requests": s["requests"], "tokens": s["tokens"],
         "spend": [s["by_day"].get(day, 0.0) for day in days]}
        for s in ranked
    ]  # fmt: skip


async def _spend(teams: "Teams", days: int, master_hash: Optional[str]) -> Dict[str, Any]:
    """Spend per key and per model on each of the last ``days`` days (UTC), one query."""
    from sqlalchemy import func, select

    from ..teams._models import KeyRow, SpendLogRow

    await teams.writer.flush()  # this gateway's latest calls are in the answer
    today = dt.datetime.now(dt.timezone.utc).date()
    start = today - dt.timedelta(days=days - 1)
    day_names = [(start + dt.timedelta(days=n)).isoformat() for n in range(days)]
    log_table = SpendLogRow.__table__.c
    statement = (
        select(log_table.day, log_table.api_key, log_table.model, func.sum(log_table.spend), func.count(), func.sum(log_table.total_tokens))
        .where(log_table.day >= start, log_table.day <= today)
        .group_by(log_table.day, log_table.api_key, log_table.model)
    )
    async with teams.store.engine.connect() as connection:
        rows = (await connection.execute(statement)).all()
        tokens = sorted({r[1] for r in rows if r[1] and r[1] != master_hash})
        names: Dict[str, Tuple[Optional[str], Optional[str]]] = {}
        for chunk in range(0, len(tokens), 500):
            found = await connection.execute(select(KeyRow.token, KeyRow.key_alias, KeyRow.key_name).where(KeyRow.token.in_(tokens[chunk : chunk + 500])))
            names.update({token: (alias, name) for token, alias, name in found})
    by_key: Dict[str, Dict[str, Any]] = {}
    by_model: Dict[str, Dict[str, Any]] = {}
    total = 0.0
    for day, api_key, model, spend, count, used in rows:
        day_name = day.isoformat() if hasattr(day, "isoformat") else str(day)[:10]
        spend, count, used = float(spend or 0.0), int(count or 0), int(used or 0)
        if api_key and api_key == master_hash:
            key_id, label = None, _MASTER_LABEL
        elif api_key in names:
            alias, key_name = names[api_key]
            key_id, label = api_key, alias or key_name or api_key[:8]
        else:
            key_id, label = api_key, f"deleted key {api_key[:8]}" if api_key else "no key"
        for table, ident, name in ((by_key, key_id or label, label), (by_model, model, model)):
            series = table.setdefault(ident, {"label": name, "id": ident if table is by_key and key_id else None,
                                              "total": 0.0, "requests": 0, "tokens": 0, "by_day": {}})  # fmt: skip
            series["total"] += spend
            series["requests"] += count
            series["tokens"] += used
            series["by_day"][day_name] = series["by_day"].get(day_name, 0.0) + spend
        total += spend
    return {"days": day_names, "total": total, "by_key": _series(by_key, day_names), "by_model": _series(by_model, day_names)}


# -- the routes ----------------------------------------------------------------------------


def _query_int(request: "Request", name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequestError(f"'{name}' must be an integer, got {text[:40]!r}", param=name) from None
    if not low <= value <= high:
        raise InvalidRequestError(f"'{name}' must be between {low} and {high}, got {value}", param=name)
    return value


def _teams_of(gateway: Gateway) -> Optional["Teams"]:
    """The teams feature when it is installed and working."""
    try:
        from ._teams import runtime_of
    except ImportError:  # pragma: no cover - the teams feature is not built or its packages are missing
        return None
    teams = runtime_of(gateway)
    return teams if teams is not None and teams.enabled else None


Handler = Callable[["Request"], Awaitable[Any]]


class _Refusal(Exception):
    """A request the admin API answers with an error of its own (status, code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class AdminUI:
    """The admin page of one gateway: its assets, request log and JSON routes."""

    def __init__(self, gateway: Gateway, *, request_log_size: int = REQUEST_LOG_SIZE) -> None:
        self.gateway = gateway
        self.requests = RequestLog(request_log_size)
        self.limiter = AddressLimiter(ADMIN_REQUESTS_PER_SECOND)
        self.assets = _load_assets()
        self._page = string.Template(_read_ui("index.html").decode("utf-8"))
        self._teams_panels = _read_ui("teams.html").decode("utf-8")
        self._pages: Dict[Tuple[str, bool], bytes] = {}
        router = gateway.client.router
        self._deployments = _static_deployments(router) if router is not None else []
        self._open: Optional[bool] = None

    def install(self) -> List[Any]:
        self.gateway.observers.append(self.requests)
        return self.routes()

    def routes(self) -> List[Any]:
        from starlette.routing import Route

        return [
            Route("/ui", self.page, methods=["GET", "HEAD"]),
            Route("/ui/static/{name}", self.static, methods=["GET", "HEAD"]),
            Route("/ui/api/session", self._api(self.session), methods=["GET"]),
            Route("/ui/api/requests", self._api(self.recent_requests), methods=["GET"]),
            Route("/ui/api/deployments", self._api(self.deployments), methods=["GET"]),
            Route("/ui/api/spend", self._api(self.spend), methods=["GET"]),
        ]

    # -- the page and its files -------------------------------------------------------------

    def _render(self, root: str, teams: bool) -> bytes:
        page = self._pages.get((root, teams))
        if page is None:
            def url(name: str) -> str:
                return html.escape(f"{root}/ui/static/{name}?v={self.assets[name].version}")

            page = self._page.substitute(
                base=html.escape(root), teams="on" if teams else "off", teams_panels=self._teams_panels if teams else "",
                app_js=url("app.js"), app_css=url("app.css"), uplot_js=url("uPlot.iife.min.js"), uplot_css=url("uPlot.min.css"),
            ).encode("utf-8")  # fmt: skip
            if len(self._pages) < 16:
                self._pages[(root, teams)] = page
        return page

    async def page(self, request: "Request") -> "Response":
        from starlette.responses import Response

        root = str(request.scope.get("root_path") or "").rstrip("/")
        body = self._render(root, _teams_of(self.gateway) is not None)
        headers = {**_SECURITY_HEADERS, "cache-control": "no-cache"}
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    async def static(self, request: "Request") -> "Response":
        from starlette.responses import Response

        asset = self.assets.get(request.path_params["name"])
        if asset is None:
            payload = error_json(f"no file {request.url.path}", 404, "unknown_route")
            return self.gateway.json_response(payload, 404, {"x-request-id": request_id_for(request.headers)})
        etag = f'"{asset.version}"'
        versioned = request.query_params.get("v") == asset.version
        headers = {**_SECURITY_HEADERS, "etag": etag, "cache-control": _IMMUTABLE if versioned else "no-cache"}
        if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    # -- the JSON routes --------------------------------------------------------------------

    async def _is_open(self) -> bool:
        """Whether the gateway lets every request in (no master key): then no admin data."""
        if self._open is None:
            self._open = not self.gateway.master_key
        return self._open

    def _api(self, handler: Handler) -> Callable[["Request"], Awaitable["Response"]]:
        gateway = self.gateway

        async def route(request: "Request") -> "Response":
            request_id = request_id_for(request.headers)
            headers = {**_SECURITY_HEADERS, "x-request-id": request_id, "cache-control": "no-store"}
            address = request.client.host if request.client is not None else "unknown"
            if not self.limiter.allow(address):
                payload = error_json(f"more than {self.limiter.per_second} admin requests a second from this address; slow down", 429, "rate_limit_exceeded")
                return gateway.json_response(payload, 429, {**headers, "retry-after": "1"})
            try:
                if await self._is_open():
                    payload = error_json("the admin page needs a master key: set general_settings.master_key", 403, "admin_disabled")
                    return gateway.json_response(payload, 403, headers)
                identity = await gateway.auth.identify(request)
                if identity is None or not identity.is_master:
                    payload = error_json("this page needs the master key (Authorization: Bearer <master key>)", 401, "invalid_api_key")
                    return gateway.json_response(payload, 401, headers)
                result = await handler(request)
            except _Refusal as refusal:
                return gateway.json_response(error_json(refusal.message, refusal.status, refusal.code), refusal.status, headers)
            except Exception as error:
                if _is_database_error(error):
                    log.warning("request %s: the teams database failed: %s", request_id, type(error).__name__)
                    payload = error_json("the teams database cannot be reached; try again shortly", 503, "database_unavailable")
                    return gateway.json_response(payload, 503, {**headers, "retry-after": "1"})
                answer = gateway.failure(error, request_id)
                answer.headers.update(headers)
                return answer
            return gateway.json_response(result, 200, headers)

        return route

    async def session(self, request: "Request") -> Any:
        return {"teams": _teams_of(self.gateway) is not None, "models": self.gateway.client.model_names, "request_log_size": self.requests.size}

    async def recent_requests(self, request: "Request") -> Any:
        limit = _query_int(request, "limit", 100, 1, self.requests.size)
        return {"data": self.requests.recent(limit), "size": self.requests.size}

    async def deployments(self, request: "Request") -> Any:
        router = self.gateway.client.router
        if router is None:
            return {"data": []}
        from ..routing import InMemoryRouterState

        if isinstance(router.state, InMemoryRouterState):
            rows = _deployment_state(router, self._deployments)
        else:  # a shared state may do network I/O: off the event loop
            rows = await asyncio.to_thread(_deployment_state, router, self._deployments)
        return {"data": rows}

    async def spend(self, request: "Request") -> Any:
        teams = _teams_of(self.gateway)
        if teams is None:
            raise _Refusal(404, "teams_disabled", "spend needs the teams feature (a master key and a database); it is off")
        days = _query_int(request, "days", 30, 1, 366)
        from ..teams import hash_key

        token = bearer_token(request)
        return await _spend(teams, days, hash_key(token) if token else None)


def _is_database_error(error: BaseException) -> bool:
    if isinstance(error, (OSError, asyncio.TimeoutError)):
        return True
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover - no teams database without SQLAlchemy
        return False
    return isinstance(error, SQLAlchemyError)


def routes(gateway: Gateway) -> List[Any]:
    """The admin page's routes; installs its request log on ``gateway``."""
    return AdminUI(gateway).install()
