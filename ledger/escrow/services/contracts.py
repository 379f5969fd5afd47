"""Contracts and the work on their milestones: open, add a milestone, submit, ask for
changes, end. Ending may return held money to the client (its refund orders are sent
once it has committed)."""

from __future__ import annotations

from datetime import date

from ledger.escrow import milestones as use
from ledger.escrow.model import Contract, Milestone
from ledger.escrow.services.transactions import EscrowService
from ledger.ports.unit_of_work import UnitOfWork


class ContractService(EscrowService):
    """Opening and ending contracts, and the freelancer's and client's work on milestones."""

    def open_contract(
        self, *, client_id: str, freelancer_id: str, currency: str, title: str, request_key: str | None = None
    ) -> Contract:
        def work(uow: UnitOfWork) -> Contract:
            if request_key is not None:
                request = {"client": client_id, "freelancer": freelancer_id, "currency": currency, "title": title}
                stored = uow.orders.bind_request_key(request_key, "open_contract", request)
                if stored is not None:
                    return uow.escrow.contract(str(stored["contract"]))
            contract = use.open_contract(
                uow, client_id=client_id, freelancer_id=freelancer_id, currency=currency, title=title
            )
            if request_key is not None:
                uow.orders.store_result(request_key, {"contract": contract.id})
            return contract

        return self.book.transaction(work)

    def add_milestone(
        self,
        contract_id: str,
        *,
        title: str,
        amount: int,
        due_date: date | None = None,
        currency: str | None = None,
        request_key: str | None = None,
    ) -> Milestone:
        """Add a milestone; `currency`, when given, must be the contract's."""

        def work(uow: UnitOfWork) -> Milestone:
            self._check_currency(uow, contract_id, currency)
            if request_key is not None:
                request = {"contract": contract_id, "title": title, "amount": amount, "due_date": due_date}
                stored = uow.orders.bind_request_key(request_key, "add_milestone", request)
                if stored is not None:
                    return uow.escrow.milestone(str(stored["milestone"]))
            milestone = use.add_milestone(uow, contract_id, title=title, amount=amount, due_date=due_date)
            if request_key is not None:
                uow.orders.store_result(request_key, {"milestone": milestone.id})
            return milestone

        return self.book.transaction(work)

    def submit(self, milestone_id: str, *, request_key: str | None = None) -> Milestone:
        return self.book.transaction(
            self._once(
                request_key,
                "submit",
                {"milestone": milestone_id},
                milestone_id,
                lambda uow: use.submit(uow, milestone_id),
            )
        )

    def request_changes(self, milestone_id: str, *, request_key: str | None = None) -> Milestone:
        return self.book.transaction(
            self._once(
                request_key,
                "request_changes",
                {"milestone": milestone_id},
                milestone_id,
                lambda uow: use.request_changes(uow, milestone_id),
            )
        )

    def end_contract(self, contract_id: str, *, ended_by: str, request_key: str | None = None) -> Contract:
        def work(uow: UnitOfWork) -> Contract:
            if (
                request_key is not None
                and uow.orders.bind_request_key(
                    request_key, "end_contract", {"contract": contract_id, "ended_by": ended_by}
                )
                is not None
            ):
                return uow.escrow.contract(contract_id)
            return use.end_contract(uow, contract_id, ended_by=ended_by)

        return self._write(work)
