"""Races on real PostgreSQL: one milestone, several parallel outcomes, money moved once."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from ledger import FixedClock, Ledger, LedgerError
from ledger.escrow.model import MilestoneState
from ledger.escrow.service import Escrow
from ledger.gateway.simulated import SimulatedGateway
from tests.conftest import CONCURRENCY_REPORT

pytestmark = pytest.mark.postgresql_only
D = 100


def race(*actions: Callable[[], object]) -> list[object]:
    """Start all actions at once; return each one's result or the LedgerError it raised."""
    barrier = threading.Barrier(len(actions))

    def run(action: Callable[[], object]) -> object:
        barrier.wait()
        try:
            return action()
        except LedgerError as refusal:
            return refusal

    with ThreadPoolExecutor(len(actions)) as pool:
        return list(pool.map(run, actions))


@pytest.fixture
def escrow(book: Ledger) -> Escrow:
    return Escrow(book, SimulatedGateway())


def submitted_at_deadline(escrow: Escrow, clock: FixedClock) -> tuple[str, str]:
    contract = escrow.contracts.open_contract(client_id="cl_1", freelancer_id="fr_1", currency="USD", title="Race")
    milestone_id = escrow.contracts.add_milestone(contract.id, title="m", amount=1_000 * D).id
    escrow.funding.fund(milestone_id)
    deadline = escrow.contracts.submit(milestone_id).review_deadline
    assert deadline is not None
    clock.set(deadline)
    return contract.id, milestone_id


@pytest.mark.parametrize("round_", range(5))
def test_approval_the_clock_and_ending_the_contract_race_to_one_outcome(
    escrow: Escrow, book: Ledger, clock: FixedClock, round_: int
) -> None:
    contract_id, milestone_id = submitted_at_deadline(escrow, clock)
    results = race(
        lambda: escrow.approvals.approve(milestone_id),
        lambda: escrow.orders.tick(),
        lambda: escrow.contracts.end_contract(contract_id, ended_by="client"),
        lambda: escrow.approvals.approve(milestone_id),
        lambda: escrow.orders.tick(),
    )
    milestone = escrow.reads.milestone(milestone_id)
    payments = escrow.reads.payments(milestone_id)
    if milestone.state is MilestoneState.RELEASED:
        assert len(payments) == 1 and payments[0].gross == 1_000 * D
        assert milestone.held == 0
    else:  # the client ended the contract first: the money waits for the freelancer
        assert milestone.state is MilestoneState.REFUND_REQUESTED
        assert payments == [] and milestone.held == 1_000 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == sum(p.gross for p in payments)
    report = book.audit()
    assert report.ok, report.to_json()
    CONCURRENCY_REPORT.append(
        f"escrow race {round_}: {milestone.state.value}, "
        f"{sum(isinstance(r, LedgerError) for r in results)} of 5 callers refused"
    )


def test_two_payouts_that_together_exceed_the_balance_cannot_both_succeed(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    contract = escrow.contracts.open_contract(client_id="cl_1", freelancer_id="fr_1", currency="USD", title="Payouts")
    milestone_id = escrow.contracts.add_milestone(contract.id, title="m", amount=1_000 * D).id
    escrow.funding.fund(milestone_id)
    [payment] = escrow.approvals.approve(milestone_id)
    escrow.orders.tick(payment.pending_until + timedelta(seconds=1))
    assert escrow.payouts.balance("fr_1", "USD").available == 850 * D
    for _ in range(3):
        available = escrow.payouts.balance("fr_1", "USD").available
        if available < 2:
            break
        amount = available // 2 + 1  # two of these exceed the balance
        pay = functools.partial(escrow.payouts.request_payout, "fr_1", amount=amount, currency="USD")
        results = race(pay, pay)
        assert sum(not isinstance(r, LedgerError) for r in results) == 1
        assert escrow.payouts.balance("fr_1", "USD").available == available - amount
    assert book.audit().ok
