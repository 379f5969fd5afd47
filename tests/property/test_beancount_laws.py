"""The laws of the Beancount export (`ledger.beancount`), checked by Hypothesis: account
names are legal and one-to-one; the export of a random history in USD, JPY and BHD over
a random period passes `bean-check`, lists exactly the entries of the period, and its
balances are the ledger's, to the minor unit, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from beancount.core import account as beancount_account
from hypothesis import given, note, settings
from hypothesis import strategies as st

from ledger.accounts import AccountSpec, AccountType
from ledger.beancount import OPENING_BALANCES, ROOTS, account_names, plain_name
from ledger.clock import FixedClock
from ledger.invoices.service import Finance
from ledger.journal import EntryRequest
from ledger.service import Ledger
from tests import beancount_files as files
from tests.property.strategies import AccountKey, balanced_postings

#: Examples of the export law: each posts a history, exports it and runs `bean-check`
#: (about half a second), so a few suffice; the journal also grows across them, as the
#: database is shared by the examples of one test.
EXPORT_EXAMPLES = 20

# --- names -----------------------------------------------------------------------------------

#: Segments from a small alphabet, so that codes differing only in '_', '-', '.' or case,
#: and root words, come up often.
_segments = st.one_of(
    st.sampled_from(["fr_1", "fr-1", "fr.1", "Fr_1", "_x", "-x", ".x", "x", "2026-11-30", "assets", "income"]),
    st.text(alphabet="aZ0_.-", min_size=1, max_size=4),
)
_first_segments = st.one_of(
    st.sampled_from(["assets", "asset", "liabilities", "equity", "revenue", "income", "expenses", "bank", "Equity"]),
    st.text(alphabet="aZ0", min_size=1, max_size=3),
)
codes = st.builds(
    lambda first, rest: ":".join([first, *rest]), _first_segments, st.lists(_segments, min_size=0, max_size=3)
)
named_codes = st.lists(st.tuples(codes, st.sampled_from(list(AccountType))), min_size=1, max_size=12, unique=True)


@settings(settings.get_profile("ci"), max_examples=500)
@given(named=named_codes)
def test_account_names_are_legal_one_to_one_and_rooted_by_type(named: list[tuple[str, AccountType]]) -> None:
    """Every name is one Beancount accepts (ASCII), under its type's root; distinct codes
    get distinct names, none of them the opening balances' account; a name is the plain
    one or the plain one with a suffix; and the names do not depend on the codes' order."""
    names = account_names(named)
    note(repr(names))
    assert set(names) == set(named)
    for (code, account_type), name in names.items():
        assert beancount_account.is_valid(name) and name.isascii()
        assert name.split(":")[0] == ROOTS[account_type]
        assert name == plain_name(code, account_type) or name.startswith(plain_name(code, account_type) + "-")
    assert len(set(names.values())) == len(names)
    assert OPENING_BALANCES not in names.values()
    assert account_names(list(reversed(named))) == names


# --- the export of a random history ------------------------------------------------------------

CURRENCIES = ("USD", "JPY", "BHD")

#: Codes each example opens (with a suffix of its own), in every currency: two that would
#: share a name, and a parent with a child, whose `balance` assertion counts both.
CHART = (
    ("assets:bank_{}", AccountType.ASSET),
    ("liabilities:wallet:{}", AccountType.LIABILITY),
    ("liabilities:wallet:{}:held", AccountType.LIABILITY),
    ("revenue:fees_{}", AccountType.REVENUE),
    ("revenue:fees-{}", AccountType.REVENUE),
    ("expenses:ops_{}", AccountType.EXPENSE),
    ("equity:capital_{}", AccountType.EQUITY),
)

#: Entries and period ends fall on a grid of minutes over ten days from the clock's start;
#: entries on quarter hours, so midnights and entries exactly at a period's end come up.
DAYS = 10
_quarter_hours = st.integers(min_value=0, max_value=DAYS * 24 * 4)
_cut = st.one_of(st.none(), st.integers(min_value=-24 * 60, max_value=(DAYS + 1) * 24 * 60))


@settings(settings.get_profile("ci"), max_examples=EXPORT_EXAMPLES)
@given(drawn=st.data(), cuts=st.tuples(_cut, _cut))
def test_the_export_of_a_random_history_checks_and_has_the_ledgers_balances(
    book: Ledger, clock: FixedClock, tmp_path: Path, drawn: st.DataObject, cuts: tuple[int | None, int | None]
) -> None:
    """For random balanced entries in USD, JPY and BHD at random times and a random period
    [from, to) (either end open): `bean-check` accepts the export and prints nothing; the
    file lists exactly the entries effective in the period; and every account's postings
    in the file (opening balances included) sum to the ledger's balance as of `to`."""
    suffix = uuid.uuid4().hex[:8]
    keys: list[AccountKey] = []
    for template, account_type in CHART:
        for currency in CURRENCIES:
            book.open_account(AccountSpec(template.format(suffix), account_type, currency))
            keys.append((template.format(suffix), currency))
    base = clock.now()
    moments = drawn.draw(st.lists(_quarter_hours, min_size=1, max_size=8), label="entries at (quarter hours)")
    for n, quarter in enumerate(moments):
        postings = drawn.draw(balanced_postings(tuple(keys)), label=f"entry {n}")
        at = base + timedelta(minutes=15 * quarter)
        book.post(EntryRequest(f"{suffix}-{n}", "test.move", postings, effective_at=at, refs={"n": str(n)}))
    period_from, period_to = (None if cut is None else base + timedelta(minutes=cut) for cut in cuts)
    if period_from is not None and period_to is not None and period_from >= period_to:
        period_from, period_to = period_to, period_from + timedelta(minutes=1)
    note(f"period [{period_from}, {period_to})")

    path = files.write_export(Finance(book), tmp_path / f"export-{suffix}.beancount", period_from, period_to)
    files.bean_check(path)
    directives = files.load(path)
    assert files.listed_entry_ids(directives) == files.effective_ids(book, period_from, period_to)
    in_file = files.file_balances(directives)
    assert files.chart_only(in_file) == files.ledger_balances(book, period_to)
    assert {v for k, v in in_file.items() if k[0] == OPENING_BALANCES} <= {Decimal(0)}
