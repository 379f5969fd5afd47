"""ledger: the payments, escrow and fee ledger of the marketplace.

The public face other marketplace modules import. The core is a double-entry
journal: integer minor units with an ISO currency, entries that balance per
currency, idempotency keys, floors, stored balances, reversal instead of edits.

    from ledger import Ledger, AccountSpec, AccountType, EntryRequest, debit, credit

    book = Ledger.connect("sqlite:///ledger.sqlite3")
    book.open_account(AccountSpec("assets:psp:stripe", AccountType.ASSET, "USD"))
    book.post(EntryRequest("fund-ms_1", "escrow.fund", (debit(...), credit(...))))
"""

from ledger.accounts import Account, AccountSpec, AccountType, Side, open_account
from ledger.clock import Clock, FixedClock, SystemClock
from ledger.db.unit_of_work import Database, UnitOfWork
from ledger.errors import LedgerError
from ledger.journal import (
    Entry,
    EntryRequest,
    Posting,
    credit,
    debit,
    post_entries,
    post_entry,
    reverse_entry,
)
from ledger.service import Ledger, Page

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
    "credit",
    "debit",
    "open_account",
    "post_entries",
    "post_entry",
    "reverse_entry",
]
