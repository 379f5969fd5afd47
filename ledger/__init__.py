"""ledger: the payments, escrow and fee ledger of the marketplace.

The public face other marketplace modules import. The core is a double-entry
journal: integer minor units with an ISO currency, entries that balance per
currency, idempotency keys, floors, stored balances, reversal instead of edits.

    from ledger import AccountSpec, AccountType, EntryRequest, connect, credit, debit

    book = connect("sqlite:///ledger.sqlite3")
    book.open_account(AccountSpec("assets:psp:stripe", AccountType.ASSET, "USD"))
    book.post(EntryRequest("fund-ms_1", "escrow.fund", (debit(...), credit(...))))

The names are loaded on first use (PEP 562), so importing one pure module of the
package (the fee rule, say) loads neither SQLAlchemy nor the rest of the ledger, and
the package itself imports none of its modules: no import circle runs through it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: each public name and the module that defines it
_EXPORTS = {
    "Account": "ledger.accounts",
    "AccountSpec": "ledger.accounts",
    "AccountType": "ledger.accounts",
    "Side": "ledger.accounts",
    "open_account": "ledger.bookkeeping",
    "Clock": "ledger.clock",
    "FixedClock": "ledger.clock",
    "SystemClock": "ledger.clock",
    "Database": "ledger.db.unit_of_work",
    "UnitOfWork": "ledger.ports.unit_of_work",
    "LedgerError": "ledger.errors",
    "Entry": "ledger.journal",
    "EntryRequest": "ledger.journal",
    "Posting": "ledger.journal",
    "credit": "ledger.journal",
    "debit": "ledger.journal",
    "post_entries": "ledger.bookkeeping",
    "post_entry": "ledger.bookkeeping",
    "reverse_entry": "ledger.bookkeeping",
    "Ledger": "ledger.service",
    "Page": "ledger.service",
    "connect": "ledger.bootstrap",
}

__all__ = [
    "Account",
    "AccountSpec",
    "AccountType",
    "Clock",
    "Database",
    "Entry",
    "EntryRequest",
    "FixedClock",
    "Ledger",
    "LedgerError",
    "Page",
    "Posting",
    "Side",
    "SystemClock",
    "UnitOfWork",
    "connect",
    "credit",
    "debit",
    "open_account",
    "post_entries",
    "post_entry",
    "reverse_entry",
]

if TYPE_CHECKING:
    from ledger.accounts import Account, AccountSpec, AccountType, Side
    from ledger.bookkeeping import open_account, post_entries, post_entry, reverse_entry
    from ledger.bootstrap import connect
    from ledger.clock import Clock, FixedClock, SystemClock
    from ledger.db.unit_of_work import Database
    from ledger.errors import LedgerError
    from ledger.journal import Entry, EntryRequest, Posting, credit, debit
    from ledger.ports.unit_of_work import UnitOfWork
    from ledger.service import Ledger, Page


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
