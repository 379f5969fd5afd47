"""The weekly cycle of hourly contracts through the service layer, on both databases:
the close at Monday 12:00 charges the client through a payment order, the review end at
Saturday 00:00 releases the week like a milestone payment (one lifetime fee chain with
the pair's milestones, invoices by day), and the money becomes available on Wednesday
00:00. Time moves only through the test's clock; each step is fired by `tick`.

The week of Monday 2026-11-30 closes 2026-12-07 12:00, its review ends 2026-12-12
00:00 and it becomes available 2026-12-16 00:00."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from ledger import FixedClock, Ledger
from ledger.bootstrap import Services
from ledger.db.schema import hourly_weeks, week_disputes
from ledger.errors import InvalidRequest, UnknownAccount
from ledger.escrow.hourly import WeekView
from ledger.escrow.model import ContractPaused, RefundNotAllowed, WeekNotDisputable
from ledger.escrow.orders import OrderKind
from ledger.escrow.service import Escrow
from ledger.escrow.timesheet import Segment
from ledger.gateway import BalanceMove, DisputeReport
from ledger.gateway.simulated import SimulatedGateway
from ledger.invoices.documents import DocumentKind
from tests.faulty_gateway import BEFORE, FaultyGateway

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)
WEEK = date(2026, 11, 30)
CLOSE = datetime(2026, 12, 7, 12, tzinfo=UTC)
REVIEW_END = datetime(2026, 12, 12, tzinfo=UTC)
AVAILABLE = datetime(2026, 12, 16, tzinfo=UTC)
SECOND = timedelta(seconds=1)
CLIENT, FREELANCER = "cl_hourly", "fr_hourly"


class Marketplace:
    """The services over a simulated provider, and the test's clock."""

    def __init__(self, book: Ledger, clock: FixedClock, gateway: Any = None) -> None:
        self.book, self.clock = book, clock
        self.gateway = gateway or SimulatedGateway()
        self.services = Services.over(book, self.gateway)
        self.escrow: Escrow = self.services.escrow

    def open(self, *, rate: int = 5000, limit: int = 40, currency: str = "USD") -> str:
        self.clock.set(MONDAY - timedelta(days=7))
        contract = self.escrow.hourly.open_contract(
            client_id=CLIENT,
            freelancer_id=FREELANCER,
            currency=currency,
            title="Support hours",
            hourly_rate=rate,
            weekly_limit_hours=limit,
            manual_time_allowed=True,
        )
        return contract.id

    def log(self, contract_id: str, day: int, hour: int, hours: int, *, manual: bool = False) -> None:
        start = MONDAY + timedelta(days=day, hours=hour)
        self.clock.set(max(self.clock.now(), start + timedelta(hours=hours)))
        segment = Segment(start=start, end=start + timedelta(hours=hours), memo="support", manual=manual)
        self.escrow.hourly.log_segment(contract_id, segment)

    def tick(self, at: datetime) -> str:
        self.clock.set(at)
        return self.escrow.orders.tick(at).summary()

    def week(self, contract_id: str, monday: date = WEEK) -> WeekView:
        return self.escrow.hourly.week(contract_id, monday)

    def balance(self, code: str, currency: str = "USD") -> int:
        try:
            return self.book.balance(code, currency)
        except UnknownAccount:
            return 0

    def audit_ok(self) -> None:
        report = self.book.audit(provider=self.services.provider_books)
        assert report.ok, report.summary()


@pytest.fixture
def market(book: Ledger, clock: FixedClock) -> Marketplace:
    return Marketplace(book, clock)


def pending(market: Marketplace) -> int:
    return market.balance(f"liabilities:freelancer:{FREELANCER}:pending")


def available(market: Marketplace) -> int:
    return market.balance(f"liabilities:freelancer:{FREELANCER}:available")


