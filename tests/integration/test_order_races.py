"""Races around payment orders on real PostgreSQL: two dispatcher processes over the
same due orders, and requests racing on one milestone while its orders are in flight.
Each ends in one outcome, the provider moves each sum once, and the ledger books
exactly what it moved (`provider_matches_ledger`). SQLite serializes every writer on
one lock, so these are skipped there."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest

from ledger import FixedClock, Ledger, LedgerError
from ledger.bootstrap import connect
from ledger.db.provider_books import DatabaseBooks
from ledger.escrow.dispatcher import Dispatcher
from ledger.escrow.model import MilestoneState
from ledger.escrow.service import Escrow
from ledger.gateway import GatewayResult
from ledger.gateway.books import ProviderRecord
from ledger.gateway.simulated import SimulatedGateway
from tests.conftest import CONCURRENCY_REPORT
from tests.faulty_gateway import BEFORE, FaultyGateway
from tests.integration.test_order_faults import assert_books_agree

D = 100
S = MilestoneState
PAST_BACKOFF = timedelta(seconds=31)


def needs_postgresql(book: Ledger) -> None:
    if book.database.dialect != "postgresql":
        pytest.skip("needs concurrent writers with row locks: SQLite serializes every writer on one lock")


@pytest.fixture
def provider(book: Ledger, fresh_database_url: str) -> Iterator[SimulatedGateway]:
    needs_postgresql(book)
    gateway = SimulatedGateway(DatabaseBooks(fresh_database_url), fee_basis_points=290, fee_fixed=30)
    yield gateway
    gateway.close()


def new_milestone(escrow: Escrow, amount: int = 1_000 * D, client: str = "cl_1") -> str:
    contract = escrow.contracts.open_contract(client_id=client, freelancer_id="fr_1", currency="USD", title="Logo")
    return escrow.contracts.add_milestone(contract.id, title="Draft", amount=amount).id


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


def refused(results: list[object]) -> int:
    return sum(isinstance(r, LedgerError) for r in results)


def assert_booked_as_moved(book: Ledger, provider: SimulatedGateway) -> None:
    records = provider.records()
    assert all(r.status == "succeeded" for r in records), records
    assert len({r.idempotency_key for r in records}) == len(records), records
    assert_books_agree(book, provider)


def charges_of(records: list[ProviderRecord], milestone_id: str) -> list[ProviderRecord]:
    return [r for r in records if r.kind == "charge" and r.metadata.get("milestone") == milestone_id]


# --- two dispatchers on the same due orders ------------------------------------------------


def dispatch_in_a_process(url: str, now: datetime, owner: str, barrier: Barrier, out: Queue[Any]) -> None:
    """One dispatcher process with its own ledger and provider connection, one order per claim,
    so that the two processes contend for every order."""
    import ledger.escrow.dispatcher as dispatcher

    dispatcher.BATCH = 1
    book = connect(url, clock=FixedClock(now))
    gateway = FaultyGateway(SimulatedGateway(DatabaseBooks(url), fee_basis_points=290, fee_fixed=30))
    try:
        barrier.wait(timeout=30)
        report = Dispatcher(book, gateway, owner=owner).run()  # type: ignore[arg-type]
        out.put((owner, report.sent, gateway.sent, report.errors))
    finally:
        gateway.inner.close()
        book.close()


def test_two_dispatcher_processes_send_each_due_order_once(
    book: Ledger, provider: SimulatedGateway, fresh_database_url: str, clock: FixedClock
) -> None:
    faulty = FaultyGateway(provider)
    escrow = Escrow(book, faulty)  # type: ignore[arg-type]
    refunded = [new_milestone(escrow, client=f"cl_r{i}") for i in range(6)]
    for milestone_id in refunded:
        escrow.funding.fund(milestone_id)
    charged = [new_milestone(escrow, client=f"cl_c{i}") for i in range(6)]
    faulty.script("charge", *[BEFORE] * len(charged))
    faulty.script("refund", *[BEFORE] * len(refunded))
    for milestone_id in charged:
        escrow.funding.fund(milestone_id)  # the provider is down: due again in 30 s
    for milestone_id in refunded:
        escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="freelancer")
    due_keys = {o.provider_key for o in book.transaction(lambda uow: uow.orders.open_orders(), read_only=True)}
    assert len(due_keys) == 12
    clock.advance(PAST_BACKOFF)

    # fork: a spawned interpreter spends seconds importing; each child opens its own
    # engines and never touches the ones it inherited.
    context = multiprocessing.get_context("fork")
    barrier, out = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=dispatch_in_a_process, args=(fresh_database_url, clock.now(), f"p{i}", barrier, out))
        for i in range(2)
    ]
    for process in processes:
        process.start()
    reports = [out.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert [errors for *_, errors in reports] == [[], []]
    sent = Counter(key for _, _, calls, _ in reports for _, key in calls)
    assert set(sent) == due_keys and set(sent.values()) == {1}, sent  # each order reached the provider once
    assert [escrow.reads.milestone(m).state for m in charged] == [S.FUNDED] * 6
    assert [escrow.reads.milestone(m).state for m in refunded] == [S.REFUNDED] * 6
    assert Counter(r.kind for r in provider.records()) == {"charge": 12, "refund": 6}
    assert_booked_as_moved(book, provider)
    split = " + ".join(str(len(calls)) for _, _, calls, _ in sorted(reports))
    CONCURRENCY_REPORT.append(
        f"two dispatcher processes over 12 due orders: {split} sent, each once; "
        f"{sum(n for _, n, _, _ in reports)} orders handled with the processing fees"
    )


# --- requests racing on one milestone ------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_an_approval_with_a_bonus_and_a_partial_approval_race_to_one_outcome(
    book: Ledger, provider: SimulatedGateway, round_: int
) -> None:
    escrow = Escrow(book, provider)
    milestone_id = new_milestone(escrow)
    escrow.funding.fund(milestone_id)
    escrow.contracts.submit(milestone_id)
    lag = (0, 0.005, 0.05)[round_]  # later rounds let the bonus approval get ahead

    def partial() -> object:
        time.sleep(lag)
        return escrow.approvals.approve(milestone_id, amount=300 * D)

    results = race(lambda: escrow.approvals.approve(milestone_id, amount=1_500 * D), partial)  # 500.00 more: a bonus
    milestone = escrow.reads.milestone(milestone_id)
    assert (milestone.state, milestone.held) == (S.RELEASED, 0)
    charges = charges_of(provider.records(), milestone_id)
    [bonus] = [c for c in charges if c.metadata.get("bonus")]
    payments = sorted((p.kind, p.gross) for p in escrow.reads.payments(milestone_id))
    if isinstance(results[1], LedgerError):  # the bonus approval came first: the milestone was not active
        outcome = "bonus approval first, partial refused"
        assert bonus.amount == 500 * D and payments == [("bonus", 500 * D), ("release", 1_000 * D)]
    else:  # the partial approval came first: the bonus is what the other asked beyond the 700.00 left
        outcome = "partial approval first, then the bonus"
        assert bonus.amount == 800 * D
        assert payments == [("bonus", 800 * D), ("release", 300 * D), ("release", 700 * D)]
    assert sum(gross for _, gross in payments) == sum(c.amount for c in charges)  # released = charged
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == sum(gross for _, gross in payments)
    assert_booked_as_moved(book, provider)
    CONCURRENCY_REPORT.append(f"bonus vs partial approval race {round_}: {outcome}")


@pytest.mark.parametrize("round_", range(3))
def test_approval_accepting_a_refund_request_the_clock_and_ending_the_contract_race_to_one_outcome(
    book: Ledger, provider: SimulatedGateway, clock: FixedClock, round_: int
) -> None:
    escrow = Escrow(book, provider)
    milestone_id = new_milestone(escrow)
    escrow.funding.fund(milestone_id)
    deadline = escrow.contracts.submit(milestone_id).review_deadline
    assert deadline is not None
    clock.set(deadline)
    contract_id = escrow.reads.milestone(milestone_id).contract_id
    retries = book.database.retries
    results = race(
        lambda: escrow.approvals.approve(milestone_id),
        lambda: escrow.contracts.end_contract(contract_id, ended_by="client"),
        lambda: escrow.refunds.accept_refund_request(milestone_id),
        lambda: escrow.orders.tick(),  # the review deadline: auto-release, and every due order
    )
    milestone = escrow.reads.milestone(milestone_id)
    payments = escrow.reads.payments(milestone_id)
    records = provider.records()
    refunds = [r for r in records if r.kind == "refund"]
    [funding] = charges_of(records, milestone_id)
    if milestone.state is S.RELEASED:
        assert [p.gross for p in payments] == [1_000 * D] and refunds == []
    elif milestone.state is S.REFUND_REQUESTED:  # ended first; the freelancer's answer came too early
        assert payments == [] and milestone.held == 1_000 * D and refunds == []
    else:
        assert milestone.state is S.REFUNDED and payments == [] and milestone.held == 0
        assert [(r.amount, r.charge_reference) for r in refunds] == [(1_000 * D, funding.reference)]
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == sum(p.gross for p in payments)
    # Ending a contract locks it, then its milestones; an approval locks its milestone, then
    # inserts a payment of the contract: they take turns, never deadlock (a deadlock is only
    # detected after PostgreSQL's deadlock_timeout, a second, and the loser runs again).
    assert book.database.retries == retries
    assert_booked_as_moved(book, provider)
    CONCURRENCY_REPORT.append(
        f"approve/accept/tick/end race {round_}: {milestone.state.value}, {refused(results)} of 4 callers refused, "
        "no transaction retried"
    )


class RetriedDuringTheBonusCharge(SimulatedGateway):
    """The client's retry of an approval (same request key) arrives while its original's
    bonus is being charged."""

    retry: Callable[[], object]
    during: list[object]

    def charge(self, **request: Any) -> GatewayResult:
        result = super().charge(**request)
        if request["metadata"].get("bonus") and not self.during:
            self.during.append(self.retry())
        return result


def test_a_request_retried_with_its_key_while_the_original_is_in_flight_gets_its_one_result(
    book: Ledger, provider: SimulatedGateway, fresh_database_url: str
) -> None:
    gateway = RetriedDuringTheBonusCharge(DatabaseBooks(fresh_database_url))
    try:
        escrow = Escrow(book, gateway)
        milestone_id = new_milestone(escrow)
        escrow.funding.fund(milestone_id)

        def approve() -> object:
            return tuple(
                sorted(p.id for p in escrow.approvals.approve(milestone_id, amount=1_500 * D, request_key="k"))
            )

        gateway.retry, gateway.during = approve, []
        results = race(*[approve] * 4)
        payments = escrow.reads.payments(milestone_id)
        assert sorted(p.gross for p in payments) == [500 * D, 1_000 * D]
        done = tuple(sorted(p.id for p in payments))
        assert gateway.during == [()]  # in flight: the retry answers what is committed (approval pending)
        assert set(results) <= {(), done} and done in results, results  # the original answered its payments
        assert approve() == done  # and so does every later retry
        assert escrow.reads.milestone(milestone_id).state is S.RELEASED
        records = provider.records()
        assert [c.amount for c in charges_of(records, milestone_id) if c.metadata.get("bonus")] == [500 * D]
        assert_booked_as_moved(book, provider)
    finally:
        gateway.close()
    CONCURRENCY_REPORT.append(
        f"request key retried during its own bonus charge: 4 callers + 1 retry in flight, "
        f"{sum(r == () for r in results)} answered approval pending, 1 bonus charged"
    )
