"""The Beancount export (`Finance.export_beancount`, `ledger.beancount`) on SQLite and
PostgreSQL: Beancount's own checker accepts it, and its balances are the ledger's to the
minor unit, over the whole journal and over a period in the middle of it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from beancount.core import data

import ledger.beancount as export_module
from ledger import demo
from ledger.accounts import AccountSpec, AccountType
from ledger.bootstrap import Services
from ledger.clock import FixedClock
from ledger.errors import InvalidRequest
from ledger.gateway.simulated import SimulatedGateway
from ledger.invoices.service import Finance
from ledger.journal import EntryRequest, credit, debit
from ledger.service import Ledger
from tests.beancount_files import (
    bean_check,
    chart_only,
    codes_of,
    effective_ids,
    file_balances,
    ledger_balances,
    listed_entry_ids,
    load,
    write_export,
)


@pytest.fixture
def marketplace(book: Ledger, clock: FixedClock) -> Services:
    """The demo marketplace, then three weeks on: the timers release the milestone under
    review, refund the one whose refund request went unanswered and make releases
    available. Entries are effective at 09:00 UTC on January 5 (the demo), 10 (available),
    12 (refunded), 19 (released), 24 (available) and 26 (the refund settled), 2026."""
    services = Services.over(book, SimulatedGateway())
    demo.fill(services)
    clock.advance(timedelta(days=21))
    services.escrow.orders.tick()
    return services


# --- the whole journal --------------------------------------------------------------------


def test_the_demo_marketplace_exports_to_a_file_bean_check_accepts(marketplace: Services, tmp_path: Path) -> None:
    path = write_export(marketplace.finance, tmp_path / "ledger.beancount")
    bean_check(path)
    text = path.read_text()
    assert text.startswith("; ")
    assert 'option "operating_currency" "EUR"\noption "operating_currency" "USD"\n' in text
    assert "; Period: [beginning, end)" in text


def test_the_exported_balances_are_the_ledgers_to_the_minor_unit(marketplace: Services, tmp_path: Path) -> None:
    book = marketplace.book
    directives = load(write_export(marketplace.finance, tmp_path / "ledger.beancount"))
    assert file_balances(directives) == ledger_balances(book)
    assert listed_entry_ids(directives) == effective_ids(book, None, None)
    opens = [d for d in directives if isinstance(d, data.Open)]
    first_day = min(d.date for d in directives if isinstance(d, data.Transaction))
    assert {d.date for d in opens} == {first_day}
    assert {d.meta["code"] for d in opens} == {code for code, _ in ledger_balances(book)}
    # Without an end, the assertions are dated the day after the last entry.
    [day] = {d.date for d in directives if isinstance(d, data.Balance)}
    assert day == max(d.date for d in directives if isinstance(d, data.Transaction)) + timedelta(days=1)


def test_each_entry_is_one_transaction_with_its_kind_id_and_references(marketplace: Services, tmp_path: Path) -> None:
    book = marketplace.book
    directives = load(write_export(marketplace.finance, tmp_path / "ledger.beancount"))
    transactions = {int(d.meta["entry_id"]): d for d in directives if isinstance(d, data.Transaction)}
    entry = book.journal(limit=1).entries[0]
    listed = transactions[entry.id]
    assert (listed.date, listed.narration, listed.meta["kind"]) == (entry.effective_at.date(), entry.kind, entry.kind)
    assert {k.removeprefix("ref_"): v for k, v in listed.meta.items() if k.startswith("ref_")} == dict(entry.refs)
    assert len(listed.postings) == len(entry.postings)


# --- a period in the middle ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("period_from", "period_to"),
    [
        (datetime(2026, 1, 8, tzinfo=UTC), datetime(2026, 1, 20, tzinfo=UTC)),
        (datetime(2026, 1, 10, 9, 0, 0, 1, tzinfo=UTC), datetime(2026, 1, 19, 9, 0, 1, tzinfo=UTC)),
        (datetime(2026, 1, 10, 9, tzinfo=UTC), datetime(2026, 1, 19, 9, tzinfo=UTC)),
        (datetime(2026, 1, 12, 9, 0, 0, 1, tzinfo=UTC), None),
        (None, datetime(2026, 1, 12, 9, tzinfo=UTC)),
    ],
    ids=["dates", "times", "instants-of-entries", "from-only", "to-only"],
)
def test_a_period_in_the_middle_opens_with_the_balances_at_its_start_and_asserts_those_at_its_end(
    marketplace: Services, tmp_path: Path, period_from: datetime | None, period_to: datetime | None
) -> None:
    book = marketplace.book
    path = write_export(marketplace.finance, tmp_path / "period.beancount", period_from, period_to)
    bean_check(path)
    directives = load(path)
    balances = file_balances(directives)
    assert chart_only(balances) == ledger_balances(book, as_of=period_to)
    assert listed_entry_ids(directives) == effective_ids(book, period_from, period_to)
    assert listed_entry_ids(directives)  # the period is not empty
    if period_from is not None:
        # The opening balances are the ledger's as of `from`, against an equity account at zero.
        opening = [d for d in directives if isinstance(d, data.Transaction) and "entry_id" not in d.meta]
        assert {d.date for d in opening} == {period_from.date()}
        codes = codes_of(directives)
        at_start = {(codes[p.account], p.units.currency): p.units.number for d in opening for p in d.postings}
        assert chart_only(at_start) == {k: v for k, v in ledger_balances(book, as_of=period_from).items() if v != 0}
        assert {v for k, v in balances.items() if k[0] == export_module.OPENING_BALANCES} == {Decimal(0)}
        assert min(d.date for d in directives if isinstance(d, data.Transaction)) == period_from.date()
        assert {d.date for d in directives if isinstance(d, data.Open)} == {period_from.date()}


def test_entries_after_the_period_are_left_out_of_its_balances(marketplace: Services, tmp_path: Path) -> None:
    """The assertions check the ledger's balances as of `to`, not its balances now."""
    period_to = datetime(2026, 1, 8, tzinfo=UTC)
    book = marketplace.book
    directives = load(write_export(marketplace.finance, tmp_path / "early.beancount", None, period_to))
    assert file_balances(directives) == ledger_balances(book, as_of=period_to)
    assert file_balances(directives) != ledger_balances(book)