def test_a_week_is_charged_at_its_close_released_at_review_end_and_available_on_wednesday(
    market: Marketplace,
) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)  # Monday 09:00-11:00
    market.log(contract_id, 2, 9, 3, manual=True)  # Wednesday 09:00-12:00
    escrow_account = f"liabilities:escrow:{contract_id}:2026-11-30"

    assert "nothing due" in market.tick(CLOSE - SECOND)
    assert market.week(contract_id).state == "open"
    market.clock.set(CLOSE)
    assert market.week(contract_id).state == "closing"  # until a tick closes it

    market.tick(CLOSE)
    week = market.week(contract_id)
    assert week.state == "in_review"
    assert (week.bill.billable_minutes, week.bill.amount) == (300, 25000)
    assert week.charge_order_id is not None
    assert market.balance(escrow_account) == 25000
    assert market.balance("assets:psp:simulated") == 25000
    assert pending(market) == 0

    market.tick(REVIEW_END - SECOND)
    assert market.week(contract_id).state == "in_review"
    market.tick(REVIEW_END)
    week = market.week(contract_id)
    assert week.state == "released"
    assert week.payment_id is not None
    assert market.balance(escrow_account) == 0
    assert pending(market) == 20000  # 250.00 at 20%: the first 500.00 of the pair
    payment = market.book.transaction(lambda uow: uow.escrow.payment(week.payment_id or ""), read_only=True)
    assert (payment.kind, payment.gross, payment.fee, payment.released_at) == ("hourly", 25000, 5000, REVIEW_END)
    assert payment.pending_until == AVAILABLE

    market.tick(AVAILABLE - SECOND)
    assert (pending(market), available(market)) == (20000, 0)
    market.tick(AVAILABLE)
    assert (pending(market), available(market)) == (0, 20000)
    assert market.week(contract_id).state == "available"
    assert "nothing due" in market.tick(AVAILABLE)  # ticking again changes nothing
    assert (pending(market), available(market)) == (0, 20000)
    market.audit_ok()


def test_the_client_invoice_lists_the_weeks_days_and_they_add_up_to_the_payment(market: Marketplace) -> None:
    contract_id = market.open(rate=3333)
    market.log(contract_id, 0, 9, 1)
    market.log(contract_id, 1, 9, 1)
    start = MONDAY + timedelta(days=3, hours=9)
    market.clock.set(start + timedelta(hours=1))
    market.escrow.hourly.log_segment(
        contract_id, Segment(start=start, end=start + timedelta(minutes=50), memo="x", manual=True)
    )
    market.tick(REVIEW_END)
    documents = market.services.finance.documents(party_id=CLIENT)
    invoice = next(d for d in documents if d.kind is DocumentKind.CLIENT_INVOICE)
    texts = [line.description for line in invoice.lines]
    assert len(texts) == 3
    assert "Mon 30 Nov 2026, 1 h 00 min" in texts[0]
    assert "Thu 03 Dec 2026, 0 h 50 min" in texts[2]
    week = market.week(contract_id)
    assert [line.amount for line in invoice.lines] == [d.amount for d in week.bill.days if d.amount]
    assert invoice.total == week.bill.amount == 3333 + 3333 + 2778  # R(33.33 x 170/60) = 94.44
    market.audit_ok()


def test_a_tick_three_weeks_late_fires_every_step_in_order(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 4)
    late = AVAILABLE + timedelta(days=14)
    market.tick(late)
    week = market.week(contract_id)
    assert week.state == "available"
    payment = market.book.transaction(lambda uow: uow.escrow.payment(week.payment_id or ""), read_only=True)
    # The charge was made at the tick, so the release waited for it and is dated then.
    assert payment.released_at == late
    assert (pending(market), available(market)) == (0, 16000)
    assert "nothing due" in market.tick(late)
    market.audit_ok()


def test_hourly_weeks_and_milestones_of_one_pair_share_one_lifetime_fee_chain(market: Marketplace) -> None:
    contract_id = market.open()
    fixed = market.escrow.contracts.open_contract(
        client_id=CLIENT, freelancer_id=FREELANCER, currency="USD", title="Logo"
    )
    milestone = market.escrow.contracts.add_milestone(fixed.id, title="Logo", amount=30000)
    market.escrow.funding.fund(milestone.id)
    market.escrow.approvals.approve(milestone.id)  # 300.00 at 20%: fee 60.00
    market.log(contract_id, 0, 9, 8)  # 400.00: 200.00 at 20% + 200.00 at 10% = 60.00
    market.tick(REVIEW_END)
    week = market.week(contract_id)
    payment = market.book.transaction(lambda uow: uow.escrow.payment(week.payment_id or ""), read_only=True)
    assert (payment.gross, payment.fee) == (40000, 6000)
    assert market.balance("revenue:fees:service") == 12000
    market.audit_ok()


def test_a_week_with_nothing_billable_closes_and_moves_no_money(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 1)
    segment = market.escrow.hourly.segments(contract_id)[0]
    market.escrow.hourly.delete_segment(contract_id, segment.id or "")
    market.tick(AVAILABLE)
    week = market.week(contract_id)
    assert (week.state, week.charge_order_id, week.payment_id) == ("closed", None, None)
    assert pending(market) == available(market) == 0
    market.audit_ok()


def test_a_week_of_an_ended_contract_closes_and_is_released_as_usual(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)
    market.escrow.contracts.end_contract(contract_id, ended_by="client")
    market.tick(AVAILABLE)
    assert market.week(contract_id).state == "available"
    assert available(market) == 8000
    market.audit_ok()


