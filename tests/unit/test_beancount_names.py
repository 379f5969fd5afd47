"""The Beancount export's pure rules (`ledger.beancount`): account names, amounts, the
period's days, and a file rendered from values alone that Beancount loads without error."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from beancount import loader
from beancount.core import account as beancount_account
from beancount.core import data

from ledger.accounts import Account, AccountType, Side
from ledger.beancount import (
    OPENING_BALANCES,
    account_names,
    amount,
    export,
    export_period,
    plain_name,
)
from ledger.errors import InvalidRequest
from ledger.journal import Entry, credit, debit

A, L, E, R, X = AccountType.ASSET, AccountType.LIABILITY, AccountType.EQUITY, AccountType.REVENUE, AccountType.EXPENSE


@pytest.mark.parametrize(
    ("code", "account_type", "name"),
    [
        ("assets:psp:simulated", A, "Assets:Psp:Simulated"),
        ("liabilities:freelancer:fr_1:pending", L, "Liabilities:Freelancer:Fr-1:Pending"),
        ("liabilities:escrow:ct_ab12:2026-11-30", L, "Liabilities:Escrow:Ct-ab12:2026-11-30"),
        ("revenue:fees:service", R, "Income:Fees:Service"),
        ("expenses:hourly_protection", X, "Expenses:Hourly-protection"),
        ("equity:capital", E, "Equity:Capital"),
        ("bank:x.y", A, "Assets:Bank:X-y"),  # no root word: every segment is kept
        ("assets:_hidden", A, "Assets:X-hidden"),  # a component cannot start with '-'
        ("assets", A, "Assets:Assets"),  # a root alone is no account
        ("liabilities:x", A, "Assets:Liabilities:X"),  # the type decides the root
    ],
)
def test_codes_map_onto_beancount_names_under_the_root_of_their_type(
    code: str, account_type: AccountType, name: str
) -> None:
    assert plain_name(code, account_type) == name
    assert account_names([(code, account_type)]) == {(code, account_type): name}
    assert beancount_account.is_valid(name)


def test_codes_that_would_share_a_name_each_get_a_suffix_of_their_own() -> None:
    codes = [("liabilities:freelancer:fr_1", L), ("liabilities:freelancer:fr-1", L), ("liabilities:other", L)]
    names = account_names(codes)
    assert names[codes[2]] == "Liabilities:Other"
    first, second = names[codes[0]], names[codes[1]]
    assert first != second
    assert first.startswith("Liabilities:Freelancer:Fr-1-") and len(first) == len("Liabilities:Freelancer:Fr-1-") + 8
    assert account_names(list(reversed(codes))) == names


def test_a_suffixed_name_that_is_another_codes_name_is_told_apart_again() -> None:
    clashing = [("assets:fr_1", A), ("assets:fr-1", A)]
    suffixed = account_names(clashing)[clashing[0]]
    impostor = ("assets:" + suffixed.removeprefix("Assets:").lower(), A)
    assert plain_name(*impostor) == suffixed
    names = account_names([*clashing, impostor])
    assert len(set(names.values())) == 3
    assert all(beancount_account.is_valid(n) for n in names.values())


def test_no_code_takes_the_opening_balances_account() -> None:
    code = ("equity:Opening-Balances", E)
    assert plain_name(*code) == OPENING_BALANCES
    assert account_names([code])[code] != OPENING_BALANCES
    assert account_names([code], reserved=())[code] == OPENING_BALANCES


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (100_000, "USD", "1000.00 USD"),
        (-5, "USD", "-0.05 USD"),
        (0, "USD", "0.00 USD"),
        (1500, "JPY", "1500 JPY"),
        (1, "BHD", "0.001 BHD"),
        (-1_234_567, "BHD", "-1234.567 BHD"),
        (2**63 - 1, "USD", "92233720368547758.07 USD"),
    ],
)
def test_amounts_are_exact_decimals_of_the_major_unit(minor: int, currency: str, text: str) -> None:
    assert amount(minor, currency) == text


# --- the period ------------------------------------------------------------------------------

TODAY = date(2026, 3, 1)


@pytest.mark.parametrize(
    ("period_to", "day"),
    [
        (datetime(2026, 1, 31, tzinfo=UTC), date(2026, 1, 31)),
        (datetime(2026, 1, 31, 0, 0, 0, 1, tzinfo=UTC), date(2026, 2, 1)),
        (datetime(2026, 1, 31, 12, tzinfo=UTC), date(2026, 2, 1)),
        (datetime(2026, 1, 31, 23, tzinfo=timezone(timedelta(hours=-2))), date(2026, 2, 2)),  # 01:00Z on Feb 1
    ],
)
def test_assertions_are_dated_the_first_midnight_at_or_after_to(period_to: datetime, day: date) -> None:
    period = export_period(None, period_to, today=TODAY)
    assert period.assertion_day(None) == day
    assert period.assertion_day(date(2026, 5, 1)) == day  # with an end, the last entry does not matter
    assert period.balances_before(day) == period_to


def test_without_an_end_the_assertions_follow_the_last_entry_or_the_start_or_today() -> None:
    start = datetime(2026, 1, 10, 15, tzinfo=UTC)
    assert export_period(start, None, today=TODAY).assertion_day(date(2026, 1, 20)) == date(2026, 1, 21)
    assert export_period(start, None, today=TODAY).assertion_day(None) == date(2026, 1, 11)
    assert export_period(None, None, today=TODAY).assertion_day(None) == date(2026, 3, 2)
    assert export_period(start, None, today=TODAY).opening_day == date(2026, 1, 10)
    assert export_period(None, None, today=TODAY).balances_before(date(2026, 3, 2)) == datetime(2026, 3, 2, tzinfo=UTC)


def test_a_period_must_end_after_it_starts_and_name_its_offsets() -> None:
    at = datetime(2026, 1, 31, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="before or when it starts"):
        export_period(at, at, today=TODAY)
    with pytest.raises(InvalidRequest):
        export_period(datetime(2026, 1, 1), None, today=TODAY)
    assert export_period(at, None, today=TODAY).describe() == "[2026-01-31T00:00:00Z, end)"
    assert export_period(None, at, today=TODAY).describe() == "[beginning, 2026-01-31T00:00:00Z)"


# --- a file from values --------------------------------------------------------------------------


def test_a_file_rendered_from_values_loads_without_error_with_its_metadata() -> None:
    """References whose keys Beancount would not take as metadata keys are renamed, not lost;
    quotes, backslashes and line breaks in values survive."""
    accounts = [
        Account(1, "assets:bank", A, "USD", Side.DEBIT, None, 1),
        Account(2, "revenue:sales", R, "USD", Side.CREDIT, None, 1),
    ]
    at = datetime(2026, 1, 31, 12, tzinfo=UTC)
    entry = Entry(
        id=7,
        idempotency_key="k",
        kind='test "sale"',
        effective_at=at,
        recorded_at=at,
        postings=(debit("assets:bank", 1_50, "USD"), credit("revenue:sales", 1_50, "USD")),
        refs={"milestone": "ms_1", "Weird key": 'a"b\\c\nd', "x": "short"},
    )
    period = export_period(None, None, today=TODAY)
    nets = {("assets:bank", "USD"): 1_50, ("revenue:sales", "USD"): -1_50}
    text = "".join(export(period, accounts, {}, [entry], lambda _: nets))
    directives, errors, options = loader.load_string(text)
    assert errors == []
    assert options["operating_currency"] == ["USD"]
    [transaction] = [d for d in directives if isinstance(d, data.Transaction)]
    assert transaction.narration == 'test "sale"'
    assert transaction.date == date(2026, 1, 31)
    refs = {k: v for k, v in transaction.meta.items() if k.startswith("ref_")}
    assert refs["ref_milestone"] == "ms_1"
    assert [v for k, v in refs.items() if k.startswith("ref_Weird_key_")] == ['a"b\\c\nd']
    assert len(refs) == 3
    balances = {(d.account, d.date): str(d.amount) for d in directives if isinstance(d, data.Balance)}
    assert balances == {("Assets:Bank", date(2026, 2, 1)): "1.50 USD", ("Income:Sales", date(2026, 2, 1)): "-1.50 USD"}


def test_the_renderer_loads_no_sqlalchemy_and_no_use_case() -> None:
    code = "import sys, ledger.beancount\nprint('\\n'.join(sys.modules))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert "ledger.beancount" in loaded
    assert not {m for m in loaded if m.split(".")[0] == "sqlalchemy" or m.startswith(("ledger.db", "ledger.ports"))}
