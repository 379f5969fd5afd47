"""The laws of statements, checked by Hypothesis on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from ledger import AccountSpec, AccountType, EntryRequest, FixedClock, Ledger, credit, debit
from ledger.invoices.service import Finance

movements = st.lists(
    st.tuples(st.integers(min_value=0, max_value=20 * 24), st.booleans(), st.integers(min_value=1, max_value=10**6)),
    min_size=1,
    max_size=15,
)
cuts = st.lists(st.integers(min_value=-24, max_value=22 * 24), min_size=2, max_size=5, unique=True)


@given(movements=movements, cuts=cuts)
def test_statements_add_up_chain_and_end_at_the_ledger_balance(
    book: Ledger, clock: FixedClock, movements: list[tuple[int, bool, int]], cuts: list[int]
) -> None:
    """For statements over consecutive periods of one account: opening + normal-side postings
    - other-side postings = closing; each closing is the next opening; and the closing balance
    equals the ledger's balance as of the period's end."""
    suffix = uuid.uuid4().hex[:10]  # a fresh account per example; the database is shared
    wallet, source = f"liabilities:wallet:{suffix}", f"assets:bank:{suffix}"
    book.open_account(AccountSpec(wallet, AccountType.LIABILITY, "USD"))
    book.open_account(AccountSpec(source, AccountType.ASSET, "USD"))
    start = clock.now()
    for n, (hours, deposit, amount) in enumerate(movements):
        legs = (debit(source, amount, "USD"), credit(wallet, amount, "USD"))
        if not deposit:
            legs = (credit(source, amount, "USD"), debit(wallet, amount, "USD"))
        book.post(EntryRequest(f"{suffix}-{n}", "test.move", legs, effective_at=start + timedelta(hours=hours)))
    finance = Finance(book)
    edges = [start + timedelta(hours=h) for h in sorted(cuts)]
    previous_closing = None
    for period_from, period_to in itertools.pairwise(edges):
        statement = finance.account_statement(wallet, "USD", period_from, period_to)
        # A liability's normal side is credit.
        assert statement.opening_balance + statement.total_credits - statement.total_debits == statement.closing_balance
        if previous_closing is not None:
            assert statement.opening_balance == previous_closing
        assert statement.closing_balance == book.balance(wallet, "USD", as_of=period_to)
        if statement.lines:
            assert statement.lines[-1].running_balance == statement.closing_balance
        previous_closing = statement.closing_balance
