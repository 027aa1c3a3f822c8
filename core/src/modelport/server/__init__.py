"""The OpenAI-compatible gateway (``modelport serve``, extra ``modelport[server]``).

A Starlette app over an ``AsyncClient`` built from a config file: the official OpenAI
SDK pointed at it works unchanged. Requests name config aliases as their ``model``;
``Authorization: Bearer`` is checked against ``general_settings.master_key``; errors
come back in OpenAI's ``{"error": {...}}`` shape with the upstream's status, an OpenAI
``code`` and an ``x-request-id`` (the client's own, echoed, or a new one).

Callers cannot steer the server's own credentials: call options (``api_key``,
``api_base``, ``extra_headers``, ...) and provider options (``region``, ...) in a
request body are ignored and reported in the ``x-modelport-ignored-params`` header.
Bodies are read within limits, parameter types are checked at the edge, and a client
that disconnects cancels its upstream call.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, List, Optional, Tuple

from ..client import AsyncClient
from ..errors import ConfigError, ModelportError
from ._app import Auth, CallRecord, Gateway, GatewaySettings, Identity
from ._edge import client_error

__all__ = [
    "GatewaySettings",
    "Gateway",
    "Identity",
    "Auth",
    "CallRecord",
    "create_app",
    "app_from_config",
    "check_config",
    "serve",
    "error_body",
]

log = logging.getLogger("modelport.server")


def error_body(error: BaseException, request_id: str = "") -> Tuple[int, Dict[str, Any], Dict[str, str]]:
    """(status, OpenAI error JSON, headers) for any exception, safe to send to a client."""
    return client_error(error, request_id or "req_unknown")


def create_app(
    client: AsyncClient,
    *,
    master_key: Optional[str] = None,
    allow_direct_models: bool = False,
    settings: Optional[GatewaySettings] = None,
) -> Any:
    """The ASGI app. ``allow_direct_models`` also accepts ``provider/model`` strings."""
    gateway = Gateway(client, master_key=master_key, allow_direct_models=allow_direct_models, settings=settings)
    return gateway.app(feature_routes(gateway))


#: Feature modules of the gateway, each ``server/<name>.py`` with ``routes(gateway)``.
FEATURES = ("_responses", "_messages", "_monitoring", "_teams", "_admin")


def feature_routes(gateway: Gateway) -> List[Any]:
    """Routes of the gateway's feature modules (other API shapes, admin, monitoring)."""
    import importlib

    routes: List[Any] = []
    for name in FEATURES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":  # a feature not built yet
                continue
            raise
        routes.extend(module.routes(gateway))
    return routes


def check_config(client: AsyncClient) -> List[str]:
    """Every problem that would make a configured model fail on each request: unknown
    provider prefixes, unset ``os.environ/`` references, each named with its entry."""
    from ..routing import EnvRef

    router = client.router
    if router is None:
        return []
    problems = []
    for position, deployment in enumerate(router.config.deployments):
        where = f"model_list[{position}] ({deployment.model_name}: {deployment.model})"
        try:
            client.provider_hooks(deployment.model.split("/", 1)[0])
        except ModelportError as exc:
            problems.append(f"{where}: {exc}")
        for key, value in deployment.params.items():
            if isinstance(value, EnvRef) and not _env_is_set(value.name):
                problems.append(f"{where}: {key} reads the environment variable {value.name}, which is not set")
    master = router.config.master_key
    if isinstance(master, EnvRef) and not _env_is_set(master.name):
        problems.append(f"general_settings.master_key reads the environment variable {master.name}, which is not set")
    return problems


def _env_is_set(name: str) -> bool:
    import os

    return bool(os.environ.get(name))


def settings_from_config(general: Dict[str, Any], **overrides: Any) -> GatewaySettings:
    """Gateway settings from ``general_settings`` (LiteLLM's keys where it has them)."""
    values: Dict[str, Any] = {}
    for name in ("max_request_size_mb", "max_upload_size_mb", "max_connections", "cors_allow_origins", "graceful_shutdown_seconds"):
        if general.get(name) is not None:
            values[name] = general[name]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GatewaySettings(**values)
    except TypeError as exc:
        raise ConfigError(f"general_settings: {exc}") from None


