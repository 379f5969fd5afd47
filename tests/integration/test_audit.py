"""`ledger audit` proves invariants 1-3 and 7; each check catches the corruption it is for.

The corruptions are made with raw SQL on SQLite, where the guard triggers can be
dropped (on PostgreSQL the database refuses them, see test_database_guards.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger import AccountSpec, AccountType, EntryRequest, Ledger, credit, debit
from ledger.audit import MAX_PROBLEMS
from ledger.bootstrap import connect
from ledger.cli import main


@pytest.fixture
def sqlite_book(tmp_path: Path, sqlite_template: Path) -> Iterator[Ledger]:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(sqlite_template.read_bytes())
    book = connect(f"sqlite:///{path}")
    book.open_account(AccountSpec("assets:psp:stripe", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("liabilities:escrow:ms_1", AccountType.LIABILITY, "USD", floor=0))
    book.open_account(AccountSpec("revenue:fees:service", AccountType.REVENUE, "USD", slots=16))
    book.post(
        EntryRequest(
            "fund",
            "escrow.fund",
            (debit("assets:psp:stripe", 1000, "USD"), credit("liabilities:escrow:ms_1", 1000, "USD")),
        )
    )
    book.post(
        EntryRequest(
            "release",
            "escrow.release",
            (debit("liabilities:escrow:ms_1", 400, "USD"), credit("revenue:fees:service", 400, "USD")),
        )
    )
    yield book
    book.close()


def corrupt(book: Ledger, *statements: str) -> None:
    """Run raw SQL with the journal's guard triggers dropped and foreign keys off."""
    book.database.engine.dispose()
    database = book.database.engine.url.database
    assert database is not None
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA foreign_keys = OFF")
    connection.execute("BEGIN")
    for name in ("entries_refuse_update", "entries_refuse_delete", "postings_refuse_update", "postings_refuse_delete"):
        connection.execute(f"DROP TRIGGER IF EXISTS {name}")
    for statement in statements:
        connection.execute(statement)
    connection.execute("COMMIT")
    connection.close()


def failed(book: Ledger) -> dict[str, list[dict[str, object]]]:
    report = book.audit().to_dict()
    assert report["ok"] is False
    return {c["name"]: c["problems"] for c in report["checks"] if not c["ok"]}


def test_a_clean_ledger_passes_every_check(sqlite_book: Ledger) -> None:
    report = sqlite_book.audit().to_dict()
    assert report == {
        "ok": True,
        "checks": [
            {"name": "entries_balance", "ok": True, "problems": []},
            {"name": "balances_match_postings", "ok": True, "problems": []},
            {"name": "floors_respected", "ok": True, "problems": []},
            {"name": "trial_balance", "ok": True, "problems": []},
            {"name": "idempotency_keys_unique", "ok": True, "problems": []},
            {"name": "actors_recorded", "ok": True, "problems": []},
            {"name": "fee_chain", "ok": True, "problems": []},
            {"name": "escrow_matches_milestones", "ok": True, "problems": []},
            {"name": "hourly_weeks_billed", "ok": True, "problems": []},
            {"name": "receivables_match_advances", "ok": True, "problems": []},
            {"name": "conservation_per_client", "ok": True, "problems": []},
            {"name": "accounting_equation", "ok": True, "problems": []},
            {"name": "chargebacks_accounted", "ok": True, "problems": []},
            {"name": "documents_numbered_without_gaps", "ok": True, "problems": []},
            {"name": "documents_match_entries", "ok": True, "problems": []},
            {
                "name": "provider_matches_ledger",
                "ok": True,
                "problems": [],
                "notes": [{"applies": False, "reason": "the payment gateway keeps no books the ledger can read"}],
            },
        ],
    }


