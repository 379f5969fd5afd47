"""The contract of the document and API stores, and of transactions, on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.clock import FixedClock
from ledger.invoices.documents import DocumentKind, IssuedDocument, Party, UnknownDocument
from ledger.ports.unit_of_work import Transactions, UnitOfWork
from tests.contracts.rows import OWED, an_entry, document, open_books, request

INVOICE = DocumentKind.CLIENT_INVOICE

# --- documents ---------------------------------------------------------------------------------


def test_numbers_are_gapless_per_series_and_year(db: Transactions) -> None:
    def take(kind: DocumentKind, year: int) -> int:
        return db.transaction(lambda uow: uow.documents.next_sequence(kind, year))

    assert [take(INVOICE, 2026), take(INVOICE, 2026), take(DocumentKind.FEE_INVOICE, 2026), take(INVOICE, 2027)] == [
        1,
        2,
        1,
        1,
    ]

    def rolled_back(uow: UnitOfWork) -> None:
        uow.documents.next_sequence(INVOICE, 2026)
        raise RuntimeError("the issue failed")

    with pytest.raises(RuntimeError):
        db.transaction(rolled_back)
    assert take(INVOICE, 2026) == 3


def test_several_series_are_numbered_at_once_in_the_order_asked(db: Transactions) -> None:
    fee = DocumentKind.FEE_INVOICE
    db.transaction(lambda uow: uow.documents.next_sequence(fee, 2026))
    assert db.transaction(lambda uow: uow.documents.next_sequences([INVOICE, fee], 2026)) == [1, 2]
    assert db.transaction(lambda uow: uow.documents.next_sequences([fee, INVOICE], 2026)) == [3, 2]
    assert db.transaction(lambda uow: uow.documents.next_sequence(INVOICE, 2026)) == 3
    with pytest.raises(ValueError):
        db.transaction(lambda uow: uow.documents.next_sequences([INVOICE, INVOICE], 2026))


def test_documents_are_added_together(db: Transactions, clock: FixedClock) -> None:
    def work(uow: UnitOfWork) -> None:
        entry_id = an_entry(uow, "doc-together", clock.now())
        uow.documents.add_all(
            [IssuedDocument(document(clock.now(), n), "pay_1", None, entry_id, OWED.code, "credit") for n in (1, 2)]
        )

    db.transaction(work)
    found = db.transaction(lambda uow: uow.documents.listing(party_id=None, limit=10))
    assert [d.sequence for d in found] == [2, 1]


def _issue(
    db: Transactions, clock: FixedClock, *numbers: int, recipient: str = "cl_1", payment: str | None = None
) -> None:
    def work(uow: UnitOfWork) -> None:
        entry_id = an_entry(uow, f"doc-{numbers[0]}-{recipient}", clock.now())
        for n in numbers:
            uow.documents.add(
                document(clock.now(), n, recipient=recipient),
                payment_id=payment,
                corrects_id=None,
                entry_id=entry_id,
                measured_account=OWED.code,
                measured_side="credit",
            )

    db.transaction(work)


def test_a_document_is_found_by_id_number_and_payment(db: Transactions, clock: FixedClock) -> None:
    _issue(db, clock, 1, payment="pay_1")
    issued = document(clock.now(), 1)
    assert db.transaction(lambda uow: uow.documents.get(issued.id)) == issued
    assert db.transaction(lambda uow: uow.documents.get(issued.number)) == issued
    assert db.transaction(lambda uow: uow.documents.for_payment("pay_1", INVOICE)) == issued
    assert db.transaction(lambda uow: uow.documents.for_payment("pay_1", DocumentKind.CREDIT_NOTE)) is None
    with pytest.raises(UnknownDocument):
        db.transaction(lambda uow: uow.documents.get("INV-1999-000001"))


def test_a_document_number_is_issued_once(db: Transactions, clock: FixedClock, duplicate: type[Exception]) -> None:
    _issue(db, clock, 1)
    with pytest.raises(duplicate):
        _issue(db, clock, 1, recipient="cl_2")


def test_documents_are_listed_newest_first_a_page_at_a_time(db: Transactions, clock: FixedClock) -> None:
    _issue(db, clock, 1, 2)
    clock.advance(timedelta(hours=1))
    _issue(db, clock, 3, recipient="cl_2")

    def listing(party: str | None, after: str | None = None, limit: int = 10) -> list[int]:
        found = db.transaction(lambda uow: uow.documents.listing(party_id=party, limit=limit, starting_after=after))
        return [d.sequence for d in found]

    assert listing(None) == [3, 2, 1]
    assert listing(None, limit=2) == [3, 2]
    assert listing(None, after=document(clock.now(), 2).number) == [1]
    assert listing("cl_1") == [2, 1] and listing("fr_1") == [3, 2, 1] and listing("cl_9") == []


def test_a_party_is_saved_and_replaced(db: Transactions, clock: FixedClock) -> None:
    first = Party("cl_1", "Acme", None, None, "DE", None, None, clock.now())
    db.transaction(lambda uow: uow.documents.save_party(first))
    second = Party("cl_1", "Acme GmbH", "Acme GmbH", "Berlin", "DE", "DE1", "cus_1", clock.now())
    db.transaction(lambda uow: uow.documents.save_party(second))
    assert db.transaction(lambda uow: uow.documents.party("cl_1")) == second
    assert db.transaction(lambda uow: uow.documents.party("cl_2")) is None
    assert db.transaction(lambda uow: uow.documents.parties(["cl_2", "cl_1"])) == {"cl_1": second}


# --- API keys and idempotent requests ------------------------------------------------------------


def test_api_keys_are_found_by_hash_until_revoked(db: Transactions, clock: FixedClock) -> None:
    db.transaction(lambda uow: uow.api.add_key("key_1", "finance", "h1"))
    found = db.transaction(lambda uow: uow.api.key_by_hash("h1"))
    assert found is not None and (found.id, found.role, found.created_at, found.revoked_at) == (
        "key_1",
        "finance",
        clock.now(),
        None,
    )
    assert db.transaction(lambda uow: [uow.api.revoke("key_1"), uow.api.revoke("key_1"), uow.api.revoke("none")]) == [
        True,
        False,
        False,
    ]
    assert db.transaction(lambda uow: uow.api.key_by_hash("h1")) is None
    [revoked] = db.transaction(lambda uow: uow.api.all_keys())
    assert revoked.revoked_at == clock.now()


def test_an_idempotency_key_is_claimed_once_and_taken_over_after_its_lease(db: Transactions, clock: FixedClock) -> None:
    now = clock.now()
    lease = timedelta(minutes=1)

    def claim(body: str, at: timedelta = timedelta()) -> object:
        return db.transaction(
            lambda uow: uow.api.claim_request("k", "key_1", "POST", "/x", body, now=now + at, lease=lease)
        )

    assert claim("b") is None
    held = claim("b")
    assert held is not None and getattr(held, "status", "?") is None  # in progress
    assert claim("other", timedelta(minutes=2)) is not None  # another request never takes it over
    assert claim("b", timedelta(minutes=2)) is None  # the abandoned claim is taken over
    assert db.transaction(lambda uow: uow.api.finish_request("k", "key_1", now, 200, "application/json", "{}")) is False
    claimed_at = now + timedelta(minutes=2)
    assert db.transaction(lambda uow: uow.api.finish_request("k", "key_1", claimed_at, 201, "application/json", "{}"))
    finished = claim("b", timedelta(minutes=10))
    assert finished is not None and getattr(finished, "status", None) == 201


def test_released_and_pruned_requests_are_forgotten(db: Transactions, clock: FixedClock) -> None:
    now = clock.now()
    lease = timedelta(minutes=1)

    def claim(key: str) -> object:
        return db.transaction(lambda uow: uow.api.claim_request(key, "key_1", "POST", "/x", "b", now=now, lease=lease))

    claim("a"), claim("b"), claim("c")
    assert db.transaction(lambda uow: uow.api.release_request("a", "key_1", now)) is True
    assert db.transaction(lambda uow: uow.api.release_request("a", "key_1", now)) is False
    db.transaction(lambda uow: uow.api.finish_request("b", "key_1", now, 200, "text/plain", "ok"))
    later = now + timedelta(days=2)
    assert db.transaction(lambda uow: uow.api.prune_requests(finished_before=later, abandoned_before=later)) == (1, 1)
    assert claim("a") is None and claim("b") is None and claim("c") is None


# --- transactions and the audit -------------------------------------------------------------------


def test_a_transaction_that_raises_leaves_nothing_and_runs_no_after_commit(db: Transactions, clock: FixedClock) -> None:
    ran: list[str] = []

    def failing(uow: UnitOfWork) -> None:
        open_books(uow)
        uow.journal.write([request("a")], recorded_at=clock.now())
        uow.after_commit(lambda: ran.append("failing"))
        raise RuntimeError("the use case failed")

    with pytest.raises(RuntimeError):
        db.transaction(failing)
    assert ran == []
    assert db.transaction(lambda uow: (list(uow.accounts.all()), uow.journal.find_by_keys(["a"]))) == ([], {})

    def succeeding(uow: UnitOfWork) -> None:
        uow.after_commit(
            lambda: ran.append(f"committed {len(db.transaction(lambda later: list(later.accounts.all())))}")
        )
        open_books(uow)

    db.transaction(succeeding)
    assert ran == ["committed 3"]  # the callback's own transaction sees what was committed


def test_the_audits_journal_reads_agree_with_the_stores(db: Transactions, clock: FixedClock) -> None:
    def work(uow: UnitOfWork) -> None:
        open_books(uow)
        uow.journal.write([request("a", 100), request("b", 40)], recorded_at=clock.now())

    db.transaction(work)

    def read(uow: UnitOfWork) -> tuple[object, ...]:
        audit = uow.audit
        return (
            [(t.code, t.stored, t.from_postings, t.floor) for t in audit.account_totals()],
            [(t.currency, t.debits, t.credits) for t in audit.posting_totals_by_currency()],
            [(n.currency, n.debits_minus_credits) for n in audit.stored_balances_by_currency()],
            list(audit.unbalanced_entries()),
            list(audit.entries_with_fewer_postings(than=2)),
            list(audit.repeated_idempotency_keys()),
            list(audit.repeated_reversals()),
            dict(audit.balances_of(OWED.code)),
        )

    assert db.transaction(read, read_only=True) == (
        [("assets:cash", 140, 140, None), ("liabilities:owed", 140, 140, 0), ("liabilities:other", 0, 0, 0)],
        [("USD", 140, 140)],
        [("USD", 0)],
        [],
        [],
        [],
        [],
        {"USD": 140},
    )
