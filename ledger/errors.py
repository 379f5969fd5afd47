"""The one error tree of the ledger.

Every error the ledger raises on purpose derives from `LedgerError`. Errors carry
data (the account, the amounts, the key), never HTTP text: the API maps each class
to a problem type in one place, the CLI prints `str(error)` on one line.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose.

    Attributes:
        code: a stable machine-readable name (used as the problem `type` suffix).
    """

    code = "ledger-error"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return self.message


# --- bad input -------------------------------------------------------------------


class InvalidRequest(LedgerError):
    """The request is malformed; nothing was written."""

    code = "invalid-request"


class InvalidAmount(InvalidRequest):
    """An amount is not an exact, positive number of the currency's minor unit,
    or is of a forbidden type (a float)."""

    code = "invalid-amount"


class UnknownCurrency(InvalidRequest):
    """A currency code is not an ISO 4217 currency the ledger knows."""

    code = "unknown-currency"


class UnbalancedEntry(InvalidRequest):
    """A journal entry's debits and credits differ in some currency."""

    code = "unbalanced-entry"


class CurrencyMismatch(InvalidRequest):
    """An amount's currency is not the account's currency."""

    code = "currency-mismatch"


# --- things that are not there ---------------------------------------------------


class NotFound(LedgerError):
    """Something the request names does not exist."""

    code = "not-found"


class UnknownAccount(NotFound):
    """No account has this code in this currency."""

    code = "unknown-account"


class UnknownEntry(NotFound):
    """No journal entry has this id."""

    code = "unknown-entry"


# --- refused because of the ledger's state ----------------------------------------


class Conflict(LedgerError):
    """The request is well formed but the ledger's state refuses it."""

    code = "conflict"


class IdempotencyConflict(Conflict):
    """An idempotency key was reused with a different request."""

    code = "idempotency-conflict"


class AccountConflict(Conflict):
    """An account exists with the same code and currency but other attributes."""

    code = "account-conflict"


class EntryAlreadyReversed(Conflict):
    """The entry has already been reversed (an entry is reversed at most once)."""

    code = "entry-already-reversed"


class CannotReverseReversal(Conflict):
    """A reversing entry cannot itself be reversed; post a new entry instead."""

    code = "cannot-reverse-reversal"


class BelowFloor(Conflict):
    """The entry would take an account's balance below its floor."""

    code = "below-floor"


class InsufficientFunds(BelowFloor):
    """The freelancer's available balance is less than a payout or a refund takes from it."""

    code = "insufficient-funds"


# --- operations ------------------------------------------------------------------


class DatabaseNotMigrated(LedgerError):
    """The database schema is not at the newest migration; run `ledger db upgrade`."""

    code = "database-not-migrated"


class RetriesExhausted(LedgerError):
    """A transaction kept losing serialization races or deadlocks and was given up."""

    code = "retries-exhausted"


class RequestTimedOut(LedgerError):
    """The server did not answer the request within its time limit; retry it with the
    same Idempotency-Key."""

    code = "request-timed-out"


class DependencyDown(LedgerError):
    """A service the ledger needs does not answer; `dependency` names it."""

    code = "dependency-down"


class ConfigurationError(LedgerError):
    """A setting is missing or malformed."""

    code = "configuration-error"


# --- hourly timesheets -------------------------------------------------------------


class SegmentOverlap(Conflict):
    """A time segment overlaps another segment of the contract; a contract's segments
    never share a minute."""

    code = "segment-overlap"


class WeekClosed(Conflict):
    """The week has closed (Monday 12:00 after it ended): no time may be added to it or
    deleted from it any more."""

    code = "week-closed"


class ManualTimeNotAllowed(Conflict):
    """The contract does not allow manual time; only tracked time may be logged."""

    code = "manual-time-not-allowed"
