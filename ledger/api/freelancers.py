"""`/v1/freelancers` (marketplace): a freelancer's balances, transactions and payouts."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from ledger.api.auth import MARKETPLACE
from ledger.api.idempotent import idempotent
from ledger.api.pagination import PageRequest
from ledger.api.schemas import BalanceOut, EntryList, PayoutCreate, PayoutOut
from ledger.api.views import balance_out, entry_out, payout_out
from ledger.escrow.chart import available_account_code, pending_account_code
from ledger.escrow.model import party_id
from ledger.escrow.service import Escrow
from ledger.journal import Entry
from ledger.money import normalize_currency
from ledger.ports.unit_of_work import UnitOfWork
from ledger.service import Ledger


class FreelancerController(Controller):
    path = "/v1/freelancers"
    tags = ["balances", "payouts"]
    opt = {"roles": MARKETPLACE}

    @get("/{freelancer_id:str}/balance", operation_id="getFreelancerBalance", tags=["balances"], sync_to_thread=True)
    def balance(
        self, escrow: NamedDependency[Escrow], freelancer_id: FromPath[str], currency: FromQuery[str]
    ) -> BalanceOut:
        """Pending (inside the 5-day security period), available and in-transit money."""
        return balance_out(freelancer_id, escrow.payouts.balance(freelancer_id, currency))

    @get(
        "/{freelancer_id:str}/transactions",
        operation_id="listFreelancerTransactions",
        tags=["balances"],
        sync_to_thread=True,
    )
    def transactions(
        self,
        book: NamedDependency[Ledger],
        page: NamedDependency[PageRequest],
        freelancer_id: FromPath[str],
        currency: FromQuery[str | None] = None,
    ) -> EntryList:
        """Payments, fees, refunds and payouts on the freelancer's balances, newest first
        (every currency, or only `currency`)."""
        freelancer = party_id(freelancer_id, "freelancer_id")
        codes = [pending_account_code(freelancer), available_account_code(freelancer)]
        only = None if currency is None else normalize_currency(currency)
        cursor = page.after_id()

        def read(uow: UnitOfWork) -> list[Entry]:
            ids = [a.id for a in uow.accounts.all_with_codes(codes) if only is None or a.currency == only]
            return uow.journal.newest_first(starting_after=cursor, limit=page.fetch, account_ids=ids) if ids else []

        entries = book.transaction(read, read_only=True)
        return page.listing(EntryList, entries, entry_out, cursor=lambda entry: entry.id)

    @post(
        "/{freelancer_id:str}/payouts",
        operation_id="createPayout",
        tags=["payouts"],
        sync_to_thread=True,
        status_code=201,
    )
    @idempotent
    def payout(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        freelancer_id: FromPath[str],
        data: JSONBody[PayoutCreate],
    ) -> PayoutOut:
        """Pay out available money; never more than the available balance."""
        currency = normalize_currency(data.amount.currency)
        payout = escrow.payouts.request_payout(
            freelancer_id, amount=data.amount.minor(), currency=currency, request_key=request_key
        )
        return payout_out(payout)
