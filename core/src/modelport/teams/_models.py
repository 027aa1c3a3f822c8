"""The tables of the teams feature (SQLAlchemy 2 declarative; the schema itself is created
and changed by the Alembic migrations in ``migrations/``, which must stay in step).

Times are naive UTC on every backend. A key is stored only as its SHA-256 hash.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Optional

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ._keys import utcnow

__all__ = ["Base", "KeyRow", "TeamRow", "UserRow", "SpendLogRow"]


class Base(DeclarativeBase):
    pass


class _Budgeted:
    """Columns every budget holder (key, user, team) has."""

    models: Mapped[List[str]] = mapped_column(JSON, default=list)
    max_budget: Mapped[Optional[float]] = mapped_column(Float)
    budget_duration: Mapped[Optional[str]] = mapped_column(String(32))
    budget_reset_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    spend: Mapped[float] = mapped_column(Float, default=0.0)
    rpm_limit: Mapped[Optional[int]] = mapped_column(Integer)
    tpm_limit: Mapped[Optional[int]] = mapped_column(Integer)
    max_parallel_requests: Mapped[Optional[int]] = mapped_column(Integer)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_: Mapped[Dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class KeyRow(_Budgeted, Base):
    __tablename__ = "modelport_keys"

    #: SHA-256 hex digest of the key (the key itself is never stored).
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_name: Mapped[str] = mapped_column(String(16))
    key_alias: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    user_id: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    team_id: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    expires: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class TeamRow(_Budgeted, Base):
    __tablename__ = "modelport_teams"

    team_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    team_alias: Mapped[Optional[str]] = mapped_column(String(255))


class UserRow(_Budgeted, Base):
    __tablename__ = "modelport_users"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_email: Mapped[Optional[str]] = mapped_column(String(255))
    user_role: Mapped[Optional[str]] = mapped_column(String(64))


class SpendLogRow(Base):
    __tablename__ = "modelport_spend_logs"
    __table_args__ = (Index("ix_modelport_spend_logs_day", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    #: Hash of the key that paid (the master key's hash for master calls).
    api_key: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    user: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    team_id: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    model: Mapped[str] = mapped_column(String(255))
    call_type: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    spend: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[dt.datetime] = mapped_column(DateTime)
    end_time: Mapped[dt.datetime] = mapped_column(DateTime)
    day: Mapped[dt.date] = mapped_column(Date)
