"""The ledger's service layer: what the CLI, the API, other modules and tests call.

`Ledger` runs each core use case (`ledger.bookkeeping`, `ledger.fees.billing`) in its own
retryable transaction of a `Transactions` port (`ledger.bootstrap.connect` builds one over
a database). Modules that need several steps in one transaction
(escrow: a state change and its entry) call `Ledger.transaction(work)` and use the
functions of `ledger.accounts` and `ledger.journal` on the unit of work they get.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from ledger.accounts import Account, AccountSpec
from ledger.audit import CORE_CHECKS, AuditReport, Check, run_checks
from ledger.bookkeeping import open_account, post_entries, post_entry, reverse_entry
from ledger.clock import Clock, require_utc
from ledger.errors import InvalidRequest, UnknownAccount
from ledger.fees import billing as fees
from ledger.fees.model import FeeEvent, ScheduleInForce
from ledger.fees.rule import FeeBreakdown
from ledger.gateway.books import ProviderBooks
from ledger.journal import Entry, EntryRequest
from ledger.money import normalize_currency
from ledger.ports.unit_of_work import Transactions, UnitOfWork
from ledger.progress import Progress

T = TypeVar("T")

MAX_PAGE = 1000


@dataclass(frozen=True)
class Page:
    """One page of a journal listing.

    Attributes:
        entries: the entries, in the order asked for.
        next_cursor: pass as `after` to get the next page; None on the last page.
    """

    entries: list[Entry]
    next_cursor: int | None


#: The checks an audit runs, given the provider's own books (when it keeps any).
AuditChecks = Callable[[ProviderBooks | None], list[tuple[str, Check]]]


def core_checks(provider: ProviderBooks | None) -> list[tuple[str, Check]]:
    """The core's invariants only (`ledger.audit`); the composition root adds the modules'."""
    return list(CORE_CHECKS)


class Ledger:
    """The double-entry ledger over one database.

    Attributes:
        database: runs the use cases' transactions (`ledger.db.unit_of_work.Database`).
        checks: what `audit` checks (the composition root gives the whole marketplace's).
    """

    def __init__(self, database: Transactions, *, checks: AuditChecks = core_checks) -> None:
        self.database = database
        self.checks = checks

    @property
    def clock(self) -> Clock:
        return self.database.clock

    def transaction(self, work: Callable[[UnitOfWork], T], *, read_only: bool = False) -> T:
        return self.database.transaction(work, read_only=read_only)

    def stream(self, work: Callable[[UnitOfWork], Iterator[T]]) -> Iterator[T]:
        """What `work` yields, read in one read-only transaction that lasts as long as
        the iteration (`Transactions.stream`): for responses streamed after their handler returned."""
        return self.database.stream(work)

    def autocommit(self, work: Callable[[UnitOfWork], T], *, read_only: bool = False) -> T:
        """`work` of statements that each stand alone, committed one by one (`Transactions.autocommit`)."""
        return self.database.autocommit(work, read_only=read_only)

    # --- writes ------------------------------------------------------------------

    def open_account(self, spec: AccountSpec) -> Account:
        return self.transaction(lambda uow: open_account(uow, spec))

    def post(self, request: EntryRequest) -> Entry:
        # One entry is one atomic statement: written whole or, as a replay, not at all,
        # so it needs no transaction around it (on PostgreSQL, one round trip).
        return self.database.transaction(lambda uow: post_entry(uow, request), single_write=True)

    def post_batch(self, requests: Sequence[EntryRequest]) -> list[Entry]:
        # A batch that mixes new entries with a conflicting replay finds the conflict
        # after its statement: only a transaction can then undo the new ones.
        return self.transaction(lambda uow: post_entries(uow, requests))

    def reverse(
        self,
        entry_id: int,
        *,
        idempotency_key: str,
        effective_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Entry:
        return self.transaction(
            lambda uow: reverse_entry(
                uow, entry_id, idempotency_key=idempotency_key, effective_at=effective_at, metadata=metadata
            )
        )

    # --- reads -------------------------------------------------------------------

    def account(self, code: str, currency: str) -> Account:
        currency = normalize_currency(currency)
        return self.transaction(lambda uow: uow.accounts.get(code, currency), read_only=True)

    def currency_of(self, code: str, currency: str | None = None) -> str:
        """`currency` when given; else the one currency the account is held in. An account
        held in several is refused, naming them (`InvalidRequest`, field `currency`)."""
        if currency is not None:
            return normalize_currency(currency)
        held = sorted(
            {a.currency for a in self.transaction(lambda uow: uow.accounts.all_with_codes([code]), read_only=True)}
        )
        if not held:
            raise UnknownAccount(f"no account {code}", account=code)
        if len(held) > 1:
            raise InvalidRequest(
                f"account {code} is held in {', '.join(held)}: name the currency", field="currency", held=held
            )
        return held[0]

    def balance(self, code: str, currency: str, *, as_of: datetime | None = None) -> int:
        """The balance on the account's normal side, in minor units.

        Without `as_of`: the stored balance now. With `as_of`: the sum of postings of
        entries effective strictly before `as_of` (periods are half-open, [from, to)).
        """
        currency = normalize_currency(currency)
        moment = None if as_of is None else _utc(as_of, "as_of")

        def read(uow: UnitOfWork) -> int:
            account = uow.accounts.get(code, currency)
            if moment is None:
                return uow.accounts.balance(account)
            return uow.accounts.balance_as_of(account, moment)

        return self.transaction(read, read_only=True)

    def entry(self, entry_id: int) -> Entry:
        return self.transaction(lambda uow: uow.journal.get(entry_id), read_only=True)

    def account_entries(self, code: str, currency: str, *, after: int | None = None, limit: int = 100) -> Page:
        """The entries touching one account, in journal order, a page at a time."""
        currency = normalize_currency(currency)
        size = _page_size(limit)

        def read(uow: UnitOfWork) -> list[Entry]:
            account = uow.accounts.get(code, currency)
            return uow.journal.page(after_id=after, limit=size + 1, account=account)

        return _paginate(self.transaction(read, read_only=True), size)

    def journal(self, *, after: int | None = None, limit: int = 100) -> Page:
        """The whole journal in order, a page at a time."""
        size = _page_size(limit)
        found = self.transaction(lambda uow: uow.journal.page(after_id=after, limit=size + 1), read_only=True)
        return _paginate(found, size)

    # --- fees ----------------------------------------------------------------------

    def quote_fee(
        self,
        *,
        amount: int,
        currency: str,
        freelancer_id: str | None = None,
        client_id: str | None = None,
        lifetime: int | None = None,
        at: datetime | None = None,
    ) -> FeeBreakdown:
        """Preview the fee on a prospective payment (charges nothing), from the pair's
        lifetime billings or a hypothetical `lifetime`."""
        return self.transaction(
            lambda uow: fees.quote_fee(
                uow,
                amount=amount,
                currency=currency,
                freelancer_id=freelancer_id,
                client_id=client_id,
                lifetime=lifetime,
                at=at,
            ),
            read_only=True,
        )

    def charge_fee(self, **request: Any) -> FeeEvent:
        """Charge the fee on a payment (see `ledger.fees.charge_fee`), in its own transaction."""
        return self.transaction(lambda uow: fees.charge_fee(uow, **request))

    def refund_fee(self, **request: Any) -> FeeEvent:
        """Return the fee on a refund (see `ledger.fees.refund_fee`), in its own transaction."""
        return self.transaction(lambda uow: fees.refund_fee(uow, **request))

    def lifetime_billings(self, freelancer_id: str, client_id: str, currency: str) -> int:
        code = normalize_currency(currency)
        return self.transaction(lambda uow: fees.lifetime_billings(uow, freelancer_id, client_id, code), read_only=True)

    def fee_schedules(self) -> list[ScheduleInForce]:
        return self.transaction(fees.schedules, read_only=True)

    def activate_fee_schedule(self, name: str, effective_from: datetime) -> ScheduleInForce:
        """Put a shipped schedule in force from a future time."""
        return self.transaction(lambda uow: fees.activate_schedule(uow, name, effective_from))

    # --- audit -----------------------------------------------------------------------

    def audit(self, *, provider: ProviderBooks | None = None, progress: Progress | None = None) -> AuditReport:
        """Check the ledger's invariants over the whole database (`checks`: the core's, and
        over a marketplace the fee engine's, escrow's and the documents'); and, given the
        payment provider's own books (`provider`), that its account matches them.
        `progress` is told each check done."""
        checks = self.checks(provider)
        return self.transaction(lambda uow: run_checks(uow.audit, checks, progress), read_only=True)

    def close(self) -> None:
        self.database.dispose()


def _utc(at: datetime, field: str) -> datetime:
    try:
        return require_utc(at)
    except ValueError as error:
        raise InvalidRequest(str(error), field=field) from None


def _page_size(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    return limit


def _paginate(found: list[Entry], size: int) -> Page:
    page = found[:size]
    return Page(entries=page, next_cursor=page[-1].id if len(found) > size else None)
