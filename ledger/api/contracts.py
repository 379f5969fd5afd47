"""`/v1/contracts` (marketplace): open a contract (fixed-price or hourly), change an hourly
contract's terms, add milestones, end it. Hourly time and weeks are `ledger.api.hourly`'s."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ledger.api.auth import MARKETPLACE
from ledger.api.idempotent import idempotent
from ledger.api.schemas import (
    ContractCreate,
    ContractOut,
    ContractUpdate,
    EndContract,
    MilestoneCreate,
    MilestoneOut,
    StateHistoryOut,
)
from ledger.api.views import contract_out, history_out, milestone_out, read_contract
from ledger.errors import InvalidRequest
from ledger.escrow.model import HOURLY
from ledger.escrow.service import Escrow
from ledger.money import normalize_currency
from ledger.service import Ledger


class ContractController(Controller):
    path = "/v1/contracts"
    tags = ["escrow"]
    opt = {"roles": MARKETPLACE}

    @post("/", operation_id="createContract", sync_to_thread=True, status_code=201)
    @idempotent
    def create(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        data: JSONBody[ContractCreate],
    ) -> ContractOut:
        """Open a contract: fixed-price (the default; paid by milestones) or hourly (`type`
        "hourly" with `hourly_rate` and `weekly_limit_hours`; paid by the week for logged time)."""
        if data.type == HOURLY:
            if data.hourly_rate is None or data.weekly_limit_hours is None:
                missing = "hourly_rate" if data.hourly_rate is None else "weekly_limit_hours"
                raise InvalidRequest(f"an hourly contract needs {missing}", field=missing)
            contract = escrow.hourly.open_contract(
                client_id=data.client_id,
                freelancer_id=data.freelancer_id,
                currency=data.currency,
                title=data.title,
                hourly_rate=data.hourly_rate.minor(normalize_currency(data.currency), field="hourly_rate"),
                weekly_limit_hours=data.weekly_limit_hours,
                manual_time_allowed=bool(data.manual_time_allowed),
                request_key=request_key,
            )
            return contract_out(contract, [])
        for field in ("hourly_rate", "weekly_limit_hours", "manual_time_allowed"):
            if getattr(data, field) is not None:
                raise InvalidRequest(f"{field} belongs to hourly contracts; this one is fixed-price", field=field)
        contract = escrow.contracts.open_contract(
            client_id=data.client_id,
            freelancer_id=data.freelancer_id,
            currency=data.currency,
            title=data.title,
            request_key=request_key,
        )
        return contract_out(contract, [])

    @patch("/{contract_id:str}", operation_id="updateContract", sync_to_thread=True, status_code=200)
    @idempotent
    def update(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        data: JSONBody[ContractUpdate],
    ) -> ContractOut:
        """Change an hourly contract's weekly limit (a raise counts this week, a lowering from
        the next) or its rate (from the next segment that starts after now)."""
        rate = None
        if data.hourly_rate is not None:
            rate = data.hourly_rate.minor(escrow.reads.contract(contract_id).currency, field="hourly_rate")
        escrow.hourly.change_terms(
            contract_id, weekly_limit_hours=data.weekly_limit_hours, hourly_rate=rate, request_key=request_key
        )
        return read_contract(book, contract_id)

    @get("/{contract_id:str}", operation_id="getContract", sync_to_thread=True)
    def read(self, book: NamedDependency[Ledger], contract_id: FromPath[str]) -> ContractOut:
        """A contract with its milestones."""
        return read_contract(book, contract_id)

    @get("/{contract_id:str}/history", operation_id="getContractHistory", sync_to_thread=True)
    def history(self, escrow: NamedDependency[Escrow], contract_id: FromPath[str]) -> StateHistoryOut:
        """The states the contract went through (open, paused_*, ended_by_*), oldest first,
        with who moved it there (an API key's id, `worker`, `provider`, `cli`...)."""
        return history_out(contract_id, escrow.reads.history("contract", contract_id))

    @post("/{contract_id:str}/milestones", operation_id="addMilestone", sync_to_thread=True, status_code=201)
    @idempotent
    def add_milestone(
        self,
        request: Request[Any, Any, Any],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        data: JSONBody[MilestoneCreate],
    ) -> MilestoneOut:
        """Add a milestone (title, amount in the contract's currency, optional due date)."""
        currency = escrow.reads.contract(contract_id).currency
        milestone = escrow.contracts.add_milestone(
            contract_id,
            title=data.title,
            amount=data.amount.minor(currency),
            due_date=data.due_date,
            request_key=request_key,
        )
        return milestone_out(milestone, currency, [])

    @post("/{contract_id:str}/end", operation_id="endContract", sync_to_thread=True, status_code=200)
    @idempotent
    def end(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        contract_id: FromPath[str],
        data: JSONBody[EndContract],
    ) -> ContractOut:
        """End the contract: by the freelancer refunds what is held; by the client asks the freelancer first."""
        escrow.contracts.end_contract(contract_id, ended_by=data.ended_by, request_key=request_key)
        return read_contract(book, contract_id)
