"""The laws of the provider boundary, checked by Hypothesis on both databases.

Each example runs a random script over two client-freelancer pairs: fund, approve
(part, all, more than held), refund release and bonus payments, pay out, switch
the fee schedule, inject a provider fault into the next call (nothing happens, the
answer is lost, a timeout, a duplicate), and let time pass with `tick`. Refusals
are part of the script (they must change nothing). After every step:

- the audit holds, `provider_matches_ledger` included: what the ledger's provider
  account says equals what the provider's own books say it moved, less the
  movements it lists as not booked yet;
- every fee event agrees with the schedule it names (`fee_chain`), and a pair whose
  charges were all under one schedule has fee revenue R(F(net lifetime billings)).

At the end, once time has passed and every order is sent, nothing is left unbooked.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import select

from ledger.clock import FixedClock
from ledger.db.schema import fee_events, fee_schedules
from ledger.errors import LedgerError
from ledger.escrow.model import MilestoneState
from ledger.escrow.service import Escrow
from ledger.fees.model import ACTIVATION_LEAD
from ledger.fees.schedule import CLASSIC, FLAT_10
from ledger.gateway.simulated import SimulatedGateway
from ledger.service import Ledger
from tests.conftest import START, database_names
from tests.faulty_gateway import AFTER, BEFORE, TIMEOUT, TWICE, FaultyGateway
from tests.property.test_escrow_machine import Connector, postgres_connector, sqlite_connector
from tests.property.test_fee_laws import total_fee

BUDGET = {"ci": 40}
PAIRS = (("cl_1", "fr_1"), ("cl_2", "fr_1"))
SCHEDULES = {s.name: s for s in (CLASSIC, FLAT_10)}

steps = st.one_of(
    st.tuples(st.just("fund"), st.integers(0, 3)),
    st.tuples(st.just("approve"), st.integers(0, 3), st.sampled_from(["all", "part", "more"]), st.integers(1, 900_00)),
    st.tuples(st.just("refund"), st.integers(0, 7), st.integers(1, 100)),
    st.tuples(st.just("payout"), st.integers(1, 100)),
    st.tuples(st.just("switch")),
    st.tuples(
        st.just("fault"),
        st.sampled_from(["charge", "refund", "payout"]),
        st.sampled_from([BEFORE, AFTER, TIMEOUT, TWICE]),
    ),
    st.tuples(st.just("wait"), st.sampled_from([timedelta(minutes=2), timedelta(hours=3), timedelta(days=6)])),
)
amounts = st.lists(st.integers(1, 12_000_00), min_size=4, max_size=4)


class Script:
    """Runs a script's steps against one `Escrow` and checks the laws after each."""

    def __init__(self, book: Ledger, clock: FixedClock, amounts: list[int]) -> None:
        self.book, self.clock = book, clock
        self.provider = SimulatedGateway()
        self.gateway = FaultyGateway(self.provider)
        self.escrow = Escrow(book, self.gateway)  # type: ignore[arg-type]
        self.in_force = "classic"
        self.milestones: list[str] = []
        for n, amount in enumerate(amounts):
            client, freelancer = PAIRS[n % 2]
            contract = self.escrow.contracts.open_contract(
                client_id=client, freelancer_id=freelancer, currency="USD", title="t"
            )
            self.milestones.append(self.escrow.contracts.add_milestone(contract.id, title="m", amount=amount).id)

    def step(self, step: tuple[Any, ...]) -> None:
        action, *args = step
        note(f"{action} {args}")
        try:
            getattr(self, action)(*args)
        except LedgerError as refused:
            note(f"  refused: {type(refused).__name__}: {refused}")
        self.check()

    def fund(self, pick: int) -> None:
        self.escrow.funding.fund(self.milestones[pick])

    def approve(self, pick: int, how: str, extra: int) -> None:
        milestone = self.escrow.reads.milestone(self.milestones[pick])
        held = milestone.held
        amount = {"all": None, "part": max(1, held // 3), "more": held + extra}[how]
        self.escrow.approvals.approve(milestone.id, amount=amount)

    def refund(self, pick: int, percent: int) -> None:
        payments = [p for m in self.milestones for p in self.escrow.reads.payments(m)]
        if payments:
            payment = payments[pick % len(payments)]
            self.escrow.refunds.refund_payment(payment.id, max(1, (payment.gross - payment.refunded) * percent // 100))

    def payout(self, percent: int) -> None:
        available = self.escrow.payouts.balance("fr_1", "USD").available
        if available:
            self.escrow.payouts.request_payout("fr_1", amount=max(1, available * percent // 100), currency="USD")

    def switch(self) -> None:
        self.in_force = "flat-10" if self.in_force == "classic" else "classic"
        self.book.activate_fee_schedule(self.in_force, self.clock.now() + ACTIVATION_LEAD)
        self.clock.advance(ACTIVATION_LEAD)

    def fault(self, method: str, fault: str) -> None:
        self.gateway.script(method, fault)

    def wait(self, span: timedelta) -> None:
        self.clock.advance(span)
        self.escrow.orders.tick()

    def check(self, *, settled: bool = False) -> None:
        report = self.book.audit(provider=self.provider)
        assert report.ok, report.to_json()
        if settled:
            [books] = [c for c in report.checks if c.name == "provider_matches_ledger"]
            assert books.notes == [], books.to_dict()
        self.check_fee_revenue()

    def check_fee_revenue(self) -> None:
        for client, freelancer in PAIRS:
            rows = self.book.transaction(
                lambda uow, c=client, f=freelancer: list(  # type: ignore[misc]
                    uow.connection.execute(
                        select(fee_events.c.kind, fee_events.c.fee, fee_events.c.lifetime_after, fee_schedules.c.name)
                        .join(fee_schedules, fee_schedules.c.id == fee_events.c.schedule_id)
                        .where(fee_events.c.client_id == c, fee_events.c.freelancer_id == f)
                        .order_by(fee_events.c.id)
                    )
                ),
                read_only=True,
            )
            charged_under = {row.name for row in rows if row.kind == "charge"}
            if len(charged_under) != 1:
                continue
            [only] = charged_under
            revenue = sum(row.fee if row.kind == "charge" else -row.fee for row in rows)
            assert revenue == total_fee("USD", rows[-1].lifetime_after, SCHEDULES[only]), (client, rows)

    def settle(self) -> None:
        """Time passes: every order due is sent (no fault is left), nothing stays unbooked."""
        self.gateway._faults.clear()
        for span in (timedelta(hours=2), timedelta(hours=2), timedelta(days=1)):
            self.wait(span)
        self.check(settled=True)
        states = [m.state for m in map(self.escrow.reads.milestone, self.milestones)]
        assert MilestoneState.APPROVAL_PENDING not in states


@pytest.mark.parametrize("database", database_names())
def test_the_provider_and_the_ledger_agree_whatever_fails_between_them(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Whatever the interleaving of fundings, approvals (part, all, more), refunds of release
    and bonus payments, payouts, schedule changes and provider faults: after every step the
    audit holds, `provider_matches_ledger` included, every fee event agrees with its own
    schedule, a pair billed under one schedule has fee revenue R(F(net billings)); and once
    every due order is sent, the provider's books and the ledger agree to the minor unit."""
    connect: Connector = (
        sqlite_connector(request.getfixturevalue("sqlite_template"), tmp_path)
        if database == "sqlite"
        else postgres_connector(request.getfixturevalue("postgres_database"))
    )
    profile = settings.get_current_profile_name()

    @settings(
        max_examples=BUDGET.get(profile, 10),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(amounts=amounts, script=st.lists(steps, min_size=1, max_size=14))
    def law(amounts: list[int], script: list[tuple[Any, ...]]) -> None:
        clock = FixedClock(START)
        book, cleanup = connect(clock)
        try:
            run = Script(book, clock, amounts)
            for step in script:
                run.step(step)
            run.settle()
        finally:
            book.close()
            cleanup()

    law()
