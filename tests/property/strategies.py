"""Shared Hypothesis strategies for the ledger's property tests.

Amounts are always integers of minor units (never floats), and every entry this
module builds balances per currency on its own, so a test that wants an
unbalanced or malformed entry has to say so explicitly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from hypothesis import strategies as st

from ledger.accounts import AccountSpec, AccountType, Side
from ledger.journal import EntryRequest, Posting

#: Two decimal currencies and one without minor units, so exponent bugs would show.
CURRENCIES: tuple[str, ...] = ("USD", "EUR", "JPY")

#: Account types the marketplace uses (equity is left to its own tests).
ACCOUNT_TYPES: tuple[AccountType, ...] = (
    AccountType.ASSET,
    AccountType.LIABILITY,
    AccountType.REVENUE,
    AccountType.EXPENSE,
)

_PREFIX = {
    AccountType.ASSET: "assets",
    AccountType.LIABILITY: "liabilities",
    AccountType.REVENUE: "revenue",
    AccountType.EXPENSE: "expenses",
    AccountType.EQUITY: "equity",
}

#: A small pool of names, so the same code comes up again (a reopen, or the same
#: code in another currency) often enough to be tested.
_NAMES = ("psp:stripe", "escrow:ms_1", "escrow:ms_2", "freelancer:f_1:available", "fees:service", "psp_fees")

#: Most legs of one generated entry.
MAX_LEGS = 6

REFS: tuple[Mapping[str, str], ...] = ({}, {"milestone": "ms_1"}, {"contract": "c_7", "stripe": "pi_123"})
METADATA: tuple[Mapping[str, Any], ...] = ({}, {"note": "property test"}, {"attempt": 2, "tags": ["a", "b"]})
KINDS = ("escrow.fund", "escrow.release", "escrow.refund", "fee.charge", "payout.request")

AccountKey = tuple[str, str]  # (code, currency), how the ledger names an account


def currencies() -> st.SearchStrategy[str]:
    return st.sampled_from(CURRENCIES)


@lru_cache(maxsize=8)
def account_codes(account_type: AccountType) -> st.SearchStrategy[str]:
    return st.sampled_from(tuple(f"{_PREFIX[account_type]}:{name}" for name in _NAMES))


@st.composite
def account_specs(draw: st.DrawFn) -> AccountSpec:
    """An account as the marketplace opens them: a plain one, one with a floor
    (0, or an overdraft limit below 0), or a hot account spread over several slots.

    Positive floors are left out: a new account starts at 0, already below such a
    floor, which the ledger does not promise to handle.
    """
    account_type = draw(st.sampled_from(ACCOUNT_TYPES))
    shape = draw(st.sampled_from(("plain", "floored", "hot")))
    floor = None
    slots = 1
    if shape == "floored":
        floor = draw(st.sampled_from((0, 0, -500)))
    elif shape == "hot":
        slots = draw(st.integers(min_value=2, max_value=8))
    return AccountSpec(
        code=draw(account_codes(account_type)),
        type=account_type,
        currency=draw(currencies()),
        floor=floor,
        slots=slots,
    )


#: Positive minor units: mostly small, so floors and reversals often bite.
AMOUNTS: st.SearchStrategy[int] = st.one_of(
    st.integers(min_value=1, max_value=1_000), st.integers(min_value=1, max_value=10**9)
)


# The strategies below are built once per distinct argument (`lru_cache`, so the
# arguments are tuples): a state machine draws thousands of entries over the same
# few accounts, and building and validating fresh strategy objects for each draw
# would cost more than the draws themselves.


@lru_cache(maxsize=1024)
def orderings(count: int) -> st.SearchStrategy[list[int]]:
    """An order in which to put `count` things."""
    return st.permutations(tuple(range(count)))


@lru_cache(maxsize=1024)
def balanced_legs(accounts: tuple[str, ...], currency: str, count: int) -> st.SearchStrategy[list[Posting]]:
    """`count` (>= 2) postings in one currency whose debits equal their credits.

    Both sides get independent positive amounts; the lighter side's last leg then
    takes the difference, which keeps every amount positive and integral.
    """
    legs = st.lists(st.tuples(st.sampled_from(accounts), AMOUNTS), min_size=count, max_size=count)
    return st.tuples(st.integers(min_value=1, max_value=count - 1), legs).map(lambda drawn: _balance(currency, *drawn))


def _balance(currency: str, debits: int, legs: list[tuple[str, int]]) -> list[Posting]:
    values = [value for _, value in legs]
    difference = sum(values[:debits]) - sum(values[debits:])
    if difference > 0:
        values[-1] += difference  # the last credit
    elif difference < 0:
        values[debits - 1] -= difference  # the last debit
    sides = [Side.DEBIT] * debits + [Side.CREDIT] * (len(legs) - debits)
    return [Posting(code, currency, side, value) for (code, _), side, value in zip(legs, sides, values, strict=True)]


@lru_cache(maxsize=1024)
def balanced_postings(
    accounts: tuple[AccountKey, ...], max_legs: int = MAX_LEGS
) -> st.SearchStrategy[tuple[Posting, ...]]:
    """2..`max_legs` postings over `accounts`, in one or two currencies, each
    currency balanced on its own, legs of both currencies interleaved.

    The same account may appear on several legs (even on both sides): the ledger
    must cope with that, and it makes the order of legs matter for floors.
    """
    by_currency: dict[str, list[str]] = defaultdict(list)
    for code, currency in accounts:
        by_currency[currency].append(code)
    codes = {currency: tuple(sorted(found)) for currency, found in by_currency.items()}

    @st.composite
    def draw_postings(draw: st.DrawFn) -> tuple[Posting, ...]:
        chosen = [draw(st.sampled_from(tuple(sorted(codes))))]
        if len(codes) >= 2 and max_legs >= 4 and draw(st.booleans()):
            chosen.append(draw(st.sampled_from(tuple(sorted(set(codes) - {chosen[0]})))))
        legs: list[Posting] = []
        room = max_legs
        for index, currency in enumerate(chosen):
            left_for_others = 2 * (len(chosen) - index - 1)
            count = draw(st.integers(min_value=2, max_value=room - left_for_others))
            room -= count
            legs.extend(draw(balanced_legs(codes[currency], currency, count)))
        return tuple(legs[i] for i in draw(orderings(len(legs))))

    return draw_postings()


EntryParts = tuple[str, tuple[Posting, ...], Mapping[str, str], Mapping[str, Any]]  # kind, postings, refs, metadata


@lru_cache(maxsize=1024)
def _entry_parts(accounts: tuple[AccountKey, ...]) -> st.SearchStrategy[EntryParts]:
    return st.tuples(
        st.sampled_from(KINDS), balanced_postings(accounts), st.sampled_from(REFS), st.sampled_from(METADATA)
    )


def entry_requests(accounts: Sequence[AccountKey], idempotency_key: str) -> st.SearchStrategy[EntryRequest]:
    """A balanced entry request over `accounts` under the given key."""

    def request(parts: EntryParts) -> EntryRequest:
        kind, postings, refs, metadata = parts
        return EntryRequest(idempotency_key, kind, postings, refs=refs, metadata=metadata)

    return _entry_parts(tuple(sorted(accounts))).map(request)


def same_request(request: EntryRequest) -> st.SearchStrategy[EntryRequest]:
    """The same request again, its postings possibly in another order (which must
    not matter: a client retrying may rebuild its request from a set)."""
    legs = request.postings
    return orderings(len(legs)).map(lambda order: replace(request, postings=tuple(legs[i] for i in order)))


def _doubled(request: EntryRequest, currency: str) -> EntryRequest:
    legs = tuple(replace(p, amount=p.amount * 2) if p.currency == currency else p for p in request.postings)
    return replace(request, postings=legs)


def _flipped(request: EntryRequest) -> EntryRequest:
    opposite = {Side.DEBIT: Side.CREDIT, Side.CREDIT: Side.DEBIT}
    return replace(request, postings=tuple(replace(p, side=opposite[p.side]) for p in request.postings))


def different_request(request: EntryRequest) -> st.SearchStrategy[EntryRequest]:
    """A still well-formed, balanced request under the same key that asks for
    something else: another kind, other amounts, the opposite direction, other metadata."""
    changes = [
        replace(request, kind=request.kind + ".retry"),
        *(_doubled(request, currency) for currency in sorted({p.currency for p in request.postings})),
        _flipped(request),
        replace(request, metadata={**request.metadata, "changed": True}),
    ]
    # Dropped, not filtered at draw time (a filter that cannot pass makes Hypothesis
    # discard the whole example): flipping an entry that debits and credits one
    # account the same amount gives the same request back.
    return st.sampled_from([c for c in changes if c.fingerprint() != request.fingerprint()])
