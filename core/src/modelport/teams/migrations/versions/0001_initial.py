"""The first schema: keys, teams, users, spend logs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any, List

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _budget_columns() -> List[Any]:
    return [
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("max_budget", sa.Float(), nullable=True),
        sa.Column("budget_duration", sa.String(32), nullable=True),
        sa.Column("budget_reset_at", sa.DateTime(), nullable=True),
        sa.Column("spend", sa.Float(), nullable=False, server_default="0"),
        sa.Column("rpm_limit", sa.Integer(), nullable=True),
        sa.Column("tpm_limit", sa.Integer(), nullable=True),
        sa.Column("max_parallel_requests", sa.Integer(), nullable=True),
        sa.Column("blocked", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "modelport_keys",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("key_name", sa.String(16), nullable=False),
        sa.Column("key_alias", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("team_id", sa.String(255), nullable=True),
        sa.Column("expires", sa.DateTime(), nullable=True),
        *_budget_columns(),
    )
    for column in ("key_alias", "user_id", "team_id"):
        op.create_index(f"ix_modelport_keys_{column}", "modelport_keys", [column])
    op.create_table(
        "modelport_teams",
        sa.Column("team_id", sa.String(255), primary_key=True),
        sa.Column("team_alias", sa.String(255), nullable=True),
        *_budget_columns(),
    )
    op.create_table(
        "modelport_users",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("user_email", sa.String(255), nullable=True),
        sa.Column("user_role", sa.String(64), nullable=True),
        *_budget_columns(),
    )
    op.create_table(
        "modelport_spend_logs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("api_key", sa.String(64), nullable=True),
        sa.Column("user", sa.String(255), nullable=True),
        sa.Column("team_id", sa.String(255), nullable=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("call_type", sa.String(32), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("total_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("spend", sa.Float(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("end_time", sa.DateTime(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
    )
    for column in ("request_id", "api_key", "user", "team_id", "day"):
        op.create_index(f"ix_modelport_spend_logs_{column}", "modelport_spend_logs", [column])


def downgrade() -> None:
    op.drop_table("modelport_spend_logs")
    op.drop_table("modelport_users")
    op.drop_table("modelport_teams")
    op.drop_table("modelport_keys")
