"""Reading a Beancount export back, for the export's tests: Beancount's own checker
(`bean-check`, run as a subprocess from the virtualenv's scripts) and loader, each
account's postings in the file beside the ledger's own balances, and which entries a
period lists."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from beancount import loader
from beancount.core import data

from ledger.accounts import Side
from ledger.beancount import OPENING_BALANCES
from ledger.invoices.service import Finance
from ledger.money import to_decimal
from ledger.ports.unit_of_work import UnitOfWork
from ledger.service import Ledger

BEAN_CHECK = Path(sys.executable).parent / "bean-check"

#: (code, currency) -> debits minus credits, in major units; Beancount's own accounts
#: (the opening balances') under their Beancount names.
Balances = dict[tuple[str, str], Decimal]


def write_export(
    finance: Finance, path: Path, period_from: datetime | None = None, period_to: datetime | None = None
) -> Path:
    with path.open("w") as out:
        out.writelines(finance.export_beancount(period_from, period_to))
    return path


def bean_check(path: Path) -> None:
    """`bean-check` exits 0 and prints nothing."""
    done = subprocess.run([str(BEAN_CHECK), str(path)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def load(path: Path) -> list[data.Directive]:
    """The file's directives, as Beancount loads them: without a single error."""
    directives, errors, _ = loader.load_file(str(path))
    assert errors == []
    return list(directives)


def codes_of(directives: list[data.Directive]) -> dict[str, str]:
    """Beancount name -> the code its `open` keeps (its own name for the opening balances')."""
    return {d.account: d.meta.get("code", d.account) for d in directives if isinstance(d, data.Open)}


def file_balances(directives: list[data.Directive]) -> Balances:
    """Every open account's postings in the file, in each of its currencies (zero without any)."""
    codes = codes_of(directives)
    sums: Balances = {
        (codes[d.account], currency): Decimal(0)
        for d in directives
        if isinstance(d, data.Open)
        for currency in d.currencies or ()
    }
    for directive in directives:
        if isinstance(directive, data.Transaction):
            for posting in directive.postings:
                assert posting.units is not None and isinstance(posting.units.number, Decimal)
                sums[(codes[posting.account], posting.units.currency)] += posting.units.number
    return sums


def chart_only(balances: Balances) -> Balances:
    return {key: value for key, value in balances.items() if key[0] != OPENING_BALANCES}


def ledger_balances(book: Ledger, as_of: datetime | None = None) -> Balances:
    """Every account's balance, debits minus credits, from the ledger's own reads in one
    transaction: the stored balance, or (`as_of`) the sum of postings effective before it."""

    def read(uow: UnitOfWork) -> Balances:
        accounts = list(uow.accounts.all())
        stored = uow.accounts.balances_of(accounts)
        found = {}
        for account in accounts:
            normal = stored.get(account.id, 0) if as_of is None else uow.accounts.balance_as_of(account, as_of)
            net = normal if account.normal_side is Side.DEBIT else -normal
            found[(account.code, account.currency)] = to_decimal(net, account.currency)
        return found

    return book.transaction(read, read_only=True)


def listed_entry_ids(directives: list[data.Directive]) -> set[int]:
    return {int(d.meta["entry_id"]) for d in directives if isinstance(d, data.Transaction) and "entry_id" in d.meta}


def effective_ids(book: Ledger, start: datetime | None, end: datetime | None) -> set[int]:
    """The ids of the journal's entries effective in [start, end), read through `Ledger.journal`."""
    found: set[int] = set()
    after = None
    while True:
        page = book.journal(after=after, limit=100)
        found |= {
            e.id
            for e in page.entries
            if (start is None or start <= e.effective_at) and (end is None or e.effective_at < end)
        }
        if page.next_cursor is None:
            return found
        after = int(page.next_cursor)
