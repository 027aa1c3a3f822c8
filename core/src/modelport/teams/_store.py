"""The teams database: keys, teams, users and spend, over an async SQLAlchemy engine.

Shared by the gateway's admin routes, its key cache and spend writer, and the CLI.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import attrs
from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ._db import create_engine, current_revision, upgrade
from ._fields import TeamsError
from ._keys import add_duration, hash_key, iso, key_name, new_key, utcnow
from ._models import KeyRow, SpendLogRow, TeamRow, UserRow

__all__ = ["Store", "Access", "Holder", "key_info", "team_info", "user_info", "KINDS"]

Holder = Union[KeyRow, TeamRow, UserRow]
#: Budget holders by kind: (row class, primary key attribute).
KINDS: Dict[str, Tuple[Type[Any], str]] = {"key": (KeyRow, "token"), "user": (UserRow, "user_id"), "team": (TeamRow, "team_id")}
_SPEND_LOGS: Table = SpendLogRow.__table__  # type: ignore[assignment]


@attrs.frozen
class Access:
    """What a key may do: its row, and its user's and team's (None when it has none)."""

    key: KeyRow
    user: Optional[UserRow]
    team: Optional[TeamRow]


def _budget_fields(row: Holder) -> Dict[str, Any]:
    return {
        "models": list(row.models or []),
        "max_budget": row.max_budget,
        "budget_duration": row.budget_duration,
        "budget_reset_at": iso(row.budget_reset_at),
        "spend": row.spend,
        "rpm_limit": row.rpm_limit,
        "tpm_limit": row.tpm_limit,
        "max_parallel_requests": row.max_parallel_requests,
        "blocked": bool(row.blocked),
        "metadata": dict(row.metadata_ or {}),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def key_info(row: KeyRow, extra_spend: float = 0.0) -> Dict[str, Any]:
    """A key as the admin API shows it: its hash (``token``), never the key."""
    info = {"token": row.token, "key_name": row.key_name, "key_alias": row.key_alias, "user_id": row.user_id,
            "team_id": row.team_id, "expires": iso(row.expires), **_budget_fields(row)}  # fmt: skip
    info["spend"] = row.spend + extra_spend
    return info


def team_info(row: TeamRow, extra_spend: float = 0.0) -> Dict[str, Any]:
    info = {"team_id": row.team_id, "team_alias": row.team_alias, **_budget_fields(row)}
    info["spend"] = row.spend + extra_spend
    return info


def user_info(row: UserRow, extra_spend: float = 0.0) -> Dict[str, Any]:
    info = {"user_id": row.user_id, "user_email": row.user_email, "user_role": row.user_role, **_budget_fields(row)}
    info["spend"] = row.spend + extra_spend
    return info


def _conflict(exc: IntegrityError) -> TeamsError:
    return TeamsError("the request conflicts with a concurrent change (an id or key that now exists); try again", 409, "conflict")


class Store:
    """The teams database behind one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> "Store":
        return cls(create_engine(url))

    async def upgrade(self) -> Optional[str]:
        """Run the schema migrations (Alembic) up to the newest; the revision reached."""
        return await upgrade(self.engine)

    async def revision(self) -> Optional[str]:
        return await current_revision(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    def session(self) -> AsyncSession:
        return self._sessions()

    # -- keys -------------------------------------------------------------------------------

    async def _check_links(self, session: AsyncSession, values: Mapping[str, Any], token: Optional[str] = None) -> None:
        """The team a key names exists, its alias is free, and its user has a row (made if new)."""
        team_id = values.get("team_id")
        if team_id is not None and await session.get(TeamRow, team_id) is None:
            raise TeamsError(f"team_id {team_id!r} does not exist; create it with /team/new", 400, "team_not_found", "team_id")
        alias = values.get("key_alias")
        if alias is not None:
            taken = await session.scalar(select(KeyRow.token).where(KeyRow.key_alias == alias, KeyRow.token != (token or "")))
            if taken is not None:
                raise TeamsError(f"key_alias {alias!r} is already used by another key", 400, "key_alias_taken", "key_alias")
        user_id = values.get("user_id")
        if user_id is not None and await session.get(UserRow, user_id) is None:
            now = utcnow()
            session.add(UserRow(user_id=user_id, models=[], metadata_={}, spend=0.0, blocked=False, created_at=now, updated_at=now))

    async def create_key(self, values: Dict[str, Any]) -> Tuple[str, KeyRow]:
        """A new key (or the chosen ``values['key']``) with ``values``; (the key, its row)."""
        values = dict(values)
        key = values.pop("key", None) or new_key()
        now = utcnow()
        values.setdefault("models", [])
        values.setdefault("metadata_", {})
        values.setdefault("spend", 0.0)
        values.setdefault("blocked", False)
        row = KeyRow(token=hash_key(key), key_name=key_name(key), created_at=now, updated_at=now, **values)
        try:
            async with self.session() as session, session.begin():
                if await session.get(KeyRow, row.token) is not None:
                    raise TeamsError("this key already exists; choose another or let the gateway generate one", 400, "key_exists", "key")
                await self._check_links(session, values)
                session.add(row)
        except IntegrityError as exc:
            raise _conflict(exc) from None
        return key, row

    async def get_key(self, token: str) -> Optional[KeyRow]:
        async with self.session() as session:
            return await session.get(KeyRow, token)

    async def update_key(self, token: str, values: Dict[str, Any]) -> KeyRow:
        try:
            async with self.session() as session, session.begin():
                row = await session.get(KeyRow, token)
                if row is None:
                    raise TeamsError("no such key", 404, "key_not_found", "key")
                await self._check_links(session, values, token)
                for name, value in values.items():
                    setattr(row, name, value)
                row.updated_at = utcnow()
        except IntegrityError as exc:
            raise _conflict(exc) from None
        return row

    async def delete_keys(self, tokens: Sequence[str] = (), aliases: Sequence[str] = ()) -> List[str]:
        """Delete keys by hash or alias, all or none; the hashes deleted."""
        async with self.session() as session, session.begin():
            found: List[str] = []
            if tokens:
                found += list(await session.scalars(select(KeyRow.token).where(KeyRow.token.in_(list(tokens)))))
            if aliases:
                found += list(await session.scalars(select(KeyRow.token).where(KeyRow.key_alias.in_(list(aliases)))))
            wanted = len(set(tokens)) + len(set(aliases))
            found = list(dict.fromkeys(found))
            if len(found) < wanted:
                raise TeamsError(f"{wanted - len(found)} of the {wanted} keys given do not exist; none was deleted", 404, "key_not_found", "keys")
            await session.execute(delete(KeyRow).where(KeyRow.token.in_(found)))
        return found

    async def list_keys(self, *, user_id: Optional[str] = None, team_id: Optional[str] = None, key_alias: Optional[str] = None,
                        page: int = 1, size: int = 10) -> Tuple[List[KeyRow], int]:  # fmt: skip
        """One page of keys (newest first) and how many match."""
        where = []
        if user_id is not None:
            where.append(KeyRow.user_id == user_id)
        if team_id is not None:
            where.append(KeyRow.team_id == team_id)
        if key_alias is not None:
            where.append(KeyRow.key_alias == key_alias)
        async with self.session() as session:
            total = await session.scalar(select(func.count()).select_from(KeyRow).where(*where)) or 0
            rows = await session.scalars(
                select(KeyRow).where(*where).order_by(KeyRow.created_at.desc(), KeyRow.token).offset((page - 1) * size).limit(size)
            )
            return list(rows), int(total)

    async def load_access(self, token: str) -> Optional[Access]:
        """A key with its user and team, for the gateway's key cache (None: no such key)."""
        async with self.session() as session:
            key = await session.get(KeyRow, token)
            if key is None:
                return None
            user = await session.get(UserRow, key.user_id) if key.user_id else None
            team = await session.get(TeamRow, key.team_id) if key.team_id else None
            return Access(key, user, team)

    # -- teams and users --------------------------------------------------------------------

    async def create_team(self, values: Dict[str, Any]) -> TeamRow:
        row: TeamRow = await self._create("team", values)
        return row

    async def get_team(self, team_id: str) -> Optional[Tuple[TeamRow, List[KeyRow]]]:
        return await self._get("team", team_id)

    async def update_team(self, team_id: str, values: Dict[str, Any]) -> TeamRow:
        row: TeamRow = await self._update("team", team_id, values)
        return row

    async def delete_teams(self, team_ids: Sequence[str]) -> Tuple[List[str], List[str]]:
        """Delete teams (all or none) and their keys; (team ids, key hashes) deleted."""
        async with self.session() as session, session.begin():
            found = list(await session.scalars(select(TeamRow.team_id).where(TeamRow.team_id.in_(list(team_ids)))))
            if len(found) < len(set(team_ids)):
                missing = sorted(set(team_ids) - set(found))
                raise TeamsError(f"no team {', '.join(map(repr, missing))}; none was deleted", 404, "team_not_found", "team_ids")
            tokens = list(await session.scalars(select(KeyRow.token).where(KeyRow.team_id.in_(found))))
            await session.execute(delete(KeyRow).where(KeyRow.team_id.in_(found)))
            await session.execute(delete(TeamRow).where(TeamRow.team_id.in_(found)))
        return found, tokens

    async def create_user(self, values: Dict[str, Any]) -> UserRow:
        row: UserRow = await self._create("user", values)
        return row

    async def get_user(self, user_id: str) -> Optional[Tuple[UserRow, List[KeyRow]]]:
        return await self._get("user", user_id)

    async def update_user(self, user_id: str, values: Dict[str, Any]) -> UserRow:
        row: UserRow = await self._update("user", user_id, values)
        return row

    # Teams and users are stored alike: one row with its own id, budgets, models and spend.

    async def _create(self, kind: str, values: Dict[str, Any]) -> Any:
        model, id_name = KINDS[kind]
        values = dict(values)
        now = utcnow()
        ident = values.pop(id_name, None) or str(uuid.uuid4())
        values.setdefault("models", [])
        values.setdefault("metadata_", {})
        values.setdefault("spend", 0.0)
        values.setdefault("blocked", False)
        row = model(**{id_name: ident}, created_at=now, updated_at=now, **values)
        try:
            async with self.session() as session, session.begin():
                if await session.get(model, ident) is not None:
                    raise TeamsError(f"{id_name} {ident!r} already exists", 400, f"{kind}_exists", id_name)
                session.add(row)
        except IntegrityError as exc:
            raise _conflict(exc) from None
        return row

    async def _get(self, kind: str, ident: str) -> Optional[Tuple[Any, List[KeyRow]]]:
        model, id_name = KINDS[kind]
        async with self.session() as session:
            row = await session.get(model, ident)
            if row is None:
                return None
            keys = await session.scalars(select(KeyRow).where(getattr(KeyRow, id_name) == ident).order_by(KeyRow.created_at))
            return row, list(keys)

    async def _update(self, kind: str, ident: str, values: Dict[str, Any]) -> Any:
        model, id_name = KINDS[kind]
        async with self.session() as session, session.begin():
            row = await session.get(model, ident)
            if row is None:
                raise TeamsError(f"no {kind} {ident!r}", 404, f"{kind}_not_found", id_name)
            for name, value in values.items():
                if name != id_name:
                    setattr(row, name, value)
            row.updated_at = utcnow()
        return row

    # -- spend ------------------------------------------------------------------------------

    async def write_spend(self, logs: Sequence[Mapping[str, Any]], deltas: Mapping[Tuple[str, str], float]) -> None:
        """One transaction: insert spend log rows, add each holder's spend delta."""
        async with self.engine.begin() as connection:
            if logs:
                await connection.execute(insert(_SPEND_LOGS), [dict(row) for row in logs])
            for kind, (model, id_name) in KINDS.items():
                params = [{"b_id": ident, "b_delta": delta} for (k, ident), delta in deltas.items() if k == kind and delta]
                if not params:
                    continue
                table: Table = model.__table__
                statement = update(table).where(table.c[id_name] == bindparam("b_id")).values(spend=table.c.spend + bindparam("b_delta"))
                await connection.execute(statement, params)

    async def reset_budget(self, kind: str, ident: str, now: dt.datetime) -> Optional[Tuple[float, Optional[dt.datetime]]]:
        """Spend back to 0 when the holder's ``budget_reset_at`` has come (once, even with
        several gateways racing); (spend, next reset) as stored after, None when gone."""
        model, id_name = KINDS[kind]
        table: Table = model.__table__
        async with self.engine.begin() as connection:
            row = (await connection.execute(
                select(table.c.spend, table.c.budget_duration, table.c.budget_reset_at).where(table.c[id_name] == ident)
            )).first()  # fmt: skip
            if row is None:
                return None
            spend, duration, reset_at = row
            if reset_at is None or reset_at > now or not duration:
                return float(spend), reset_at
            following = add_duration(now, duration)
            done = await connection.execute(
                update(table).where(table.c[id_name] == ident, table.c.budget_reset_at == reset_at).values(spend=0.0, budget_reset_at=following)
            )
            if done.rowcount:
                return 0.0, following
            after = (await connection.execute(select(table.c.spend, table.c.budget_reset_at).where(table.c[id_name] == ident))).first()
            return (float(after[0]), after[1]) if after is not None else None

    def _log_filters(self, filters: Mapping[str, Any]) -> List[Any]:
        where: List[Any] = []
        column = _SPEND_LOGS.c
        for name, col in (("api_key", column.api_key), ("user_id", column.user), ("team_id", column.team_id), ("request_id", column.request_id)):
            if filters.get(name) is not None:
                where.append(col == filters[name])
        if filters.get("start_date") is not None:
            where.append(column.day >= filters["start_date"])
        if filters.get("end_date") is not None:
            where.append(column.day <= filters["end_date"])
        return where

    async def spend_logs(self, filters: Mapping[str, Any], limit: int = 1000) -> List[Dict[str, Any]]:
        """Spend log rows (LiteLLM's field names), newest first."""
        column = _SPEND_LOGS.c
        statement = select(_SPEND_LOGS).where(*self._log_filters(filters)).order_by(column.start_time.desc(), column.id.desc()).limit(limit)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        return [
            {"request_id": r["request_id"], "api_key": r["api_key"], "user": r["user"], "team_id": r["team_id"], "model": r["model"],
             "call_type": r["call_type"], "prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
             "total_tokens": r["total_tokens"], "spend": r["spend"], "status": r["status"], "status_code": r["status_code"],
             "startTime": iso(r["start_time"]), "endTime": iso(r["end_time"]), "day": r["day"].isoformat()}
            for r in rows
        ]  # fmt: skip

    async def spend_by_day(self, filters: Mapping[str, Any]) -> List[Dict[str, Any]]:
        """Spend per day (and per model within each day), oldest day first."""
        column = _SPEND_LOGS.c
        statement = (
            select(column.day, column.model, func.sum(column.spend), func.count(), func.sum(column.prompt_tokens), func.sum(column.completion_tokens))
            .where(*self._log_filters(filters))
            .group_by(column.day, column.model)
            .order_by(column.day, column.model)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        days: Dict[str, Dict[str, Any]] = {}
        for day, model, spend, count, prompt, completion in rows:
            entry = days.setdefault(day.isoformat(), {"day": day.isoformat(), "spend": 0.0, "requests": 0, "prompt_tokens": 0,
                                                      "completion_tokens": 0, "models": {}})  # fmt: skip
            entry["spend"] += float(spend or 0)
            entry["requests"] += int(count)
            entry["prompt_tokens"] += int(prompt or 0)
            entry["completion_tokens"] += int(completion or 0)
            entry["models"][model] = float(spend or 0)
        return list(days.values())

