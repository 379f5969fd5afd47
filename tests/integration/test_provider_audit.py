"""Invariant 10: the ledger's provider account matches the provider's own books,
and `provider_matches_ledger` fails when the ledger books money the provider did not move."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from ledger import EntryRequest, FixedClock, Ledger, credit, debit
from ledger.audit import CheckResult, Note
from ledger.db.provider_books import DatabaseBooks
from ledger.escrow.model import InvalidTransition, MilestoneState
from ledger.escrow.service import Escrow
from ledger.gateway import GatewayResult
from ledger.gateway.books import ProviderBooks
from ledger.gateway.simulated import SimulatedGateway
from tests.faulty_gateway import AFTER, FaultyGateway

D = 100
PSP = "assets:psp:simulated"


@pytest.fixture
def provider(book: Ledger, fresh_database_url: str) -> Iterator[SimulatedGateway]:
    gateway = SimulatedGateway(DatabaseBooks(fresh_database_url), fee_basis_points=290, fee_fixed=30)
    yield gateway
    gateway.close()


def provider_check(book: Ledger, books: ProviderBooks | None) -> CheckResult:
    [check] = [c for c in book.audit(provider=books).checks if c.name == "provider_matches_ledger"]
    return check


def milestone(escrow: Escrow, amount: int = 1_000 * D) -> str:
    contract = escrow.contracts.open_contract(client_id="cl_1", freelancer_id="fr_1", currency="USD", title="Logo")
    return escrow.contracts.add_milestone(contract.id, title="Draft", amount=amount).id


def test_the_provider_books_match_the_ledger_over_a_normal_escrow_history(
    book: Ledger, provider: SimulatedGateway, clock: FixedClock
) -> None:
    escrow = Escrow(book, provider)
    approved, refunded, disputed = milestone(escrow), milestone(escrow, 400 * D), milestone(escrow, 200 * D)
    for milestone_id in (approved, refunded, disputed):
        escrow.funding.fund(milestone_id)
    escrow.approvals.approve(approved)
    escrow.contracts.end_contract(escrow.reads.milestone(refunded).contract_id, ended_by="freelancer")
    funding = next(r for r in provider.records() if r.metadata.get("milestone") == disputed)
    report = provider.open_dispute(funding.reference, fee=15 * D)
    escrow.chargebacks.apply_dispute(report, disputed)
    escrow.chargebacks.apply_dispute(provider.close_dispute(report.id, won=True), disputed)
    clock.advance(timedelta(days=6))
    escrow.orders.tick()
    escrow.payouts.request_payout("fr_1", amount=500 * D, currency="USD")
    kinds = sorted({m.kind for m in provider.movements()})
    assert kinds == ["charge", "dispute_reinstatement", "dispute_withdrawal", "fee", "refund", "transfer"]
    check = provider_check(book, provider)
    assert check.ok and check.notes == [], check.to_dict()
    assert book.audit(provider=provider).ok


def test_money_the_provider_moved_and_the_ledger_has_not_booked_is_listed_without_failing(
    book: Ledger, provider: SimulatedGateway, clock: FixedClock
) -> None:
    faulty = FaultyGateway(provider)
    escrow = Escrow(book, faulty)  # type: ignore[arg-type]
    milestone_id = milestone(escrow)
    escrow.funding.fund(milestone_id)
    escrow.approvals.approve(milestone_id)
    clock.advance(timedelta(days=6))
    escrow.orders.tick()
    faulty.script("payout", AFTER)
    payout = escrow.payouts.request_payout("fr_1", amount=500 * D, currency="USD")  # paid; the answer was lost
    [transfer] = [r for r in provider.records() if r.kind == "transfer"]
    check = provider_check(book, provider)
    assert check.ok, check.to_dict()
    assert [(n.details["kind"], n.details["reference"], n.details["amount"]) for n in check.notes] == [
        ("transfer", transfer.reference, -500 * D)
    ]
    clock.advance(timedelta(minutes=1))  # past the order's backoff
    escrow.orders.tick()  # sent again with the same key: the provider's first answer settles it
    assert escrow.payouts.payout(payout.id).gateway_reference == transfer.reference
    check = provider_check(book, provider)
    assert check.ok and check.notes == [], check.to_dict()


def test_money_the_ledger_books_that_the_provider_did_not_move_fails_the_check(
    book: Ledger, provider: SimulatedGateway
) -> None:
    escrow = Escrow(book, provider)
    milestone_id = milestone(escrow)
    escrow.funding.fund(milestone_id)
    assert provider_check(book, provider).ok
    book.post(
        EntryRequest(
            "phantom",
            "escrow.fund",
            (debit(PSP, 300 * D, "USD"), credit(f"liabilities:escrow:{milestone_id}", 300 * D, "USD")),
        )
    )
    check = provider_check(book, provider)
    assert not check.ok
    by_problem = {p.message: p.details for p in check.problems}
    assert {p.check for p in check.problems} == {"provider_matches_ledger"}
    assert by_problem["the ledger booked money the provider has no record of"]["ledger_amount"] == 300 * D
    totals = by_problem["the provider account differs from the provider's books"]
    assert totals["difference"] == 300 * D and totals["provider"]["charged"] == 1_000 * D


def test_the_check_does_not_apply_when_the_gateway_keeps_no_books(book: Ledger) -> None:
    check = provider_check(book, None)
    assert check.ok and check.notes == [
        Note(
            "provider_matches_ledger",
            "",
            {"applies": False, "reason": "the payment gateway keeps no books the ledger can read"},
        )
    ]


class ApprovesDuringTheBonusCharge(SimulatedGateway):
    """Another approval of the same milestone commits while the bonus is being charged."""

    escrow: Escrow
    milestone_id: str
    raced = False

    def charge(self, **request: Any) -> GatewayResult:
        result = super().charge(**request)
        if request["metadata"].get("bonus") and not self.raced:
            self.raced = True
            with pytest.raises(InvalidTransition):  # the milestone is approval_pending
                self.escrow.approvals.approve(self.milestone_id, amount=300 * D)
        return result


def race_a_bonus(book: Ledger, url: str) -> ApprovesDuringTheBonusCharge:
    """1,000.00 held on a submitted milestone; approve 1,500.00 (a 500.00 bonus) while 300.00 is approved."""
    gateway = ApprovesDuringTheBonusCharge(DatabaseBooks(url))
    gateway.escrow = Escrow(book, gateway)
    gateway.milestone_id = milestone(gateway.escrow)
    gateway.escrow.funding.fund(gateway.milestone_id)
    gateway.escrow.contracts.submit(gateway.milestone_id)
    gateway.escrow.approvals.approve(gateway.milestone_id, amount=1_500 * D)
    assert gateway.escrow.reads.milestone(gateway.milestone_id).state is MilestoneState.RELEASED
    return gateway


def test_a_bonus_raced_by_another_approval_books_only_what_the_provider_charged(
    book: Ledger, fresh_database_url: str
) -> None:
    gateway = race_a_bonus(book, fresh_database_url)
    try:
        assert provider_check(book, gateway).ok
    finally:
        gateway.close()
