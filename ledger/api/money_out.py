"""Freelancer balances, transactions and payouts (marketplace)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from ledger.api.context import MARKETPLACE, idempotent, request_key, services
from ledger.api.schemas import BalanceOut, EntryList, PayoutCreate, PayoutOut
from ledger.api.views import balance_out, entry_out, payout_out
from ledger.escrow.chart import available_account_code, pending_account_code
from ledger.escrow.model import party_id
from ledger.money import normalize_currency
from ledger.ports.unit_of_work import UnitOfWork

OPT = {"roles": MARKETPLACE}
Limit = Annotated[int, Parameter(ge=1, le=100, description="page size")]


MAX_CURSOR = 2**63 - 1  # ids are BIGINT


def parse_cursor(value: str | None) -> int | None:
    from ledger.errors import InvalidRequest

    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_CURSOR:
        raise InvalidRequest("starting_after is a cursor from a previous page", field="starting_after")
    return int(value)


class FreelancerController(Controller):
    path = "/v1/freelancers"
    tags = ["balances", "payouts"]
    opt = OPT

    @get("/{freelancer_id:str}/balance", operation_id="getFreelancerBalance", tags=["balances"], sync_to_thread=True)
    def balance(self, request: Request[Any, Any, Any], freelancer_id: str, currency: str) -> BalanceOut:
        """Pending (inside the 5-day security period), available and in-transit money."""
        return balance_out(freelancer_id, services(request).escrow.payouts.balance(freelancer_id, currency))

    @get(
        "/{freelancer_id:str}/transactions",
        operation_id="listFreelancerTransactions",
        tags=["balances"],
        sync_to_thread=True,
    )
    def transactions(
        self,
        request: Request[Any, Any, Any],
        freelancer_id: str,
        currency: str | None = None,
        limit: Limit = 20,
        starting_after: str | None = None,
    ) -> EntryList:
        """Payments, fees, refunds and payouts on the freelancer's balances, newest first
        (every currency, or only `currency`)."""
        svc = services(request)
        freelancer = party_id(freelancer_id, "freelancer_id")
        codes = [pending_account_code(freelancer), available_account_code(freelancer)]
        only = None if currency is None else normalize_currency(currency)
        cursor = parse_cursor(starting_after)

        def read(uow: UnitOfWork) -> EntryList:
            ids = [a.id for a in uow.accounts.all_with_codes(codes) if only is None or a.currency == only]
            page = uow.journal.newest_first(starting_after=cursor, limit=limit + 1, account_ids=ids) if ids else []
            shown = page[:limit]
            more = len(page) > limit
            return EntryList([entry_out(e) for e in shown], more, str(shown[-1].id) if more else None)

        return svc.book.transaction(read, read_only=True)

    @post(
        "/{freelancer_id:str}/payouts",
        operation_id="createPayout",
        tags=["payouts"],
        sync_to_thread=True,
        status_code=201,
    )
    def payout(self, request: Request[Any, Any, Any], freelancer_id: str, data: PayoutCreate) -> Response[PayoutOut]:
        """Pay out available money; never more than the available balance."""
        svc = services(request)

        def run() -> tuple[int, object]:
            currency = normalize_currency(data.amount.currency)
            payout = svc.escrow.payouts.request_payout(
                freelancer_id, amount=data.amount.minor(), currency=currency, request_key=request_key(request)
            )
            return 201, payout_out(payout)

        return idempotent(request, data, run)  # type: ignore[return-value]


class PayoutController(Controller):
    path = "/v1/payouts"
    tags = ["payouts"]
    opt = OPT

    @get("/{payout_id:str}", operation_id="getPayout", sync_to_thread=True)
    def read(self, request: Request[Any, Any, Any], payout_id: str) -> PayoutOut:
        """A payout: in transit until the provider confirms, then paid (or failed)."""
        return payout_out(services(request).escrow.payouts.payout(payout_id))
