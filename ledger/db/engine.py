"""Engines for the two supported databases, and the migration status.

SQLite (the embedded default) runs in WAL mode with foreign keys on, and every
writing transaction starts with `BEGIN IMMEDIATE`: it takes the write lock up front, so two
writers queue on the busy timeout instead of failing to upgrade a read lock
(`Database.autocommit` work sends no BEGIN: each of its statements commits alone).
PostgreSQL runs at READ COMMITTED; the posting path takes row locks in a fixed
order, so concurrent writers neither lose updates nor deadlock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from ledger.errors import ConfigurationError, DatabaseNotMigrated

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def make_engine(url: str, **options: Any) -> Engine:
    """An engine for a SQLite or PostgreSQL URL, tuned for the ledger."""
    parsed = make_url(url)
    # A statement's parameters stay out of its error messages (and so out of the logs
    # and the CLI's error line): they may hold a party's address or a payer's secret.
    options.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **options)
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        options.setdefault("pool_size", 10)
        options.setdefault("max_overflow", 10)
        options.setdefault("pool_pre_ping", False)
        return create_engine(parsed, **options)
    raise ConfigurationError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://",
        url=parsed.render_as_string(hide_password=True),
    )


def backend_name(url: str) -> str:
    """`sqlite` or `postgresql` (or whatever else the URL names), without connecting."""
    return make_url(url).get_backend_name()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, not the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        if connection.info.get("ledger_autocommit", False):
            return  # no BEGIN: each statement is a transaction of its own (Database.autocommit)
        # Writers take the write lock at BEGIN; readers read a WAL snapshot without it.
        read_only = connection.info.get("ledger_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (the schema is made only this way)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def require_migrated(engine: Engine) -> None:
    """Refuse to work on a database that is not at the newest migration."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = "is empty (no migrations applied)" if current is None else f"is at revision {current}"
        raise DatabaseNotMigrated(
            f"the database {where}, the code needs revision {head}: run `ledger db upgrade`",
            current=current,
            head=head,
        )
