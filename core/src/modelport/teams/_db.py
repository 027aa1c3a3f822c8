"""Where the teams database is, and the async engine and migrations for it.

``general_settings.database_url`` (or the environment's ``DATABASE_URL``) names it; a
config with a master key and neither gets the embedded default, a SQLite file
``modelport.db`` beside the config file. Plain ``sqlite:///`` and ``postgresql://`` URLs
(LiteLLM's) are mapped to the async drivers: aiosqlite and asyncpg.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import TYPE_CHECKING, Any, Mapping, Optional, Tuple

from ..errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["DEFAULT_DATABASE", "database_url_for", "async_url", "safe_url", "create_engine", "upgrade", "current_revision", "REQUIRES"]

log = logging.getLogger("modelport.teams")

#: The embedded database's file name, beside the config file.
DEFAULT_DATABASE = "modelport.db"
#: What the teams feature needs installed (the ``modelport[server]`` extra).
REQUIRES = "sqlalchemy[asyncio]>=2, alembic, aiosqlite (SQLite) and asyncpg (PostgreSQL)"
#: Alembic's version table for this schema (named so a shared database keeps its own).
VERSION_TABLE = "modelport_alembic_version"
#: Serialises concurrent migrations of several gateway processes on one PostgreSQL database.
_MIGRATION_LOCK = 0x6D706F7274  # "mport"


def database_url_for(config: Any, environ: Optional[Mapping[str, str]] = None) -> Tuple[Optional[str], bool]:
    """(database URL, whether it is the embedded default) for a loaded config; the URL is
    None when the config names no database and has no master key (teams stay off)."""
    from ..routing import EnvRef

    environ = os.environ if environ is None else environ
    value = (getattr(config, "general", None) or {}).get("database_url")
    if isinstance(value, EnvRef):
        value = value.resolve("general_settings.database_url")
    if value:
        if not isinstance(value, str):
            raise ConfigError(f"general_settings.database_url must be a URL string, got {type(value).__name__}")
        return value, False
    if environ.get("DATABASE_URL"):
        return environ["DATABASE_URL"], False
    path = getattr(config, "path", "") or ""
    if getattr(config, "master_key", None) is not None and path and pathlib.Path(path).is_file():
        return f"sqlite:///{pathlib.Path(path).resolve().parent / DEFAULT_DATABASE}", True
    return None, False


def async_url(url: str) -> "URL":
    """``url`` with its async driver: ``sqlite+aiosqlite`` or ``postgresql+asyncpg``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("database_url is not a database URL (sqlite:///path or postgresql://user@host/db)") from None
    backend = parsed.drivername.split("+", 1)[0]
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        query = dict(parsed.query)
        if "sslmode" in query:  # libpq's spelling; asyncpg calls it ssl
            query["ssl"] = query.pop("sslmode")
        return parsed.set(drivername="postgresql+asyncpg", query=query)
    raise ConfigError(f"database_url: {backend!r} databases are not supported; use sqlite:///path or postgresql://...")


def safe_url(url: str) -> str:
    """``url`` fit for a log line or a message: its password masked."""
    try:
        return async_url(url).render_as_string(hide_password=True)
    except ConfigError:
        return "(not a database URL)"


def _sqlite_on_connect(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    try:  # readers never wait for the spend writer; the CLI may write while the gateway runs
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_engine(url: str, *, sqlite_timeout: float = 15.0) -> "AsyncEngine":
    """The async engine for ``url`` (driver mapped by ``async_url``)."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    target = async_url(url)
    if target.drivername.startswith("sqlite"):
        database = target.database or ""
        if database and database != ":memory:":
            pathlib.Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, connect_args={"timeout": sqlite_timeout})
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    # an unreachable server fails a connection in seconds (the key cache then serves from memory)
    connect_args = {"timeout": 5, "command_timeout": 30}
    return create_async_engine(target, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800, connect_args=connect_args)


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(pathlib.Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


def _upgrade(connection: Any, revision: str) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        from sqlalchemy import text

        connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _MIGRATION_LOCK})
    command.upgrade(_alembic_config(connection), revision)


async def upgrade(engine: "AsyncEngine", revision: str = "head") -> Optional[str]:
    """Bring the schema to ``revision`` (Alembic, versioned); the revision it is at after."""
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":  # one migrating process at a time (several workers may start at once)
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        await connection.run_sync(_upgrade, revision)
        await connection.commit()
    return await current_revision(engine)


def _current(connection: Any) -> Optional[str]:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    heads = context.get_current_heads()
    return heads[0] if heads else None


async def current_revision(engine: "AsyncEngine") -> Optional[str]:
    """The schema revision the database is at (None: never migrated)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)