def test_a_bonus_on_an_hourly_contract_is_charged_and_released_at_once_less_the_fee(market: Marketplace) -> None:
    contract_id = market.open()
    market.clock.set(MONDAY)
    bonus = market.escrow.hourly.pay_bonus(contract_id, amount=10000, memo="Thanks", request_key="bonus-1")
    assert bonus.state == "released"
    again = market.escrow.hourly.pay_bonus(contract_id, amount=10000, memo="Thanks", request_key="bonus-1")
    assert (again.subject.id, again.payment_id) == (bonus.subject.id, bonus.payment_id)
    payment = market.book.transaction(lambda uow: uow.escrow.payment(bonus.payment_id or ""), read_only=True)
    assert (payment.kind, payment.gross, payment.fee) == ("bonus", 10000, 2000)
    assert pending(market) == 8000
    market.audit_ok()


def test_the_audit_finds_a_closed_week_whose_figures_its_time_does_not_bill(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)
    market.tick(CLOSE)
    market.audit_ok()
    week_id = f"{contract_id}:2026-11-30"
    market.book.transaction(
        lambda uow: uow.connection.execute(  # type: ignore[attr-defined]
            update(hourly_weeks).where(hourly_weeks.c.id == week_id).values(amount=hourly_weeks.c.amount + 1)
        )
    )
    report = market.book.audit(provider=market.services.provider_books).to_dict()
    found = [p for check in report["checks"] if check["name"] == "hourly_weeks_billed" for p in check["problems"]]
    messages = {p["problem"] for p in found}
    assert messages == {
        "the week's figures differ from what its time bills",
        "the week's escrow subject does not match it",
    }


def test_review_end_waits_for_a_charge_still_in_flight_and_the_release_is_dated_when_it_lands(
    book: Ledger, clock: FixedClock
) -> None:
    gateway = FaultyGateway(SimulatedGateway())
    gateway.script("charge", BEFORE, BEFORE)  # the provider cannot be reached at the close nor at review end
    market = Marketplace(book, clock, gateway)
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)
    market.tick(CLOSE)
    assert market.week(contract_id).state == "charging"
    market.tick(REVIEW_END)
    assert market.week(contract_id).state == "charging"  # nothing is released before the money is in
    assert pending(market) == 0
    landed = REVIEW_END + timedelta(days=1)
    market.tick(landed)
    week = market.week(contract_id)
    assert week.state == "released"
    payment = market.book.transaction(lambda uow: uow.escrow.payment(week.payment_id or ""), read_only=True)
    assert (payment.released_at, payment.pending_until) == (landed, AVAILABLE)
    market.tick(AVAILABLE)
    assert available(market) == 8000
    market.audit_ok()


DAY = timedelta(days=1)


def test_a_declined_weekly_charge_is_tried_again_the_next_day_and_the_week_is_released_as_usual(
    market: Marketplace,
) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)
    market.gateway.decline_next("card_declined")
    market.tick(CLOSE)
    assert (market.week(contract_id).state, market.week(contract_id).charge_attempts) == ("past_due", 1)
    market.tick(CLOSE + DAY - SECOND)
    assert market.week(contract_id).charge_attempts == 1  # one attempt a day
    market.tick(CLOSE + DAY)
    week = market.week(contract_id)
    assert (week.state, week.charge_attempts) == ("in_review", 2)
    week_id = f"{contract_id}:2026-11-30"
    assert {f"week:{week_id}:1", f"week:{week_id}:2"} <= set(market.gateway.calls)  # a key per attempt
    market.tick(REVIEW_END)
    assert market.week(contract_id).state == "released"
    assert pending(market) == 8000
    market.audit_ok()


def test_a_week_never_paid_pauses_its_contract_after_five_failed_days_and_releases_nothing(
    market: Marketplace,
) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)
    for _ in range(40):
        market.gateway.decline_next("insufficient_funds")
    moment = CLOSE
    for day in range(5):
        market.tick(moment + day * DAY)
        contract = market.book.transaction(lambda uow: uow.escrow.contract(contract_id), read_only=True)
        assert (contract.paused_by is None) == (day < 4), f"day {day + 1}: paused_by {contract.paused_by}"
    assert market.week(contract_id).charge_attempts == 5
    assert contract.paused_by == "past_due"
    start = CLOSE + 5 * DAY
    with pytest.raises(ContractPaused):
        market.escrow.hourly.log_segment(contract_id, Segment(start=start - timedelta(hours=1), end=start, memo="more"))
    for day in range(5, 40):
        market.tick(CLOSE + day * DAY)
    week = market.week(contract_id)
    # Attempts stop 30 days after the close: the first and one a day after it, 30 in all.
    assert (week.state, week.charge_attempts) == ("past_due", 30)
    assert pending(market) == available(market) == 0
    market.gateway._declines.clear()
    market.audit_ok()


