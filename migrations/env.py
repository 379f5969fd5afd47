"""Alembic environment: migrates the connection it is handed, or LEDGER_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ledger.config import load_settings
from ledger.db.engine import make_engine
from ledger.db.schema import Base

target_metadata = Base.metadata


def run_with(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        run_with(given)
        return
    engine = make_engine(load_settings().database_url)
    try:
        with engine.connect() as connection:
            run_with(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `ledger db upgrade`")
run_migrations_online()
