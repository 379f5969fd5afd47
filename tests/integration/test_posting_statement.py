"""The PostgreSQL posting statement: driver SQL that must agree with the schema, runs as
its own transaction (one round trip) and keeps every database guarantee doing so."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import BigInteger, Integer, SmallInteger, String, Text, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import JSON, TypeEngine

from ledger import AccountSpec, AccountType, EntryRequest, Ledger, credit, debit
from ledger.accounts import Side
from ledger.db.journal_store import POSTGRES_WRITE, PlannedEntry, PlannedPosting
from ledger.db.schema import UTCDateTime, accounts, balances, entries, postings
from ledger.errors import BelowFloor

#: The PostgreSQL types of the statement's record declarations, and the schema's types they may fill.
COMPATIBLE: dict[str, tuple[type[TypeEngine[Any]], ...]] = {
    "text": (String, Text),
    "bigint": (BigInteger,),
    "int": (Integer, SmallInteger, BigInteger),
    "timestamptz": (UTCDateTime,),
    "jsonb": (JSON,),
}


def record_columns(alias: str) -> dict[str, str]:
    """The columns `jsonb_to_recordset(...) AS alias(name type, ...)` declares."""
    found = re.search(rf"AS {alias}\(([^)]*)\)", POSTGRES_WRITE)
    assert found, f"no record declaration {alias}(...)"
    return dict(column.split() for column in (c.strip() for c in found.group(1).split(",")))


def inserted_columns(table: str) -> list[str]:
    found = re.search(rf"INSERT INTO {table} \(([^)]*)\)", POSTGRES_WRITE)
    assert found, f"no INSERT INTO {table}"
    return [c.strip() for c in found.group(1).split(",")]


@pytest.mark.parametrize(("table", "alias"), [(entries, "r"), (postings, "l")])
def test_the_statement_inserts_the_schemas_columns_with_their_types(table: Any, alias: str) -> None:
    names = inserted_columns(table.name)
    assert set(names) <= set(table.c.keys()), f"{table.name}: unknown columns {set(names) - set(table.c.keys())}"
    required = {c.name for c in table.c if not c.nullable and c.server_default is None and not c.autoincrement}
    required -= {c.name for c in table.primary_key.columns if c.autoincrement in (True, "auto")}
    assert required <= set(names), f"{table.name}: the statement leaves out {required - set(names)}"
    declared = record_columns(alias)
    for name in names:
        if name in declared:
            column_type = table.c[name].type
            assert isinstance(column_type, COMPATIBLE[declared[name]]), (name, declared[name], column_type)


def test_the_statement_names_only_schema_columns_of_balances_and_accounts() -> None:
    for column in re.findall(r"\bb\.(\w+)", POSTGRES_WRITE):
        assert column in balances.c, column
    for column in re.findall(r"\ba\.(\w+)", POSTGRES_WRITE):
        assert column in accounts.c, column


@pytest.fixture
def two_accounts(book: Ledger) -> Ledger:
    book.open_account(AccountSpec("assets:a", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("liabilities:b", AccountType.LIABILITY, "USD", floor=0))
    return book


def transfer(key: str, amount: int) -> EntryRequest:
    return EntryRequest(key, "t", (debit("assets:a", amount, "USD"), credit("liabilities:b", amount, "USD")))


@pytest.mark.postgresql_only
def test_a_posting_is_one_statement_without_begin_or_commit(two_accounts: Ledger) -> None:
    two_accounts.post(transfer("warm", 1))  # the accounts are cached from here on
    sent: list[tuple[str, bool]] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append((statement, conn.connection.dbapi_connection.autocommit))

    engine = two_accounts.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        two_accounts.post(transfer("k1", 500))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # One statement, sent in autocommit mode: psycopg sends no BEGIN before it and no
    # COMMIT after it, so the posting is one round trip.
    assert [(statement.strip()[:4], autocommit) for statement, autocommit in sent] == [("WITH", True)]
    assert two_accounts.balance("liabilities:b", "USD") == 501


@pytest.mark.postgresql_only
def test_an_unbalanced_posting_statement_is_refused_at_its_end(two_accounts: Ledger) -> None:
    """Past the Python checks, the deferred zero-sum trigger still refuses the statement
    that runs as its own transaction, and nothing of it stays."""

    def write_unbalanced(uow: Any) -> None:
        a = uow.accounts.get("assets:a", "USD")
        b = uow.accounts.get("liabilities:b", "USD")
        request = transfer("bad", 100)
        legs = (PlannedPosting(a, Side.DEBIT, 100, 0), PlannedPosting(b, Side.CREDIT, 99, 0))
        uow.journal._write_postgresql([PlannedEntry(request, uow.clock.now(), legs)], uow.clock.now(), "system")

    with pytest.raises(IntegrityError, match="does not balance"):
        two_accounts.database.transaction(write_unbalanced, single_write=True)
    assert (
        two_accounts.transaction(
            lambda uow: uow.connection.execute(select(func.count()).select_from(entries)).scalar_one()
        )
        == 0
    )
    assert two_accounts.balance("assets:a", "USD") == 0


def test_a_refused_floor_leaves_nothing_written(two_accounts: Ledger) -> None:
    two_accounts.post(transfer("in", 300))
    with pytest.raises(BelowFloor) as caught:
        two_accounts.post(
            EntryRequest("out", "t", (debit("liabilities:b", 301, "USD"), credit("assets:a", 301, "USD")))
        )
    assert caught.value.data == {"account": "liabilities:b", "currency": "USD", "floor": 0, "balance_after": -1}
    assert two_accounts.balance("liabilities:b", "USD") == 300
    assert (
        two_accounts.transaction(
            lambda uow: uow.connection.execute(select(func.count()).select_from(entries)).scalar_one()
        )
        == 1
    )