def test_a_success_after_the_pause_releases_the_week_at_once_and_resumes_the_contract(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)
    for _ in range(5):
        market.gateway.decline_next("card_declined")
    for day in range(6):
        market.tick(CLOSE + day * DAY)
    contract = market.book.transaction(lambda uow: uow.escrow.contract(contract_id), read_only=True)
    assert (contract.paused_at, contract.paused_by) == (None, None)
    week = market.week(contract_id)
    assert (week.state, week.charge_attempts) == ("released", 6)
    payment = market.book.transaction(lambda uow: uow.escrow.payment(week.payment_id or ""), read_only=True)
    assert payment.released_at == CLOSE + 5 * DAY  # after review end: released when the money came
    market.audit_ok()


def test_an_off_session_charge_that_asks_for_the_payers_action_counts_as_failed(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)
    market.gateway.require_action_next()
    market.tick(CLOSE)
    week = market.week(contract_id)
    assert week.state == "past_due"
    assert "payer" in (week.failure_reason or "")
    market.tick(CLOSE + DAY)
    assert market.week(contract_id).state == "in_review"
    market.audit_ok()


RECEIVABLES = "assets:receivables:clients"
PROTECTION = "expenses:hourly_protection"


def verified_client(market: Marketplace, at: str = "2026-11-01T00:00:00Z") -> None:
    market.services.finance.set_party(CLIENT, display_name="Client", payment_method_verified_at=at)


def client_position(market: Marketplace) -> int:
    """The closing balance of the client's statement: held for it less what it owes."""
    start, end = MONDAY - timedelta(days=7), market.clock.now() + DAY
    statement = market.services.finance.party_statement(CLIENT, "client", "USD", start, end)
    assert statement.opening_balance + statement.total_credits - statement.total_debits == statement.closing_balance
    return statement.closing_balance


def tracked_and_manual_week(market: Marketplace) -> str:
    """2 h tracked (100.00, protected for a verified client) and 1 h manual (50.00, not)."""
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)
    market.log(contract_id, 1, 9, 1, manual=True)
    return contract_id


def test_protected_tracked_time_is_advanced_at_review_end_and_recovered_when_a_retry_succeeds(
    market: Marketplace,
) -> None:
    verified_client(market)
    contract_id = tracked_and_manual_week(market)
    for _ in range(6):
        market.gateway.decline_next("insufficient_funds")
    for day in range(6):  # Monday 12:00 to Saturday 12:00: review end passes meanwhile
        market.tick(CLOSE + day * DAY)
    assert market.balance(RECEIVABLES) == 10000  # the tracked part, advanced
    assert pending(market) == 8000  # released less the 20% fee; the manual hour waits
    assert client_position(market) == -10000  # the client's statement: it owes the advance
    week = market.week(contract_id)
    assert (week.state, week.payment_id is not None) == ("past_due", True)
    with pytest.raises(RefundNotAllowed, match="nothing of theirs to refund yet"):  # the client paid nothing
        market.escrow.refunds.refund_payment(week.payment_id or "", 1000)
    market.audit_ok()
    market.tick(CLOSE + 6 * DAY)  # the seventh attempt succeeds
    assert market.balance(RECEIVABLES) == 0
    assert client_position(market) == 0
    assert pending(market) == 12000  # the manual hour released at once, less its fee
    market.tick(AVAILABLE)
    assert (pending(market), available(market)) == (0, 12000)
    market.audit_ok()


def test_an_advance_never_recovered_is_written_off_30_days_after_the_close_and_manual_time_is_never_paid(
    market: Marketplace,
) -> None:
    verified_client(market)
    contract_id = tracked_and_manual_week(market)
    for _ in range(40):
        market.gateway.decline_next("insufficient_funds")
    for day in range(31):
        market.tick(CLOSE + day * DAY)
    assert market.balance(RECEIVABLES) == 0
    assert market.balance(PROTECTION) == 10000
    assert available(market) == 8000  # the advanced part only
    assert market.week(contract_id).charge_attempts == 30
    market.gateway._declines.clear()
    market.audit_ok()


def test_a_client_verified_after_the_close_gets_no_protection(market: Marketplace) -> None:
    verified_client(market, "2026-12-07T12:00:01Z")
    tracked_and_manual_week(market)
    for _ in range(10):
        market.gateway.decline_next("insufficient_funds")
    for day in range(8):
        market.tick(CLOSE + day * DAY)
    assert market.balance(RECEIVABLES) == 0
    assert pending(market) == available(market) == 0
    market.gateway._declines.clear()
    market.audit_ok()


