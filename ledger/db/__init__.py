"""Persistence: SQLAlchemy tables, engines, units of work and the posting hot path.

Only this package talks SQL. The schema itself is made by the Alembic migrations
in `migrations/`.
"""
