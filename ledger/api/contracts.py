"""`/v1/contracts` (marketplace): open a contract, add milestones, end it."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ledger.api.auth import MARKETPLACE
from ledger.api.idempotent import idempotent
from ledger.api.schemas import ContractCreate, ContractOut, EndContract, MilestoneCreate, MilestoneOut
from ledger.api.views import contract_out, milestone_out, read_contract
from ledger.escrow.service import Escrow
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
        """Open a fixed-price contract between a client and a freelancer in one currency."""
        contract = escrow.contracts.open_contract(
            client_id=data.client_id,
            freelancer_id=data.freelancer_id,
            currency=data.currency,
            title=data.title,
            request_key=request_key,
        )
        return contract_out(contract, [])

    @get("/{contract_id:str}", operation_id="getContract", sync_to_thread=True)
    def read(self, book: NamedDependency[Ledger], contract_id: FromPath[str]) -> ContractOut:
        """A contract with its milestones."""
        return read_contract(book, contract_id)

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