def test_a_released_week_is_refunded_after_release_like_a_milestone_payment(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 4)  # 200.00 at 20%: fee 40.00
    market.tick(AVAILABLE)
    week = market.week(contract_id)
    refund = market.escrow.refunds.refund_payment(week.payment_id or "", 5000)
    assert (refund.amount, refund.fee_returned) == (5000, 1000)
    assert available(market) == 16000 - 4000
    assert market.book.lifetime_billings(FREELANCER, CLIENT, "USD") == 15000
    notes = [d for d in market.services.finance.documents(party_id=CLIENT) if d.kind is DocumentKind.CREDIT_NOTE]
    assert len(notes) == 1 and notes[0].total == 5000
    market.audit_ok()


def disputed_week(market: Marketplace, minutes: int = 60) -> str:
    """4 h at 50.00 (200.00) charged at the close; the client disputes its last `minutes`."""
    contract_id = market.open()
    market.log(contract_id, 0, 9, 4)
    market.tick(CLOSE)
    market.clock.set(CLOSE + DAY)
    market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=minutes, reason="the last hour was not worked")
    return contract_id


def contract_of(market: Marketplace, contract_id: str) -> Any:
    return market.book.transaction(lambda uow: uow.escrow.contract(contract_id), read_only=True)


def test_a_partial_dispute_holds_only_its_amount_pauses_the_contract_and_an_acceptance_refunds_it(
    market: Marketplace,
) -> None:
    contract_id = disputed_week(market)
    week = market.week(contract_id)
    assert week.state == "disputed"
    assert week.dispute is not None and (week.dispute.amount, week.dispute.state) == (5000, "open")
    assert contract_of(market, contract_id).paused_by == "dispute"
    market.escrow.hourly.accept_week_dispute(contract_id, WEEK)
    assert contract_of(market, contract_id).paused_at is None
    assert market.balance(f"liabilities:escrow:{contract_id}:2026-11-30") == 15000
    market.tick(REVIEW_END)
    week = market.week(contract_id)
    assert week.state == "released"
    assert pending(market) == 12000  # 150.00 at 20%
    assert week.dispute is not None and (week.dispute.state, week.dispute.refunded) == ("accepted", 5000)
    market.audit_ok()


def test_a_dispute_left_unanswered_for_three_days_is_refunded_at_its_deadline(market: Marketplace) -> None:
    contract_id = disputed_week(market, minutes=240)  # the whole week
    market.tick(CLOSE + 4 * DAY - SECOND)
    assert market.week(contract_id).state == "disputed"
    market.tick(CLOSE + 4 * DAY)  # three days after the dispute opened
    week = market.week(contract_id)
    assert week.state == "refunded"
    assert week.dispute is not None and (week.dispute.state, week.dispute.closed_at) == ("expired", CLOSE + 4 * DAY)
    assert pending(market) == 0
    assert contract_of(market, contract_id).paused_at is None
    market.tick(REVIEW_END)  # nothing is left to release
    assert (market.week(contract_id).state, pending(market)) == ("refunded", 0)
    market.audit_ok()


def test_a_contested_dispute_is_split_by_an_operator_after_the_undisputed_part_was_released(
    market: Marketplace,
) -> None:
    contract_id = disputed_week(market, minutes=120)  # 100.00 disputed
    market.escrow.hourly.contest_week_dispute(contract_id, WEEK)
    with pytest.raises(InvalidRequest):  # release + refund must be what is disputed
        market.escrow.hourly.resolve_week_dispute(contract_id, WEEK, release=1000, refund=1000)
    market.tick(REVIEW_END)  # the undisputed 100.00 is released at review end
    assert pending(market) == 8000
    assert market.week(contract_id).state == "disputed"
    market.clock.set(REVIEW_END + 3 * DAY)
    market.escrow.hourly.resolve_week_dispute(contract_id, WEEK, release=6000, refund=4000)
    week = market.week(contract_id)
    assert week.dispute is not None and (week.dispute.released, week.dispute.refunded) == (6000, 4000)
    # 160.00 billed in all, within the first 500.00: 20% on each release.
    assert pending(market) == 8000 + 4800
    assert market.book.lifetime_billings(FREELANCER, CLIENT, "USD") == 16000
    assert market.balance(f"liabilities:escrow:{contract_id}:2026-11-30") == 0
    market.tick(AVAILABLE + 4 * DAY)
    assert market.week(contract_id).state == "available"
    market.audit_ok()


