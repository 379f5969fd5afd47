"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL: the suite creates its own database on the server named by
LEDGER_TEST_POSTGRES_URL (default: the local server, trust auth), migrates it with
the Alembic migrations, empties it between tests, and drops it at the end. Without
a reachable server the PostgreSQL half is skipped with the reason, unless
LEDGER_TEST_REQUIRE_POSTGRES=1 (as in CI), in which case it fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from ledger.bootstrap import connect
from ledger.clock import FixedClock
from ledger.config import normalize_database_url
from ledger.db.engine import make_engine, upgrade
from ledger.service import Ledger

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

POSTGRES_URL = normalize_database_url(
    os.environ.get("LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
REQUIRE_POSTGRES = os.environ.get("LEDGER_TEST_REQUIRE_POSTGRES", "") not in ("", "0", "false", "no")
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def database_names() -> list[str]:
    return ["sqlite", "postgresql"]


def postgres_admin() -> Engine:
    """An AUTOCOMMIT engine on the PostgreSQL server of LEDGER_TEST_POSTGRES_URL, to create
    and drop databases. An unreachable server skips the test with the reason, or fails it
    when LEDGER_TEST_REQUIRE_POSTGRES is set."""
    admin_url = make_url(POSTGRES_URL)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        admin.dispose()
        reason = f"PostgreSQL at {admin_url.render_as_string(hide_password=True)} is unreachable: {error}"
        if REQUIRE_POSTGRES:
            pytest.fail(f"LEDGER_TEST_REQUIRE_POSTGRES is set and {reason}", pytrace=False)
        pytest.skip(reason)
    return admin


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session; dropped at the end."""
    admin = postgres_admin()
    admin_url = admin.url
    name = f"ledger_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_postgres(url: str) -> None:
    """Empty every ledger table. The journal refuses TRUNCATE by trigger; the tests may
    bypass it (replication role, superuser only) because they own this database."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(
            text(
                "TRUNCATE postings, entries, balances, accounts, fee_events, lifetime_billings,"
                " payment_refunds, payments, milestones, contracts, payouts, timers,"
                " documents, document_sequences, parties, api_keys, idempotent_requests, provider_events,"
                " refund_orders, disputes, provider_books, payment_orders, request_keys, worker_heartbeats,"
                " contract_term_changes, time_segments, hourly_weeks, week_disputes, state_changes, audit_runs"
                " RESTART IDENTITY"
            )
        )
        # Keep only the schedule the migrations put in force.
        connection.execute(text("DELETE FROM fee_schedules WHERE effective_from > '1970-01-01T00:00:00Z'"))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ledger.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """The URL of an empty, migrated database of the parametrized kind."""
    kind = request.param
    if kind == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    empty_postgres(url)
    return url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fresh_database_url" in metafunc.fixturenames:
        kinds = ["postgresql"] if metafunc.definition.get_closest_marker("postgresql_only") else database_names()
        metafunc.parametrize("fresh_database_url", kinds, indirect=True)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def book(fresh_database_url: str, clock: FixedClock) -> Iterator[Ledger]:
    """A ledger on an empty database, with a clock the test can move."""
    ledger = connect(fresh_database_url, clock=clock)
    yield ledger
    ledger.close()


#: Lines the concurrency tests report (retries, refusals); printed after the run.
CONCURRENCY_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CONCURRENCY_REPORT:
        terminalreporter.section("concurrency")
        for line in CONCURRENCY_REPORT:
            terminalreporter.write_line(line)
