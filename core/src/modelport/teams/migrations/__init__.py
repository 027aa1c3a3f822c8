"""Alembic migrations of the teams schema (run at gateway start and by ``modelport db upgrade``)."""
