"""``modelport keys create|list|info|delete`` and ``modelport db upgrade``: the teams
database from the command line (directly, no gateway needed).

The database is ``--database-url URL``, else the one ``--config FILE`` names (its
``general_settings.database_url``, the environment's ``DATABASE_URL``, or the embedded
``modelport.db`` beside a config with a master key), else ``DATABASE_URL``. A running
gateway sees the changes within its key cache time (5 seconds by default).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List

from .errors import ConfigError, InvalidRequestError

if TYPE_CHECKING:
    from .provider import CliCommand
    from .teams._store import Store

__all__ = ["commands"]


def _database_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="gateway config: its general_settings.database_url (or the modelport.db beside it)")
    parser.add_argument("--database-url", help="sqlite:///path or postgresql://user@host/db (default: $DATABASE_URL)")


def _database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    if args.config:
        from .routing import load_config
        from .teams import database_url_for

        url, _ = database_url_for(load_config(args.config))
        if url is None:
            raise ConfigError(f"{args.config} names no database: set general_settings.database_url (or DATABASE_URL), or a master_key for the embedded modelport.db")
        return url
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    raise ConfigError("which database? give --config FILE or --database-url URL (or set DATABASE_URL)")


def _with_store(args: argparse.Namespace, work: Callable[["Store"], Awaitable[int]], *, migrate: bool = True) -> int:
    """Run ``work`` on the database's store; database failures are exit 1 with one line."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from .teams import TeamsError, safe_url
    from .teams._store import Store

    url = _database_url(args)

    async def main() -> int:
        store = Store.from_url(url)
        try:
            if migrate:
                await store.upgrade()
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except TeamsError as exc:
        print(f"modelport: error: {exc.message}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        print(f"modelport: error: the database {safe_url(url)} failed: {type(exc).__name__}: {detail}", file=sys.stderr)
        return 1


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# -- keys ----------------------------------------------------------------------------------


def _keys_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="{create,list,info,delete}")
    create = sub.add_parser("create", help="make a virtual key (printed once: only its hash is stored)")
    _database_args(create)
    create.add_argument("--alias", dest="key_alias", help="a unique name for the key")
    create.add_argument("--user-id")
    create.add_argument("--team-id", help="an existing team's id")
    create.add_argument("--models", help="comma-separated model names it may use (default: all)")
    create.add_argument("--max-budget", type=float, help="USD it may spend (per budget duration)")
    create.add_argument("--budget-duration", help="spend resets every: 30s, 10m, 1h, 30d, 1mo, ...")
    create.add_argument("--rpm-limit", type=int)
    create.add_argument("--tpm-limit", type=int)
    create.add_argument("--max-parallel-requests", type=int)
    create.add_argument("--duration", help="the key expires after: 1h, 30d, ... (default: never)")
    create.add_argument("--metadata", help="JSON object stored with the key")
    create.add_argument("--allow-client-options", action="store_true", help="requests with this key may set api_base, api_key, extra_headers")
    create.add_argument("--json", action="store_true", help="machine-readable output")
    listing = sub.add_parser("list", help="list keys (hashes, never the keys)")
    _database_args(listing)
    listing.add_argument("--user-id")
    listing.add_argument("--team-id")
    listing.add_argument("--alias", dest="key_alias")
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--size", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    info = sub.add_parser("info", help="one key's settings and spend")
    _database_args(info)
    info.add_argument("key", help="the key or its hash")
    delete = sub.add_parser("delete", help="delete keys")
    _database_args(delete)
    delete.add_argument("keys", nargs="+", metavar="KEY", help="keys or their hashes")


