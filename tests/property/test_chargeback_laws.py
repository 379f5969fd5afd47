"""The laws of chargebacks, checked by Hypothesis over whole dispute histories on both databases.

Each example funds a milestone, releases some of it (or none), lets the security
period pass or not, pays some out, then a dispute of some amount is opened and
closed won or lost, its reports delivered in any order and any number of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from ledger.clock import FixedClock
from ledger.escrow.chart import (
    CHARGEBACKS,
    DISPUTED,
    PSP_FEES,
    SERVICE_FEES,
    available_account_code,
    escrow_account_code,
    pending_account_code,
)
from ledger.escrow.model import DisputeOutcome
from ledger.escrow.service import Escrow
from ledger.gateway import BalanceMove, DisputeReport
from ledger.gateway.simulated import SimulatedGateway
from ledger.service import Ledger
from tests.conftest import START, database_names
from tests.property.test_escrow_machine import Connector, postgres_connector, sqlite_connector

PSP = "assets:psp:simulated"
DISPUTE_FEE = 1500
BUDGET = {"ci": 40}


@dataclass(frozen=True)
class History:
    amount: int
    released_percents: tuple[int, ...]  # approvals, each a percent of the milestone (capped at what is held)
    matured: bool  # the 5-day security period has passed
    paid_out_percent: int  # of what is available
    disputed_percent: int  # of the milestone's amount, at least one minor unit
    won: bool
    deliveries: tuple[int, ...]  # reports 0 (open), 1 (closed), 2 (a "won" that lacks its reinstatement)

    def disputed(self) -> int:
        return max(1, self.amount * self.disputed_percent // 100)


histories = st.builds(
    History,
    amount=st.integers(1, 30_000_00),
    released_percents=st.lists(st.sampled_from([20, 50, 100]), max_size=2).map(tuple),
    matured=st.booleans(),
    paid_out_percent=st.sampled_from([0, 50, 100]),
    disputed_percent=st.sampled_from([1, 50, 100, 100]),
    won=st.booleans(),
    deliveries=st.lists(st.sampled_from([0, 1, 2]), min_size=0, max_size=4).map(tuple),
)


def play(escrow: Escrow, clock: FixedClock, history: History) -> tuple[str, list[DisputeReport]]:
    contract = escrow.contracts.open_contract(client_id="cl_1", freelancer_id="fr_1", currency="USD", title="t")
    milestone_id = escrow.contracts.add_milestone(contract.id, title="m", amount=history.amount).id
    escrow.funding.fund(milestone_id)
    for percent in history.released_percents:  # one payment or two, some or all of it
        held = escrow.reads.milestone(milestone_id).held
        if released := min(held, history.amount * percent // 100):
            escrow.approvals.approve(milestone_id, amount=released)
    if history.matured:
        clock.advance(timedelta(days=5))
        escrow.orders.tick()
    available = escrow.payouts.balance("fr_1", "USD").available
    if payout := available * history.paid_out_percent // 100:
        escrow.payouts.request_payout("fr_1", amount=payout, currency="USD")
    disputed = history.disputed()
    withdrawal = BalanceMove("txn_withdrawal", -disputed, DISPUTE_FEE, "USD")
    closing = (
        (withdrawal, BalanceMove("txn_reinstatement", disputed, -DISPUTE_FEE, "USD")) if history.won else (withdrawal,)
    )
    reports = [
        DisputeReport("dp_1", "pi_1", disputed, "USD", "needs_response", (withdrawal,)),
        DisputeReport("dp_1", "pi_1", disputed, "USD", "won" if history.won else "lost", closing),
        DisputeReport("dp_1", "pi_1", disputed, "USD", "won" if history.won else "under_review", (withdrawal,)),
    ]
    return milestone_id, reports


def money(book: Ledger, milestone_id: str) -> dict[str, int]:
    codes = (PSP, PSP_FEES, DISPUTED, CHARGEBACKS, SERVICE_FEES, escrow_account_code(milestone_id))
    codes += (pending_account_code("fr_1"), available_account_code("fr_1"))
    found = {a.code for a in book.transaction(lambda uow: uow.accounts.all_with_codes(list(codes)), read_only=True)}
    return {code: book.balance(code, "USD") if code in found else 0 for code in codes}


def check(book: Ledger, escrow: Escrow, clock: FixedClock, history: History) -> None:
    note(repr(history))
    milestone_id, reports = play(escrow, clock, history)
    before = money(book, milestone_id)
    held_before = escrow.reads.milestone(milestone_id).held
    for index in (*history.deliveries, 1):  # whatever came before, the closing report arrives
        escrow.chargebacks.apply_dispute(reports[index], milestone_id)
    after = money(book, milestone_id)
    size = len(book.journal(limit=1000).entries)
    for report in reports:  # every report again: nothing changes
        escrow.chargebacks.apply_dispute(report, milestone_id)
    assert len(book.journal(limit=1000).entries) == size and money(book, milestone_id) == after
    dispute = escrow.chargebacks.dispute("dp_1")
    assert after[DISPUTED] == 0 and escrow.reads.milestone(milestone_id).frozen_by is None
    if history.won:
        # A won dispute leaves no trace on anyone's money.
        assert dispute.outcome is DisputeOutcome.WON and after == before
    else:
        # The loss is accounted for to the minor unit, escrow first, and the platform
        # only bears what no balance of the freelancer could cover.
        lost = history.disputed()
        assert dispute.outcome is DisputeOutcome.LOST
        # Each figure is what the balances say moved, and together they cover the loss.
        escrow_code = escrow_account_code(milestone_id)
        freelancer = (pending_account_code("fr_1"), available_account_code("fr_1"))
        assert before[escrow_code] - after[escrow_code] == dispute.recovered_from_escrow == min(held_before, lost)
        assert sum(before[c] - after[c] for c in freelancer) == dispute.recovered_from_freelancer
        assert before[SERVICE_FEES] - after[SERVICE_FEES] == dispute.fee_returned
        assert after[CHARGEBACKS] - before[CHARGEBACKS] == dispute.unrecovered
        covered = dispute.recovered_from_escrow + dispute.recovered_from_freelancer + dispute.fee_returned
        assert dispute.recovered_from_refunds == 0  # no refund was refused in these histories
        assert covered + dispute.unrecovered == lost
        if dispute.unrecovered:
            assert after[available_account_code("fr_1")] == 0 and after[pending_account_code("fr_1")] == 0
    report = book.audit()
    assert report.ok, report.to_dict()


@pytest.mark.parametrize("database", database_names())
def test_chargeback_laws(database: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Conservation and idempotency of chargebacks: whatever the order and repetition of the
    dispute's reports, a won dispute changes no balance, a lost one is accounted for exactly
    (escrow, then freelancer, then platform), no floor is broken and every audit check holds."""
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
    @given(histories)
    def law(history: History) -> None:
        clock = FixedClock(START)
        book, cleanup = connect(clock)
        try:
            check(book, Escrow(book, SimulatedGateway()), clock, history)
        finally:
            book.close()
            cleanup()

    law()