def test_disputes_are_refused_where_the_rules_say_and_change_nothing(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 2)
    with pytest.raises(WeekNotDisputable):  # not closed yet
        market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=60, reason="r")
    market.tick(CLOSE)
    with pytest.raises(InvalidRequest):
        market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=121, reason="r")
    with pytest.raises(InvalidRequest):
        market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=60, reason=" ")
    with pytest.raises(WeekNotDisputable):  # nothing disputed to accept
        market.escrow.hourly.accept_week_dispute(contract_id, WEEK)
    market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=60, reason="r", request_key="d-1")
    again = market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=60, reason="r", request_key="d-1")
    assert again.dispute is not None and again.dispute.minutes == 60  # a retried request replays
    with pytest.raises(WeekNotDisputable):  # one dispute per week
        market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=30, reason="again")
    with pytest.raises(WeekNotDisputable):  # not contested: the freelancer answers first
        market.escrow.hourly.resolve_week_dispute(contract_id, WEEK, release=5000, refund=0)
    market.clock.set(CLOSE + 4 * DAY)
    with pytest.raises(WeekNotDisputable):  # too late to contest
        market.escrow.hourly.contest_week_dispute(contract_id, WEEK)
    market.tick(REVIEW_END)
    with pytest.raises(WeekNotDisputable):  # after review end
        market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=10, reason="late")
    market.audit_ok()


def test_the_audit_finds_an_open_dispute_whose_amount_is_not_held(market: Marketplace) -> None:
    contract_id = disputed_week(market)
    market.audit_ok()
    market.book.transaction(
        lambda uow: uow.connection.execute(  # type: ignore[attr-defined]
            update(week_disputes).where(week_disputes.c.contract_id == contract_id).values(amount=30000)
        )
    )
    report = market.book.audit(provider=market.services.provider_books).to_dict()
    found = [p for check in report["checks"] if check["name"] == "hourly_weeks_billed" for p in check["problems"]]
    assert [p["problem"] for p in found] == ["an open dispute's amount is not what the week holds"]


def test_a_lost_chargeback_on_a_weekly_charge_follows_the_chargeback_policy(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 4)  # 200.00: 40.00 fee, 160.00 to the freelancer
    market.tick(AVAILABLE)
    week_id = f"{contract_id}:2026-11-30"
    charge = market.book.transaction(lambda uow: uow.escrow.funding_reference(week_id), read_only=True) or ""
    withdrawal = BalanceMove("txn_week", -20000, 1500, "USD")
    lost = market.escrow.chargebacks.apply_dispute(
        DisputeReport("dp_week", charge, 20000, "USD", "lost", (withdrawal,)), week_id
    )
    # Nothing is held any more: the fee comes back and the freelancer's 160.00 is taken back.
    assert (lost.recovered_from_escrow, lost.fee_returned, lost.recovered_from_freelancer) == (0, 4000, 16000)
    assert lost.unrecovered == 0
    assert available(market) == 0
    assert market.book.lifetime_billings(FREELANCER, CLIENT, "USD") == 0
    # The dispute is applied here as the provider's webhook would report it; the simulated
    # provider's own books did not make it, so the audit runs without them.
    assert market.book.audit().ok


def charged_amounts(market: Marketplace, contract_id: str, monday: date = WEEK) -> list[int]:
    """What each charge attempt of the week asked the provider for, in order."""
    week_id = f"{contract_id}:{monday.isoformat()}"
    orders = market.book.transaction(lambda uow: uow.orders.of_milestone(week_id, kinds=(OrderKind.FUND,)))
    return [order.amount for order in orders]


def test_a_dispute_of_a_week_whose_charge_failed_cancels_the_disputed_part_of_what_is_charged(
    market: Marketplace,
) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 4)  # 200.00
    market.gateway.decline_next("card_declined")
    market.tick(CLOSE)
    assert market.week(contract_id).state == "past_due"
    market.clock.set(CLOSE + timedelta(hours=1))
    market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=60, reason="the last hour was not worked")
    assert market.week(contract_id).state == "disputed"
    market.escrow.hourly.accept_week_dispute(contract_id, WEEK)
    week = market.week(contract_id)
    assert week.dispute is not None and (week.dispute.refunded, week.dispute.cancelled) == (5000, 5000)
    assert market.balance("assets:psp:simulated") == 0  # nothing was charged, nothing refunded
    market.tick(CLOSE + DAY)  # the retry asks only for the undisputed 150.00
    assert charged_amounts(market, contract_id) == [20000, 15000]
    market.tick(REVIEW_END)
    assert (market.week(contract_id).state, pending(market)) == ("released", 12000)
    market.audit_ok()