def test_an_unbalanced_entry_is_named(sqlite_book: Ledger) -> None:
    corrupt(sqlite_book, "UPDATE postings SET amount = 999 WHERE entry_id = 1 AND side = 'debit'")
    problems = failed(sqlite_book)
    assert problems["entries_balance"] == [
        {"entry_id": 1, "currency": "USD", "debits": 999, "credits": 1000, "problem": "debits differ from credits"}
    ]
    assert problems["trial_balance"][0]["measured_by"] == "postings"
    assert problems["balances_match_postings"][0]["account"] == "assets:psp:stripe"


def test_an_entry_without_postings_is_named(sqlite_book: Ledger) -> None:
    corrupt(sqlite_book, "DELETE FROM postings WHERE entry_id = 2")
    assert {"entry_id": 2, "postings": 0, "problem": "fewer than two postings"} in failed(sqlite_book)[
        "entries_balance"
    ]


def test_a_stored_balance_that_differs_from_its_postings_is_named(sqlite_book: Ledger) -> None:
    corrupt(sqlite_book, "UPDATE balances SET balance = balance + 7 WHERE account_id = 3 AND slot = 0")
    problems = failed(sqlite_book)
    assert problems["balances_match_postings"] == [
        {"account": "revenue:fees:service", "currency": "USD", "stored_balance": 407, "sum_of_postings": 400}
    ]
    assert problems["trial_balance"] == [
        {"currency": "USD", "debits_minus_credits": -7, "measured_by": "stored balances"}
    ]


def test_a_balance_below_its_floor_is_named(sqlite_book: Ledger) -> None:
    corrupt(
        sqlite_book,
        "UPDATE postings SET amount = 1400 WHERE entry_id = 2",
        "UPDATE balances SET balance = -400 WHERE account_id = 2",
    )
    floors = failed(sqlite_book)["floors_respected"]
    assert floors == [
        {
            "account": "liabilities:escrow:ms_1",
            "currency": "USD",
            "floor": 0,
            "balance": -400,
            "measured_by": "stored balance",
        }
    ]


def test_a_duplicated_idempotency_key_is_named(sqlite_book: Ledger) -> None:
    corrupt(
        sqlite_book,
        # SQLite cannot drop a table's UNIQUE constraint; rebuild the table without it.
        "ALTER TABLE entries RENAME TO entries_with_unique_keys",
        "CREATE TABLE entries AS SELECT * FROM entries_with_unique_keys",
        "INSERT INTO entries SELECT 3, idempotency_key, request_hash, kind, effective_at, recorded_at, refs, metadata,"
        " reverses_entry_id, actor FROM entries WHERE id = 1",
        "INSERT INTO postings (entry_id, account_id, currency, side, amount) VALUES (3, 1, 'USD', 'debit', 1), (3, 2, 'USD', 'credit', 1)",
        "UPDATE balances SET balance = balance + 1 WHERE account_id IN (1, 2)",
    )
    problems = failed(sqlite_book)
    assert problems == {
        "idempotency_keys_unique": [{"idempotency_key": "fund", "entries": 2, "first_entry_id": 1, "last_entry_id": 3}]
    }


def test_every_entry_names_its_actor_and_an_unknown_one_is_named(sqlite_book: Ledger) -> None:
    from ledger.actors import acting_as
    from ledger.api.keys import create_key

    key, _ = sqlite_book.transaction(lambda uow: create_key(uow, "marketplace"))
    with acting_as(key.id):
        sqlite_book.post(
            EntryRequest(
                "by-key",
                "escrow.release",
                (debit("liabilities:escrow:ms_1", 100, "USD"), credit("revenue:fees:service", 100, "USD")),
            )
        )
    assert [e.actor for e in sqlite_book.journal().entries] == ["system", "system", key.id]
    assert sqlite_book.audit().ok
    corrupt(
        sqlite_book,
        "UPDATE entries SET actor = 'key_000000000000' WHERE id = 1",
        "UPDATE entries SET actor = '' WHERE id = 2",
    )
    assert failed(sqlite_book) == {
        "actors_recorded": [
            {"table": "entries", "actor": "", "rows": 1, "problem": "names no process and no API key"},
            {"table": "entries", "actor": "key_000000000000", "rows": 1, "problem": "names no process and no API key"},
        ]
    }