def app_from_config(config_path: str, *, settings: Optional[GatewaySettings] = None, **client_options: Any) -> Any:
    """The app for a config file: its aliases, its master key, its declared providers."""
    from ..routing import load_config

    config = load_config(config_path)
    settings = settings or settings_from_config(config.general)
    client_options.setdefault("max_connections", settings.max_connections)
    client = AsyncClient.from_config(config, **client_options)
    master_key = config.resolved_master_key()
    if not master_key:
        log.warning("no general_settings.master_key: the gateway accepts every request")
    return _assemble(client, config, master_key, settings)


def _assemble(client: AsyncClient, config: Any, master_key: Optional[str], settings: GatewaySettings) -> Any:
    """The app of a config: feature modules, then the rate limiter (last: the other guards
    refuse before it counts), shared router state closed at shutdown."""
    from ._limits import install

    gateway = Gateway(client, master_key=master_key, settings=settings)
    routes = feature_routes(gateway)
    install(gateway, config)
    state = client.router.state if client.router is not None else None
    close = getattr(state, "close", None)
    if callable(close):

        async def close_state() -> None:
            close()

        gateway.on_shutdown.append(close_state)
    return gateway.app(routes)


def serve(
    config_path: str,
    host: str = "127.0.0.1",
    port: int = 4000,
    *,
    log_level: str = "info",
    access_log: bool = True,
    json_logs: bool = False,
    limit_concurrency: int = 4096,
    timeout_keep_alive: int = 5,
    workers: int = 1,
) -> int:
    """Run the gateway with uvicorn until interrupted; the exit code.

    Refuses to start (exit 2) when the config names an unknown provider or an unset
    environment variable, listing every problem, or when the port is taken.
    """
    import socket
    import sys

    import uvicorn

    from ..routing import load_config

    config = load_config(config_path)
    settings = settings_from_config(config.general)
    client = AsyncClient.from_config(config, max_connections=settings.max_connections)
    problems = check_config(client)
    if problems:
        print(f"modelport: error: {config_path} cannot be served:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    _raise_open_file_limit()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        print(f"modelport: error: cannot listen on {host}:{port}: {exc.strerror or exc} (is another server using port {port}?)", file=sys.stderr)
        return 2
    _configure_logging(log_level, json_logs)
    if workers > 1:
        from ._limits import run_workers

        return run_workers(
            config_path, sock, workers, config=config, log_level=log_level, access_log=access_log, json_logs=json_logs,
            limit_concurrency=limit_concurrency, timeout_keep_alive=timeout_keep_alive,
        )  # fmt: skip
    master_key = config.resolved_master_key()
    if not master_key:
        log.warning("no general_settings.master_key: the gateway accepts every request")
    app = _assemble(client, config, master_key, settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=log_level,
            access_log=access_log,
            log_config=None,
            limit_concurrency=limit_concurrency,
            timeout_keep_alive=timeout_keep_alive,
            timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        )
    )
    server.run(sockets=[sock])
    return 0


def _raise_open_file_limit() -> None:
    """Let the gateway hold as many connections as the hard limit allows."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _configure_logging(level: str, json_logs: bool) -> None:
    import json
    import sys
    import time

    handler = logging.StreamHandler(sys.stderr)
    if json_logs:

        class JSONFormatter(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                entry = {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "message": record.getMessage(),
                }
                if record.exc_info:
                    entry["exception"] = self.formatException(record.exc_info)
                return json.dumps(entry, ensure_ascii=False)

        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    for name in ("modelport", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


class _RedactingFilter(logging.Filter):
    """Credentials never reach the log: URL userinfo and key-like query parameters are
    masked in every record (the access log prints request lines verbatim)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ._logging import redact_text

        record.msg = redact_text(record.getMessage())
        record.args = None
        return True
