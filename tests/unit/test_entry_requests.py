"""Entry requests are validated before they reach the database."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ledger.accounts import AccountSpec, AccountType, Side, normalize_spec
from ledger.errors import IdempotencyConflict, InvalidAmount, InvalidRequest, UnbalancedEntry, UnknownCurrency
from ledger.journal import EntryRequest, credit, debit, dedupe_batch, normalize_request

USD_PAIR = (debit("assets:psp:stripe", 1000, "USD"), credit("liabilities:escrow:ms_1", 1000, "USD"))


def request(**changes: object) -> EntryRequest:
    fields: dict[str, object] = {"idempotency_key": "k1", "kind": "escrow.fund", "postings": USD_PAIR}
    fields.update(changes)
    return EntryRequest(**fields)  # type: ignore[arg-type]


def test_an_entry_must_balance_per_currency() -> None:
    with pytest.raises(UnbalancedEntry, match="USD: debits 1000, credits 999") as caught:
        normalize_request(request(postings=(debit("a", 1000, "USD"), credit("b", 999, "USD"))))
    assert caught.value.data == {"currency": "USD", "debits": 1000, "credits": 999}


def test_currencies_balance_on_their_own_not_together() -> None:
    crossed = (debit("a", 1000, "USD"), credit("b", 1000, "EUR"))
    with pytest.raises(UnbalancedEntry):
        normalize_request(request(postings=crossed))
    both = (*crossed, credit("c", 1000, "USD"), debit("d", 1000, "EUR"))
    assert len(normalize_request(request(postings=both)).postings) == 4


def test_an_entry_needs_two_postings() -> None:
    with pytest.raises(InvalidRequest, match="at least two"):
        normalize_request(request(postings=(debit("a", 1, "USD"),)))


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True, 2**63])
def test_posting_amounts_are_positive_integers(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        normalize_request(request(postings=(debit("a", amount, "USD"), credit("b", amount, "USD"))))  # type: ignore[arg-type]


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(UnknownCurrency):
        normalize_request(request(postings=(debit("a", 1, "ZZZ"), credit("b", 1, "ZZZ"))))


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, None])
def test_idempotency_key_is_required(key: object) -> None:
    with pytest.raises(InvalidRequest, match="idempotency key"):
        normalize_request(request(idempotency_key=key))


def test_floats_are_refused_in_metadata() -> None:
    with pytest.raises(InvalidRequest, match="float"):
        normalize_request(request(metadata={"rate": 0.2}))
    with pytest.raises(InvalidRequest, match="float"):
        normalize_request(request(metadata={"nested": [{"x": 1.0}]}))


def test_naive_effective_times_are_refused_and_aware_ones_become_utc() -> None:
    with pytest.raises(InvalidRequest, match="time zone"):
        normalize_request(request(effective_at=datetime(2026, 1, 1)))
    plus_two = timezone(timedelta(hours=2))
    normalized = normalize_request(request(effective_at=datetime(2026, 1, 1, 2, tzinfo=plus_two)))
    assert normalized.effective_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert normalized.effective_at.tzinfo == UTC


def test_fingerprint_ignores_posting_order_but_not_amounts() -> None:
    a = request()
    assert a.fingerprint() == request(postings=tuple(reversed(USD_PAIR))).fingerprint()
    assert (
        a.fingerprint() != request(postings=(debit("assets:psp:stripe", 1, "USD"), credit("x", 1, "USD"))).fingerprint()
    )
    assert a.fingerprint() != request(metadata={"note": "other"}).fingerprint()


def test_a_key_repeated_in_one_batch_is_deduplicated_or_conflicts() -> None:
    assert len(dedupe_batch([request(), request()])) == 1
    with pytest.raises(IdempotencyConflict):
        dedupe_batch([request(), request(metadata={"x": "y"})])


def test_account_specs_default_the_normal_side_by_type() -> None:
    assert normalize_spec(AccountSpec("assets:psp:stripe", AccountType.ASSET, "usd")).normal_side == Side.DEBIT
    assert normalize_spec(AccountSpec("revenue:fees:service", AccountType.REVENUE, "USD")).normal_side == Side.CREDIT
    assert normalize_spec(AccountSpec("expenses:psp_fees", AccountType.EXPENSE, "USD")).normal_side == Side.DEBIT


def test_an_account_with_a_floor_keeps_one_slot() -> None:
    with pytest.raises(InvalidRequest, match="one slot"):
        normalize_spec(AccountSpec("liabilities:escrow:ms_1", AccountType.LIABILITY, "USD", floor=0, slots=4))


@pytest.mark.parametrize("code", ["", "has space", ":leading", "trailing:", "a::b", "x" * 201])
def test_account_codes_are_validated(code: str) -> None:
    with pytest.raises(InvalidRequest, match="account code"):
        normalize_spec(AccountSpec(code, AccountType.ASSET, "USD"))
