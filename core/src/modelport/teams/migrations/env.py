"""Alembic's environment: migrations always run on a connection the caller opened
(``modelport.teams._db.upgrade``), never from an ``alembic.ini``."""

from __future__ import annotations

from alembic import context

from modelport.teams._models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=context.config.attributes.get("version_table", "modelport_alembic_version"),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