# --- days and instants ---------------------------------------------------------------------


@pytest.fixture
def noon_entry(book: Ledger) -> Ledger:
    """One entry at 2026-01-31T12:00Z, one at 00:00 that day, and one the day before."""
    book.open_account(AccountSpec("assets:bank", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("liabilities:wallet:w_1", AccountType.LIABILITY, "USD"))
    for key, at, amount in [
        ("before", datetime(2026, 1, 30, 23, 59, 59, tzinfo=UTC), 1_00),
        ("midnight", datetime(2026, 1, 31, tzinfo=UTC), 10_00),
        ("noon", datetime(2026, 1, 31, 12, tzinfo=UTC), 100_00),
    ]:
        legs = (debit("assets:bank", amount, "USD"), credit("liabilities:wallet:w_1", amount, "USD"))
        book.post(EntryRequest(key, "test.deposit", legs, effective_at=at))
    return book


def assertions(directives: list[data.Directive]) -> dict[tuple[str, date], Decimal]:
    return {(d.account, d.date): d.amount.number for d in directives if isinstance(d, data.Balance)}


@pytest.mark.parametrize(
    ("period_to", "bank", "day"),
    [
        (datetime(2026, 1, 31, tzinfo=UTC), "1.00", date(2026, 1, 31)),  # noon and midnight are on or after `to`
        (datetime(2026, 1, 31, 0, 0, 0, 1, tzinfo=UTC), "11.00", date(2026, 2, 1)),
        (datetime(2026, 1, 31, 12, tzinfo=UTC), "11.00", date(2026, 2, 1)),  # half-open: noon is left out
        (datetime(2026, 1, 31, 12, 0, 1, tzinfo=UTC), "111.00", date(2026, 2, 1)),
        (datetime(2026, 2, 1, tzinfo=UTC), "111.00", date(2026, 2, 1)),
    ],
)
def test_assertions_are_dated_the_first_midnight_at_or_after_to_and_count_what_is_before_to(
    noon_entry: Ledger, tmp_path: Path, period_to: datetime, bank: str, day: date
) -> None:
    path = write_export(Finance(noon_entry), tmp_path / "cut.beancount", None, period_to)
    bean_check(path)
    directives = load(path)
    assert assertions(directives)[("Assets:Bank", day)] == Decimal(bank)
    assert file_balances(directives) == ledger_balances(noon_entry, as_of=period_to)


@pytest.mark.parametrize(
    ("period_from", "opening", "listed"),
    [
        (datetime(2026, 1, 31, tzinfo=UTC), "1.00", {"midnight", "noon"}),
        (datetime(2026, 1, 31, 12, tzinfo=UTC), "11.00", {"noon"}),  # `from` is in the period
        (datetime(2026, 1, 31, 12, 0, 1, tzinfo=UTC), "111.00", set()),
    ],
)
def test_the_opening_balances_count_what_is_before_from_and_are_dated_its_day(
    noon_entry: Ledger, tmp_path: Path, period_from: datetime, opening: str, listed: set[str]
) -> None:
    path = write_export(Finance(noon_entry), tmp_path / "from.beancount", period_from, None)
    bean_check(path)
    directives = load(path)
    transactions = [d for d in directives if isinstance(d, data.Transaction)]
    [opened] = [d for d in transactions if "entry_id" not in d.meta]
    assert opened.date == date(2026, 1, 31)
    assert {p.account: p.units.number for p in opened.postings}["Assets:Bank"] == Decimal(opening)
    keys = {entry.id: entry.idempotency_key for entry in noon_entry.journal().entries}
    assert {keys[n] for n in listed_entry_ids(directives)} == listed
    assert file_balances(directives)[("assets:bank", "USD")] == Decimal("111.00")


def test_a_period_that_ends_before_it_starts_is_refused_before_anything_is_read(book: Ledger) -> None:
    finance = Finance(book)
    at = datetime(2026, 1, 31, tzinfo=UTC)
    with pytest.raises(InvalidRequest):
        finance.export_beancount(at, at)
    with pytest.raises(InvalidRequest):
        finance.export_beancount(None, datetime(2026, 1, 31))  # no offset: which midnight?


def test_an_empty_ledger_exports_an_empty_file_bean_check_accepts(book: Ledger, tmp_path: Path) -> None:
    path = write_export(Finance(book), tmp_path / "empty.beancount")
    bean_check(path)
    assert [d for d in load(path) if not isinstance(d, data.Commodity)] == []


# --- amounts, names and one snapshot ----------------------------------------------------------


def test_amounts_are_exact_in_each_currencys_minor_unit(book: Ledger, tmp_path: Path) -> None:
    """JPY has no decimals, BHD three; the largest amount a posting may hold is exact too."""
    for currency in ("USD", "JPY", "BHD"):
        book.open_account(AccountSpec("assets:bank", AccountType.ASSET, currency))
        book.open_account(AccountSpec("revenue:sales", AccountType.REVENUE, currency))
    for currency, amount in [("USD", 1), ("JPY", 1), ("BHD", 1), ("BHD", 1_234_567), ("USD", 2**62)]:
        legs = (debit("assets:bank", amount, currency), credit("revenue:sales", amount, currency))
        book.post(EntryRequest(f"{currency}-{amount}", "test.sale", legs))
    path = write_export(Finance(book), tmp_path / "amounts.beancount")
    bean_check(path)
    text = path.read_text()
    for rendered in ("0.01 USD", "1 JPY", "0.001 BHD", "1234.567 BHD", "46116860184273879.04 USD"):
        assert f"  {rendered}\n" in text
    assert "-1234.567 BHD" in text
    assert file_balances(load(path)) == ledger_balances(book)


def test_codes_that_would_share_a_name_get_names_of_their_own(book: Ledger, tmp_path: Path) -> None:
    """`fr_1` and `fr-1` would both be `Fr-1`: each gets a name of its own. A code and its
    sub-code stay parent and child, and the parent's assertion counts both, as Beancount's
    `balance` does; every assertion is exact (tolerance 0)."""
    codes = [
        "liabilities:freelancer:fr_1",
        "liabilities:freelancer:fr-1",
        "liabilities:freelancer:fr_2",
        "liabilities:freelancer:fr_2:pending",
    ]
    book.open_account(AccountSpec("assets:bank", AccountType.ASSET, "USD"))
    for n, code in enumerate(codes):
        book.open_account(AccountSpec(code, AccountType.LIABILITY, "USD"))
        legs = (debit("assets:bank", 10 ** (n + 2), "USD"), credit(code, 10 ** (n + 2), "USD"))
        book.post(EntryRequest(f"deposit-{n}", "test.deposit", legs))
    path = write_export(Finance(book), tmp_path / "names.beancount")
    bean_check(path)
    directives = load(path)
    names = {d.meta["code"]: d.account for d in directives if isinstance(d, data.Open)}
    assert len(set(names.values())) == len(names) == 5
    assert names["liabilities:freelancer:fr_2:pending"] == names["liabilities:freelancer:fr_2"] + ":Pending"
    balances = {d.account: d for d in directives if isinstance(d, data.Balance)}
    parent = balances[names["liabilities:freelancer:fr_2"]]
    assert parent.amount.number == Decimal("-1100.00")  # its own 100.00 and its child's 1000.00
    assert {d.tolerance for d in balances.values()} == {Decimal(0)}
    assert file_balances(directives) == ledger_balances(book)


def test_the_export_reads_one_snapshot_while_entries_are_posted(
    book: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry posted while the file is being written is in neither its transactions nor
    its assertions (read at the end, in the same snapshot), so the file still checks."""
    monkeypatch.setattr(export_module, "CHUNK_CHARS", 1)  # a piece per directive
    book.open_account(AccountSpec("assets:bank", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("revenue:sales", AccountType.REVENUE, "USD"))

    def sale(key: str, amount: int) -> None:
        book.post(
            EntryRequest(
                key, "test.sale", (debit("assets:bank", amount, "USD"), credit("revenue:sales", amount, "USD"))
            )
        )

    for n in range(5):
        sale(f"before-{n}", 1_00)
    pieces = Finance(book).export_beancount(None, None)
    written = [next(pieces), next(pieces)]
    sale("during", 1_000_00)
    written.extend(pieces)
    assert len(written) > 10
    path = tmp_path / "snapshot.beancount"
    path.write_text("".join(written))
    bean_check(path)
    assert file_balances(load(path))[("assets:bank", "USD")] == Decimal("5.00")
    assert book.balance("assets:bank", "USD") == 1_005_00