def test_a_whole_week_disputed_while_past_due_is_cancelled_and_its_contract_resumes(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 4)
    for _ in range(5):
        market.gateway.decline_next("insufficient_funds")
    for day in range(5):
        market.tick(CLOSE + day * DAY)
    assert contract_of(market, contract_id).paused_by == "past_due"
    market.clock.set(CLOSE + 4 * DAY + timedelta(hours=1))  # before review end
    market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=240, reason="none of it was worked")
    market.escrow.hourly.accept_week_dispute(contract_id, WEEK)
    market.tick(CLOSE + 4 * DAY + timedelta(hours=2))
    week = market.week(contract_id)
    assert (week.state, week.charge_attempts) == ("cancelled", 5)
    assert contract_of(market, contract_id).paused_at is None
    market.tick(CLOSE + 10 * DAY)  # no attempt is made any more
    assert market.week(contract_id).charge_attempts == 5
    assert pending(market) == available(market) == 0
    market.audit_ok()


def test_a_charge_in_flight_when_the_dispute_is_accepted_refunds_the_cancelled_part_when_it_lands(
    book: Ledger, clock: FixedClock
) -> None:
    gateway = FaultyGateway(SimulatedGateway())
    gateway.script("charge", BEFORE)  # the close cannot reach the provider
    market = Marketplace(book, clock, gateway)
    contract_id = market.open()
    market.log(contract_id, 0, 9, 4)
    market.tick(CLOSE)
    assert market.week(contract_id).state == "charging"
    market.clock.set(CLOSE + timedelta(hours=1))
    market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=60, reason="the last hour was not worked")
    market.escrow.hourly.accept_week_dispute(contract_id, WEEK)
    market.tick(CLOSE + 2 * timedelta(hours=1))  # the charge of 200.00 lands after all
    week = market.week(contract_id)
    assert week.dispute is not None and (week.dispute.refunded, week.dispute.cancelled) == (5000, 0)
    assert market.balance(f"liabilities:escrow:{contract_id}:2026-11-30") == 15000
    market.tick(REVIEW_END)
    assert pending(market) == 12000
    market.audit_ok()


def test_a_dispute_of_a_protected_past_due_week_is_not_advanced_and_its_expiry_cancels_it(
    market: Marketplace,
) -> None:
    verified_client(market)
    contract_id = tracked_and_manual_week(market)  # 100.00 tracked, then 50.00 manual
    for _ in range(6):
        market.gateway.decline_next("insufficient_funds")
    for day in range(3):
        market.tick(CLOSE + day * DAY)
    market.clock.set(CLOSE + 2 * DAY + timedelta(hours=1))  # open past review end
    # The last 120 minutes: the manual hour and one tracked hour, 100.00.
    market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=120, reason="not worked")
    for day in range(3, 5):
        market.tick(CLOSE + day * DAY)
    market.tick(REVIEW_END)
    assert market.balance(RECEIVABLES) == 5000  # only the undisputed tracked hour is advanced
    assert pending(market) == 4000
    market.audit_ok()
    market.tick(CLOSE + 5 * DAY + timedelta(hours=1))  # attempt 6 fails; then the dispute expires
    week = market.week(contract_id)
    assert week.dispute is not None and (week.dispute.state, week.dispute.cancelled) == ("expired", 10000)
    # Five days failed: lifting the dispute's pause leaves the contract paused for the past-due week.
    assert contract_of(market, contract_id).paused_by == "past_due"
    market.tick(CLOSE + 6 * DAY + timedelta(hours=1))  # the retry asks for the undisputed 50.00: it succeeds
    assert charged_amounts(market, contract_id) == [15000] * 6 + [5000]
    assert market.balance(RECEIVABLES) == 0  # the advance is recovered; nothing more to release
    assert pending(market) == 4000
    assert contract_of(market, contract_id).paused_at is None
    market.audit_ok()


def earned(market: Marketplace) -> int:
    return pending(market) + available(market)


def test_a_week_resolved_after_the_next_week_was_released_keeps_one_fee_chain(market: Marketplace) -> None:
    contract_id = market.open()
    market.log(contract_id, 0, 9, 4)  # week 1: 200.00
    market.log(contract_id, 7, 0, 8)  # week 2: 400.00, logged on its Monday before week 1 closes
    market.tick(CLOSE)
    market.clock.set(CLOSE + DAY)
    market.escrow.hourly.dispute_week(contract_id, WEEK, minutes=120, reason="the last two hours were not worked")
    market.escrow.hourly.contest_week_dispute(contract_id, WEEK)
    market.tick(REVIEW_END)  # week 1's undisputed 100.00 released
    market.tick(REVIEW_END + 7 * DAY)  # week 2 closed, charged and released
    assert market.week(contract_id, WEEK + timedelta(days=7)).state == "released"
    # 100.00 + 400.00 billed: all of it in the 20% tier.
    assert market.book.lifetime_billings(FREELANCER, CLIENT, "USD") == 50000
    assert earned(market) == 8000 + 32000
    market.escrow.hourly.resolve_week_dispute(contract_id, WEEK, release=10000, refund=0)
    # The resolution is billed after week 2: 100.00 more, past the 500.00 threshold: 10%.
    assert market.book.lifetime_billings(FREELANCER, CLIENT, "USD") == 60000
    assert earned(market) == 8000 + 32000 + 9000
    assert market.week(contract_id).state == "released"
    market.audit_ok()