def test_problems_are_capped_and_the_rest_counted(sqlite_book: Ledger) -> None:
    rows = ", ".join(
        f"({i}, 'k{i}', 'x', 'raw', '2026-01-01 00:00:00', '2026-01-01 00:00:00', '{{}}', '{{}}')"
        for i in range(10, 10 + MAX_PROBLEMS + 5)
    )
    corrupt(
        sqlite_book,
        f"INSERT INTO entries (id, idempotency_key, request_hash, kind, effective_at, recorded_at, refs, metadata) VALUES {rows}",
    )
    problems = failed(sqlite_book)["entries_balance"]
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1]["omitted"] == 5


def test_the_audit_command_prints_json_and_exits_1_on_a_violation(
    sqlite_book: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", str(sqlite_book.database.engine.url))
    assert main(["audit", "--json"]) == 0
    corrupt(sqlite_book, "UPDATE postings SET amount = 999 WHERE entry_id = 1 AND side = 'debit'")
    capsys.readouterr()
    assert main(["audit"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  entries_balance: 1 problems" in out and "entry_id=1" in out


def test_a_broken_fee_chain_is_named(sqlite_book: Ledger) -> None:
    for key, amount in (("p1", 400_00), ("p2", 200_00)):
        sqlite_book.charge_fee(
            idempotency_key=key, freelancer_id="fr_1", client_id="cl_1", amount=amount, currency="USD"
        )
    assert sqlite_book.audit().ok
    corrupt(
        sqlite_book,
        "DROP TRIGGER fee_events_refuse_update",
        "UPDATE fee_events SET fee = fee + 1 WHERE idempotency_key = 'p2'",
        "UPDATE lifetime_billings SET billed = billed + 5",
    )
    problems = failed(sqlite_book)["fee_chain"]
    assert {"fee_event_id": 2, "fee": 30_01, "recomputed": 30_00} in problems
    assert {"pair": ["fr_1", "cl_1", "USD"], "lifetime_billings": 600_05, "last_event_after": 600_00} in problems


def test_a_fee_event_is_recomputed_under_the_schedule_it_names(sqlite_book: Ledger) -> None:
    switch = datetime.now(UTC) + timedelta(days=1)
    flat = sqlite_book.activate_fee_schedule("flat-10", switch)
    pair = {"freelancer_id": "fr_1", "client_id": "cl_1", "currency": "USD"}
    sqlite_book.charge_fee(idempotency_key="p1", amount=400_00, effective_at=switch, **pair)  # flat-10: 40.00
    sqlite_book.charge_fee(idempotency_key="p2", amount=200_00, **pair)  # classic, now: 30.00
    assert sqlite_book.audit().ok  # each event agrees with its own schedule
    classic = sqlite_book.fee_schedules()[0]
    corrupt(
        sqlite_book,
        "DROP TRIGGER fee_events_refuse_update",
        f"UPDATE fee_events SET schedule_id = {classic.id} WHERE idempotency_key = 'p1'",
        f"UPDATE fee_events SET schedule_id = {flat.id} WHERE idempotency_key = 'p2'",
    )
    problems = failed(sqlite_book)["fee_chain"]
    assert {"fee_event_id": 1, "fee": 40_00, "recomputed": 80_00} in problems
    assert {"fee_event_id": 2, "fee": 30_00, "recomputed": 20_00} in problems


def test_a_gap_in_a_fee_chain_is_named(sqlite_book: Ledger) -> None:
    for key, amount in (("p1", 400_00), ("p2", 200_00)):
        sqlite_book.charge_fee(
            idempotency_key=key, freelancer_id="fr_1", client_id="cl_1", amount=amount, currency="USD"
        )
    corrupt(sqlite_book, "DROP TRIGGER fee_events_refuse_delete", "DELETE FROM fee_events WHERE idempotency_key = 'p1'")
    assert {"fee_event_id": 2, "lifetime_before": 400_00, "expected": 0} in failed(sqlite_book)["fee_chain"]


def released_with_documents(book: Ledger) -> None:
    from ledger.escrow.service import Escrow
    from ledger.gateway.simulated import SimulatedGateway

    escrow = Escrow(book, SimulatedGateway())
    for amount in (100_00, 200_00):
        contract = escrow.contracts.open_contract(client_id="cl_1", freelancer_id="fr_1", currency="USD", title="t")
        milestone = escrow.contracts.add_milestone(contract.id, title="m", amount=amount)
        escrow.funding.fund(milestone.id)
        escrow.approvals.approve(milestone.id)
    assert book.audit().ok


def test_a_gap_in_document_numbers_is_named(sqlite_book: Ledger) -> None:
    released_with_documents(sqlite_book)
    corrupt(
        sqlite_book,
        "DROP TRIGGER documents_refuse_delete",
        "DELETE FROM documents WHERE kind = 'client_invoice' AND sequence = 1",
    )
    [problem] = failed(sqlite_book)["documents_numbered_without_gaps"]
    assert problem["series"] == "client_invoice" and problem["lowest"] == 2


def test_a_document_whose_total_differs_from_its_entry_is_named(sqlite_book: Ledger) -> None:
    released_with_documents(sqlite_book)
    corrupt(
        sqlite_book,
        "DROP TRIGGER documents_refuse_update",
        "UPDATE documents SET total = total + 1 WHERE kind = 'fee_invoice' AND sequence = 2",
    )
    [problem] = failed(sqlite_book)["documents_match_entries"]
    assert problem["total"] == problem["ledger"] + 1


def test_the_accounting_equation_holds_with_expenses_and_contra_accounts(sqlite_book: Ledger) -> None:
    from ledger import Side

    sqlite_book.open_account(AccountSpec("expenses:bad_debt", AccountType.EXPENSE, "USD"))
    sqlite_book.open_account(AccountSpec("assets:allowance", AccountType.ASSET, "USD", normal_side=Side.CREDIT))
    sqlite_book.post(
        EntryRequest("bad-debt", "test", (debit("expenses:bad_debt", 10, "USD"), credit("assets:allowance", 10, "USD")))
    )
    assert sqlite_book.audit().ok
    corrupt(sqlite_book, "UPDATE balances SET balance = balance + 5 WHERE account_id = 4")
    assert "accounting_equation" in failed(sqlite_book)


def test_a_dispute_whose_figures_differ_from_its_entries_is_named(sqlite_book: Ledger) -> None:
    from ledger.escrow.service import Escrow
    from ledger.gateway import BalanceMove, DisputeReport
    from ledger.gateway.simulated import SimulatedGateway

    escrow = Escrow(sqlite_book, SimulatedGateway())
    contract = escrow.contracts.open_contract(client_id="cl_1", freelancer_id="fr_1", currency="USD", title="t")
    milestone = escrow.contracts.add_milestone(contract.id, title="m", amount=100_00)
    escrow.funding.fund(milestone.id)
    withdrawal = BalanceMove("txn_1", -100_00, 15_00, "USD")
    escrow.chargebacks.apply_dispute(
        DisputeReport("dp_1", "pi_1", 100_00, "USD", "needs_response", (withdrawal,)), milestone.id
    )
    assert sqlite_book.audit().ok
    corrupt(sqlite_book, "UPDATE disputes SET withdrawn = 9000")
    [problem] = failed(sqlite_book)["chargebacks_accounted"]
    assert problem["dispute_id"] == "dp_1" and problem["problem"] == "figures differ from the journal"
    assert (problem["recorded"]["withdrawn"], problem["journal"]["withdrawn"]) == (90_00, 100_00)
