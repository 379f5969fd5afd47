"""The store contract: each case runs on the in-memory fake and on the database stores,
on SQLite and on PostgreSQL (the PostgreSQL half is skipped, with the reason, without a
server; see tests/conftest.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from ledger.bootstrap import connect
from ledger.clock import FixedClock
from ledger.ports.unit_of_work import Transactions
from tests.conftest import empty_postgres
from tests.fakes.memory import MemoryDatabase
from tests.fakes.state import DuplicateRow

BACKENDS = ["memory", "sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db(backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock) -> Iterator[Transactions]:
    """An empty ledger's transactions on `backend`, with the test's clock."""
    if backend == "memory":
        yield MemoryDatabase(clock=clock)
        return
    if backend == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_database")
        empty_postgres(url)
    book = connect(url, clock=clock)
    yield book.database
    book.close()


@pytest.fixture
def duplicate(backend: str) -> type[Exception]:
    """What inserting a second row with a taken key or unique value raises on `backend`."""
    return DuplicateRow if backend == "memory" else IntegrityError