def test_weeks_below_the_minimum_charge_are_carried_to_the_next_week_that_bills(market: Marketplace) -> None:
    contract_id = market.open(rate=20)  # 0.20 an hour
    market.log(contract_id, 0, 9, 1)  # week 1: 0.20
    market.tick(CLOSE)
    first = market.week(contract_id)
    assert (first.state, first.carried_to, first.charge_order_id) == ("carried", None, None)
    market.log(contract_id, 7, 9, 1)  # week 2: 0.20; with week 1, 0.40: still below 0.50
    market.tick(CLOSE + 7 * DAY)
    assert market.week(contract_id, WEEK + timedelta(days=7)).state == "carried"
    market.log(contract_id, 14, 9, 1)  # week 3: 0.20, charged with the 0.40 carried: 0.60
    market.tick(CLOSE + 14 * DAY)
    third = market.week(contract_id, WEEK + timedelta(days=14))
    assert (third.state, third.carried_in) == ("in_review", 40)
    assert charged_amounts(market, contract_id, WEEK + timedelta(days=14)) == [60]
    assert [market.week(contract_id, WEEK + timedelta(days=d)).carried_to for d in (0, 7)] == [
        WEEK + timedelta(days=14)
    ] * 2
    market.tick(REVIEW_END + 14 * DAY)
    assert pending(market) == 48  # 0.60 less the 20% fee
    invoices = [d for d in market.services.finance.documents(party_id=CLIENT) if d.kind is DocumentKind.CLIENT_INVOICE]
    assert [invoice.total for invoice in invoices] == [60]
    market.audit_ok()


def test_the_audit_finds_a_carried_amount_no_week_took(market: Marketplace) -> None:
    contract_id = market.open(rate=20)
    market.log(contract_id, 0, 9, 1)
    market.tick(CLOSE)
    market.log(contract_id, 7, 9, 3)  # 0.60 and the 0.20 carried
    market.tick(CLOSE + 7 * DAY)
    market.audit_ok()
    market.book.transaction(
        lambda uow: uow.connection.execute(  # type: ignore[attr-defined]
            update(hourly_weeks).where(hourly_weeks.c.week == WEEK).values(carried_to=None)
        )
    )
    report = market.book.audit(provider=market.services.provider_books).to_dict()
    found = [p for check in report["checks"] if check["name"] == "hourly_weeks_billed" for p in check["problems"]]
    assert [p["problem"] for p in found] == ["what the week carries in is not what earlier weeks carried to it"]


def test_a_lost_chargeback_on_an_advanced_then_recovered_week_reopens_the_receivable(market: Marketplace) -> None:
    verified_client(market)
    contract_id = tracked_and_manual_week(market)  # 100.00 protected + 50.00 manual
    for _ in range(6):
        market.gateway.decline_next("insufficient_funds")
    for day in range(7):  # advanced at review end; the seventh attempt succeeds and recovers it
        market.tick(CLOSE + day * DAY)
    market.tick(AVAILABLE)
    assert (market.balance(RECEIVABLES), available(market)) == (0, 12000)
    market.escrow.payouts.request_payout(FREELANCER, amount=12000, currency="USD")
    assert available(market) == 0
    week_id = f"{contract_id}:2026-11-30"
    charge = market.book.transaction(lambda uow: uow.escrow.funding_reference(week_id), read_only=True) or ""
    market.clock.set(AVAILABLE + DAY)
    lost = market.escrow.chargebacks.apply_dispute(
        DisputeReport("dp_advanced", charge, 15000, "USD", "lost", (BalanceMove("txn_adv", -15000, 0, "USD"),)),
        week_id,
    )
    # The fees come back (30.00); the freelancer has nothing left: 120.00 is not recovered.
    assert (lost.fee_returned, lost.recovered_from_freelancer, lost.unrecovered) == (3000, 0, 12000)
    # Of that, the recovered 100.00 advance is the client's debt again; 20.00 is the chargeback's loss.
    assert market.balance(RECEIVABLES) == 10000
    assert market.balance("expenses:chargebacks") == 2000
    assert market.book.audit().ok
    market.tick(CLOSE + 30 * DAY)  # retries are over: written off to hourly protection
    assert (market.balance(RECEIVABLES), market.balance(PROTECTION)) == (0, 10000)
    assert market.book.audit().ok
