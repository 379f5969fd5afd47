"""Races on real PostgreSQL over hourly weeks: ticks running at once fire each step of a
week once, and time logged while the week closes is either billed or refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from ledger import FixedClock, Ledger, LedgerError
from ledger.db.schema import payment_orders, payments
from ledger.escrow.service import Escrow
from ledger.escrow.timesheet import Segment
from ledger.gateway.simulated import SimulatedGateway
from tests.conftest import CONCURRENCY_REPORT
from tests.integration.test_escrow_races import race
from tests.integration.test_hourly_cycle import AVAILABLE, CLOSE, MONDAY, REVIEW_END, WEEK

pytestmark = pytest.mark.postgresql_only
CONTRACTS = 4


@pytest.fixture
def escrow(book: Ledger) -> Escrow:
    return Escrow(book, SimulatedGateway())


def hourly(escrow: Escrow, clock: FixedClock, n: int) -> list[str]:
    clock.set(MONDAY - timedelta(days=7))
    ids = [
        escrow.hourly.open_contract(
            client_id=f"cl_{i % 2}",
            freelancer_id="fr_race",
            currency="USD",
            title="hours",
            hourly_rate=6000,
            weekly_limit_hours=40,
            manual_time_allowed=True,
        ).id
        for i in range(n)
    ]
    clock.set(MONDAY + timedelta(days=1))
    for contract_id in ids:
        start = MONDAY + timedelta(hours=9)
        escrow.hourly.log_segment(contract_id, Segment(start=start, end=start + timedelta(hours=2), memo="w"))
    return ids


def count(book: Ledger, table: object) -> int:
    return int(
        book.transaction(
            lambda uow: uow.connection.execute(select(func.count()).select_from(table)).scalar_one(),  # type: ignore[attr-defined]
            read_only=True,
        )
    )


def test_ticks_racing_close_charge_release_and_mature_each_week_once(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    contract_ids = hourly(escrow, clock, CONTRACTS)
    for moment in (CLOSE, REVIEW_END, AVAILABLE):
        clock.set(moment)
        results = race(*[lambda: escrow.orders.tick(moment)] * 3)  # noqa: B023
        assert not [r for r in results if isinstance(r, LedgerError)], results
    assert count(book, payments) == CONTRACTS
    assert count(book, payment_orders) >= CONTRACTS
    for contract_id in contract_ids:
        assert escrow.hourly.week(contract_id, WEEK).state == "available"
    balance = escrow.payouts.balance("fr_race", "USD")
    # 2 h at 60.00 per contract; the two clients' lifetime chains: 120.00 + 120.00 each at 20%.
    assert (balance.pending, balance.available) == (0, CONTRACTS * 12000 * 8 // 10)
    assert book.audit().ok, book.audit().summary()


@pytest.mark.parametrize("round_", range(4))
def test_time_logged_while_the_week_closes_is_billed_or_refused_never_lost(
    escrow: Escrow, book: Ledger, clock: FixedClock, round_: int
) -> None:
    (contract_id,) = hourly(escrow, clock, 1)
    # This server's clock is a minute behind the worker closing the week.
    clock.set(CLOSE - timedelta(minutes=1))
    start = MONDAY + timedelta(days=4, hours=9)
    late = Segment(start=start, end=start + timedelta(hours=1), memo="late", manual=True)
    logged, _ = race(lambda: escrow.hourly.log_segment(contract_id, late), lambda: escrow.orders.tick(CLOSE))
    week = escrow.hourly.week(contract_id, WEEK)
    if isinstance(logged, LedgerError):
        assert week.bill.billable_minutes == 120
        outcome = "refused"
    else:
        assert week.bill.billable_minutes == 180
        outcome = "billed"
    closed = book.transaction(lambda uow: uow.escrow.closed_week(contract_id, WEEK), read_only=True)
    assert closed is not None and closed.billable_minutes == week.bill.billable_minutes
    assert book.audit().ok, book.audit().summary()
    CONCURRENCY_REPORT.append(f"time logged racing the close, round {round_}: {outcome}")