def _create_body(args: argparse.Namespace) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    for name in ("key_alias", "user_id", "team_id", "max_budget", "budget_duration", "rpm_limit", "tpm_limit", "max_parallel_requests", "duration"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.models:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    metadata: Dict[str, Any] = {}
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except ValueError as exc:
            raise ConfigError(f"--metadata is not JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise ConfigError("--metadata must be a JSON object")
    if args.allow_client_options:
        metadata["allow_client_options"] = True
    if metadata:
        body["metadata"] = metadata
    return body


def _keys_create(args: argparse.Namespace) -> int:
    from .teams import TeamsError
    from .teams._fields import KEY_FIELDS, parse_fields
    from .teams._keys import utcnow
    from .teams._store import key_info

    try:
        values, _ = parse_fields(_create_body(args), KEY_FIELDS - {"key"}, utcnow())
    except TeamsError as exc:  # a usage error: exit 2
        raise InvalidRequestError(exc.message, param=exc.param) from None

    async def work(store: "Store") -> int:
        key, row = await store.create_key(values)
        info = {"key": key, **key_info(row)}
        if args.json:
            _print_json(info)
        else:
            print(f"{'key:':<13}{key}")
            print(f"{'':<13}(shown once: only its hash is stored)")
            for name in ("token", "key_alias", "user_id", "team_id", "models", "max_budget", "budget_duration", "expires"):
                if info.get(name) not in (None, []):
                    print(f"{name + ':':<13}{info[name] if not isinstance(info[name], list) else ', '.join(info[name])}")
        return 0

    return _with_store(args, work)


def _keys_list(args: argparse.Namespace) -> int:
    from .teams._store import key_info

    async def work(store: "Store") -> int:
        rows, total = await store.list_keys(user_id=args.user_id, team_id=args.team_id, key_alias=args.key_alias,
                                            page=max(1, args.page), size=min(max(1, args.size), 1000))  # fmt: skip
        infos = [key_info(row) for row in rows]
        if args.json:
            _print_json({"keys": infos, "total_count": total})
            return 0
        print(f"{'token':<14} {'alias':<20} {'user':<16} {'team':<16} {'spend':>10} {'budget':>10}  state")
        for info in infos:
            state = "blocked" if info["blocked"] else ("expires " + info["expires"][:19] if info["expires"] else "active")
            budget = "-" if info["max_budget"] is None else f"{info['max_budget']:.4g}"
            print(f"{info['token'][:12] + '..':<14} {(info['key_alias'] or '-')[:20]:<20} {(info['user_id'] or '-')[:16]:<16} "
                  f"{(info['team_id'] or '-')[:16]:<16} {info['spend']:>10.4g} {budget:>10}  {state}")  # fmt: skip
        print(f"{len(infos)} of {total} key(s)")
        return 0

    return _with_store(args, work)


def _keys_info(args: argparse.Namespace) -> int:
    from .teams import TeamsError, token_of
    from .teams._store import key_info

    async def work(store: "Store") -> int:
        row = await store.get_key(token_of(args.key))
        if row is None:
            raise TeamsError("no such key")
        _print_json(key_info(row))
        return 0

    return _with_store(args, work)


def _keys_delete(args: argparse.Namespace) -> int:
    from .teams import token_of

    async def work(store: "Store") -> int:
        deleted = await store.delete_keys([token_of(k) for k in args.keys])
        print(f"deleted {len(deleted)} key(s): {', '.join(t[:12] + '..' for t in deleted)}")
        return 0

    return _with_store(args, work)


def _keys(args: argparse.Namespace) -> int:
    runners: Dict[str, Callable[[argparse.Namespace], int]] = {
        "create": _keys_create, "list": _keys_list, "info": _keys_info, "delete": _keys_delete,
    }  # fmt: skip
    return runners[args.keys_command](args)


# -- db ------------------------------------------------------------------------------------


def _db_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", required=True, metavar="{upgrade,current}")
    upgrade = sub.add_parser("upgrade", help="create or migrate the teams tables to the newest schema")
    _database_args(upgrade)
    current = sub.add_parser("current", help="print the schema revision the database is at")
    _database_args(current)


def _db(args: argparse.Namespace) -> int:
    from .teams import safe_url

    url = _database_url(args)

    async def upgrade(store: "Store") -> int:
        revision = await store.upgrade()
        print(f"{safe_url(url)}: schema at revision {revision}")
        return 0

    async def current(store: "Store") -> int:
        revision = await store.revision()
        print(f"{safe_url(url)}: schema at revision {revision or 'none (run modelport db upgrade)'}")
        return 0

    return _with_store(args, upgrade if args.db_command == "upgrade" else current, migrate=False)


def commands() -> List["CliCommand"]:
    from .provider import CliCommand

    return [
        CliCommand("keys", "virtual keys of the gateway's teams database: create, list, info, delete", _keys, _keys_arguments),
        CliCommand("db", "the gateway's teams database: upgrade (run migrations), current", _db, _db_arguments),
    ]

