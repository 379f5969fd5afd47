"""The contract of the escrow store, on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from ledger.accounts import AccountSpec, AccountType
from ledger.clock import FixedClock
from ledger.errors import NotFound
from ledger.escrow.chart import escrow_account_code
from ledger.escrow.model import (
    DisputeOutcome,
    MilestoneState,
    PaymentRefund,
    PayoutState,
    RefundOrderState,
    RefundSource,
    UnknownContract,
    UnknownMilestone,
    UnknownPayment,
    UnknownPayout,
)
from ledger.journal import EntryRequest, credit, debit
from ledger.ports.unit_of_work import Transactions, UnitOfWork
from tests.contracts.rows import CASH, an_entry, contract, dispute, milestone, payment, payout, refund_order


@pytest.fixture
def with_milestone(db: Transactions, clock: FixedClock) -> Transactions:
    def work(uow: UnitOfWork) -> None:
        uow.escrow.add_contract(contract(clock.now()))
        uow.escrow.add_milestone(milestone(clock.now()))

    db.transaction(work)
    return db


def test_a_contract_is_stored_and_ended(db: Transactions, clock: FixedClock) -> None:
    db.transaction(lambda uow: uow.escrow.add_contract(contract(clock.now())))
    assert db.transaction(lambda uow: uow.escrow.contract("ct_1", lock=True)) == contract(clock.now())
    db.transaction(lambda uow: uow.escrow.end_contract("ct_1", "client", clock.now()))
    ended = db.transaction(lambda uow: uow.escrow.contract("ct_1"))
    assert (ended.ended_by, ended.ended_at) == ("client", clock.now())
    with pytest.raises(UnknownContract):
        db.transaction(lambda uow: uow.escrow.contract("ct_none"))


def test_milestones_are_listed_in_the_order_they_were_added(with_milestone: Transactions, clock: FixedClock) -> None:
    db = with_milestone
    db.transaction(lambda uow: uow.escrow.add_milestone(milestone(clock.now() + timedelta(seconds=1), "ms_0")))
    assert [m.id for m in db.transaction(lambda uow: uow.escrow.milestones_of("ct_1"))] == ["ms_1", "ms_0"]
    assert db.transaction(lambda uow: uow.escrow.milestone("ms_1")) == milestone(clock.now())
    assert db.transaction(lambda uow: uow.escrow.milestone_ids_of_client("cl_1", "USD")) == ["ms_0", "ms_1"]
    assert db.transaction(lambda uow: uow.escrow.milestone_ids_of_client("cl_1", "EUR")) == []
    with pytest.raises(UnknownMilestone):
        db.transaction(lambda uow: uow.escrow.milestone("ms_none"))


def test_a_milestone_holds_what_its_escrow_account_holds(with_milestone: Transactions, clock: FixedClock) -> None:
    db = with_milestone
    escrow = AccountSpec(escrow_account_code("ms_1"), AccountType.LIABILITY, "USD", floor=0)

    def fund(uow: UnitOfWork) -> None:
        uow.accounts.open(replace(escrow, normal_side=escrow.type.normal_side))
        uow.accounts.open(replace(CASH))
        move = EntryRequest("f", "escrow.fund", (debit(CASH.code, 700, "USD"), credit(escrow.code, 700, "USD")))
        uow.journal.write([move], recorded_at=clock.now())

    db.transaction(fund)
    assert db.transaction(lambda uow: uow.escrow.milestone("ms_1").held) == 700


def test_saving_a_milestone_writes_its_state_deadlines_and_reason_only(
    with_milestone: Transactions, clock: FixedClock
) -> None:
    db = with_milestone
    due = clock.now() + timedelta(days=14)
    changed = replace(
        milestone(clock.now()), state=MilestoneState.SUBMITTED, review_deadline=due, failure_reason="x", title="New"
    )
    db.transaction(lambda uow: uow.escrow.save_milestone(changed))
    saved = db.transaction(lambda uow: uow.escrow.milestone("ms_1"))
    assert (saved.state, saved.review_deadline, saved.failure_reason, saved.title) == (
        MilestoneState.SUBMITTED,
        due,
        "x",
        "First draft",
    )


def test_funding_moves_through_its_attempts(with_milestone: Transactions) -> None:
    db = with_milestone
    db.transaction(
        lambda uow: uow.escrow.save_milestone(replace(uow.escrow.milestone("ms_1"), failure_reason="declined"))
    )
    db.transaction(lambda uow: uow.escrow.begin_funding("ms_1", funding_key="fk_1"))
    funding = db.transaction(lambda uow: (uow.escrow.milestone("ms_1"), uow.escrow.funding("ms_1")))
    assert (funding[0].state, funding[0].failure_reason, funding[1]) == (MilestoneState.FUNDING, None, ("fk_1", None))
    db.transaction(lambda uow: uow.escrow.set_funding_key("ms_1", "fk_2"))
    db.transaction(lambda uow: uow.escrow.set_funding_reference("ms_1", "ch_0"))
    assert db.transaction(lambda uow: (uow.escrow.funding("ms_1"), uow.escrow.funding_reference("ms_1"))) == (
        ("fk_2", None),
        "ch_0",
    )
    db.transaction(lambda uow: uow.escrow.mark_funded("ms_1", reference="ch_1", psp_account="assets:psp:simulated"))
    assert db.transaction(lambda uow: uow.escrow.milestone("ms_1").state) is MilestoneState.FUNDED
    assert db.transaction(lambda uow: (uow.escrow.funding("ms_1"), uow.escrow.funding_reference("ms_1"))) == (
        ("fk_2", "assets:psp:simulated"),
        "ch_1",
    )
    assert db.transaction(lambda uow: uow.escrow.milestone_title("ms_1")) == "First draft"
    assert db.transaction(lambda uow: uow.escrow.milestone_contract_id("ms_1")) == "ct_1"


def test_payments_are_found_by_id_and_request_key_in_release_order(
    with_milestone: Transactions, clock: FixedClock
) -> None:
    db = with_milestone
    at = clock.now()

    def work(uow: UnitOfWork) -> None:
        entry_id = an_entry(uow, "e", at)
        uow.escrow.add_payment(
            payment(at + timedelta(seconds=1), entry_id, "pay_a"), pending_remaining=800, request_key="rk"
        )
        uow.escrow.add_payment(payment(at, entry_id, "pay_b"), pending_remaining=0, request_key=None)

    db.transaction(work)
    assert [p.id for p in db.transaction(lambda uow: uow.escrow.payments_of("ms_1"))] == ["pay_b", "pay_a"]
    found = db.transaction(lambda uow: uow.escrow.payment_by_request_key("rk"))
    assert found is not None and found.id == "pay_a"
    assert db.transaction(lambda uow: uow.escrow.payment_by_request_key("other")) is None
    assert db.transaction(lambda uow: uow.escrow.pending_remaining("pay_a")) == 800
    with pytest.raises(UnknownPayment):
        db.transaction(lambda uow: uow.escrow.payment("pay_none"))


def test_a_refund_after_release_updates_the_payment(with_milestone: Transactions, clock: FixedClock) -> None:
    db = with_milestone
    at = clock.now()

    def work(uow: UnitOfWork) -> None:
        entry_id = an_entry(uow, "e", at)
        uow.escrow.add_payment(payment(at, entry_id), pending_remaining=800, request_key=None)
        uow.escrow.record_payment_refund("pay_1", refunded=300, pending_remaining=560)
        uow.escrow.set_pending_until("pay_1", at + timedelta(days=9))
        refund = PaymentRefund("rf_1", "pay_1", 300, 60, entry_id)
        uow.escrow.add_refund(refund, source=RefundSource.PENDING, created_at=at, request_key="rk-refund")

    db.transaction(work)
    paid = db.transaction(lambda uow: uow.escrow.payment("pay_1"))
    assert (paid.refunded, paid.pending_until) == (300, at + timedelta(days=9))
    assert db.transaction(lambda uow: uow.escrow.pending_remaining("pay_1")) == 560
    refund = db.transaction(lambda uow: uow.escrow.refund_by_request_key("rk-refund"))
    assert refund is not None and (refund.id, refund.amount, refund.fee_returned, refund.status) == (
        "rf_1",
        300,
        60,
        "pending",
    )
    assert db.transaction(lambda uow: uow.escrow.refund_by_request_key("none")) is None


def test_a_payment_request_key_is_taken_once(
    with_milestone: Transactions, clock: FixedClock, duplicate: type[Exception]
) -> None:
    db = with_milestone
    at = clock.now()
    entry_id = db.transaction(lambda uow: an_entry(uow, "e", at))
    db.transaction(
        lambda uow: uow.escrow.add_payment(payment(at, entry_id, "pay_a"), pending_remaining=0, request_key="rk")
    )
    with pytest.raises(duplicate):
        db.transaction(
            lambda uow: uow.escrow.add_payment(payment(at, entry_id, "pay_b"), pending_remaining=0, request_key="rk")
        )


def test_payouts_in_transit_are_summed_and_settled(db: Transactions, clock: FixedClock) -> None:
    at = clock.now()

    def work(uow: UnitOfWork) -> None:
        uow.escrow.add_payout(payout(at, "po_1", 500), request_key="rk-1")
        uow.escrow.add_payout(payout(at + timedelta(seconds=1), "po_2", 200), request_key=None)
        uow.escrow.add_payout(payout(at, "po_3", 900, freelancer="fr_2"), request_key=None)

    db.transaction(work)
    assert db.transaction(lambda uow: uow.escrow.in_transit("fr_1", "USD")) == 700
    assert [p.id for p in db.transaction(lambda uow: uow.escrow.unsent_payouts(at, 10))] == ["po_1", "po_3", "po_2"]
    assert [p.id for p in db.transaction(lambda uow: uow.escrow.unsent_payouts(at + timedelta(seconds=1), 10))] == [
        "po_2"
    ]
    db.transaction(
        lambda uow: uow.escrow.settle_payout(
            "po_1", PayoutState.PAID, reference="tr_1", failure_reason=None, settled_at=at
        )
    )
    assert db.transaction(lambda uow: uow.escrow.in_transit("fr_1", "USD")) == 200
    paid = db.transaction(lambda uow: uow.escrow.payout_by_request_key("rk-1"))
    assert paid is not None and (paid.state, paid.gateway_reference, paid.settled_at) == (PayoutState.PAID, "tr_1", at)
    db.transaction(
        lambda uow: uow.escrow.record_payout_reversal(
            "po_1", amount_reversed=100, state=PayoutState.PAID, failure_reason="r"
        )
    )
    assert db.transaction(lambda uow: uow.escrow.payout("po_1").amount_reversed) == 100
    with pytest.raises(UnknownPayout):
        db.transaction(lambda uow: uow.escrow.payout("po_none"))


def test_refund_orders_wait_oldest_first_and_settle(with_milestone: Transactions, clock: FixedClock) -> None:
    db = with_milestone
    at = clock.now()

    def work(uow: UnitOfWork) -> None:
        uow.escrow.add_refund_order(refund_order(at + timedelta(seconds=2), "ro_a"))
        uow.escrow.add_refund_order(refund_order(at, "ro_b"))
        uow.escrow.add_refund_order(refund_order(at, "ro_c", RefundOrderState.FAILED))

    db.transaction(work)
    assert [o.id for o in db.transaction(lambda uow: uow.escrow.pending_refund_orders(10))] == ["ro_b", "ro_a"]
    assert [o.id for o in db.transaction(lambda uow: uow.escrow.pending_refund_orders(1))] == ["ro_b"]
    assert [o.id for o in db.transaction(lambda uow: uow.escrow.failed_refund_orders("ms_1"))] == ["ro_c"]
    db.transaction(
        lambda uow: uow.escrow.settle_refund_order(
            "ro_b", RefundOrderState.SUCCEEDED, reference="re_1", failure_reason=None, settled_at=at
        )
    )
    db.transaction(lambda uow: uow.escrow.charge_back_refund_order("ro_c", settled_at=at))
    settled = db.transaction(lambda uow: (uow.escrow.refund_order("ro_b"), uow.escrow.refund_order("ro_c", lock=True)))
    assert (settled[0].state, settled[0].gateway_reference) == (RefundOrderState.SUCCEEDED, "re_1")
    assert settled[1].state is RefundOrderState.CHARGED_BACK
    with pytest.raises(NotFound):
        db.transaction(lambda uow: uow.escrow.refund_order("ro_none"))


def test_an_open_dispute_freezes_its_milestone_until_closed(with_milestone: Transactions, clock: FixedClock) -> None:
    db = with_milestone
    at = clock.now()
    db.transaction(lambda uow: uow.escrow.add_dispute(dispute(at)))
    assert db.transaction(lambda uow: uow.escrow.milestone("ms_1").frozen_by) == "dp_1"
    db.transaction(
        lambda uow: uow.escrow.record_dispute_moves("dp_1", status="under_review", withdrawn=1_000, reinstated=0)
    )
    db.transaction(
        lambda uow: uow.escrow.close_dispute(
            "dp_1",
            outcome=DisputeOutcome.WON,
            recovered_from_refunds=0,
            recovered_from_escrow=0,
            recovered_from_freelancer=0,
            fee_returned=0,
            unrecovered=0,
            closed_at=at,
        )
    )
    closed = db.transaction(lambda uow: uow.escrow.dispute("dp_1"))
    assert closed is not None and (closed.status, closed.withdrawn, closed.outcome) == (
        "under_review",
        1_000,
        DisputeOutcome.WON,
    )
    assert db.transaction(lambda uow: (uow.escrow.open_dispute_of("ms_1"), uow.escrow.milestone("ms_1").frozen_by)) == (
        None,
        None,
    )
    assert [d.id for d in db.transaction(lambda uow: uow.escrow.disputes_of("ms_1"))] == ["dp_1"]
    assert db.transaction(lambda uow: uow.escrow.dispute("dp_none")) is None


def test_a_provider_event_is_processed_once(db: Transactions) -> None:
    assert db.transaction(lambda uow: uow.escrow.record_event("evt_1", "charge.succeeded", "ch_1")) is True
    # Recorded but not finished (the first delivery rolled back its work): it is processed again.
    assert db.transaction(lambda uow: uow.escrow.record_event("evt_1", "charge.succeeded", "ch_1")) is True
    db.transaction(lambda uow: uow.escrow.finish_event("evt_1", "funded"))
    assert db.transaction(lambda uow: uow.escrow.record_event("evt_1", "charge.succeeded", "ch_1")) is False


def test_timers_are_kept_once_and_fire_earliest_first(db: Transactions, clock: FixedClock) -> None:
    at = clock.now()

    def work(uow: UnitOfWork) -> None:
        uow.escrow.schedule("review", "ms_2", at + timedelta(days=2))
        uow.escrow.schedule("review", "ms_1", at + timedelta(days=1))
        uow.escrow.schedule("review", "ms_1", at + timedelta(days=1))
        uow.escrow.schedule("review", "ms_3", at + timedelta(days=9))

    db.transaction(work)
    due = db.transaction(lambda uow: uow.escrow.due_timers(at + timedelta(days=3), 10))
    assert [(kind, subject) for _, kind, subject, _ in due] == [("review", "ms_1"), ("review", "ms_2")]
    assert len(db.transaction(lambda uow: uow.escrow.due_timers(at + timedelta(days=3), 1))) == 1


def test_a_timer_is_claimed_once(db: Transactions, clock: FixedClock) -> None:
    at = clock.now()
    db.transaction(lambda uow: uow.escrow.schedule("review", "ms_1", at))
    [(timer_id, *_)] = db.transaction(lambda uow: uow.escrow.due_timers(at, 10))

    def fire(uow: UnitOfWork) -> bool:
        if not uow.escrow.claim_timer(timer_id):
            return False
        uow.escrow.finish_timer(timer_id, at)
        return True

    assert [db.transaction(fire), db.transaction(fire)] == [True, False]
    assert db.transaction(lambda uow: uow.escrow.due_timers(at, 10)) == []
    assert db.transaction(lambda uow: uow.escrow.claim_timer(999)) is False
