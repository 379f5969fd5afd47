"""Escrow over a small marketplace, checked by a state machine against a real `Escrow`.

`EscrowMachine` drives an `Escrow` (a `SimulatedGateway`, a `FixedClock`) on an
empty database (SQLite and PostgreSQL) through random histories of a marketplace of
three clients and three freelancers: contracts in USD or JPY, milestones with
amounts in minor units, funding (sometimes declined), submissions, requests for
changes, approvals of all, part or more than is held (a bonus, sometimes declined),
contracts ended by either side, refund requests accepted, disputed or left to
expire, disputes split, refunds after release, payouts (sometimes failed), and the
clock moving on with `tick()`. Beside it a plain Python model (`Market`) predicts
every outcome from docs/architecture.md's "Milestone transitions and timers", "Money flows"
and "The service fee":

- an action the rules refuse raises a `LedgerError` and changes nothing (no journal
  entry, no call to the payment provider); an allowed one lands the milestone
  where the model says;
- after every step: `ledger audit` passes (invariants 1-7); each milestone is in
  the model's state and holds the model's funded - released - refunded (nothing
  once final); each pair's fees charged minus returned are `R(F(net lifetime
  billings))` and its lifetime billings are the model's; each freelancer's pending
  and available balances are the model's (pending turns available 5 days after
  release; the review clock releases 14 days after submission and a refund request
  unanswered for 7 days is refunded, each dated at its deadline).

Each example starts from a few contracts with milestones already under way
(`open_marketplace`), and actions pick their milestone (contract, payment, wallet)
by index, half the time among those the action suits, so histories get deep
whichever rules Hypothesis's swarm testing leaves enabled, and refusals stay
common. Each step `note()`s what the model expects, so a shrunk failure reads as a
story.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from ledger.bootstrap import connect as open_ledger
from ledger.clock import FixedClock
from ledger.db.schema import entries, fee_events
from ledger.db.unit_of_work import UnitOfWork
from ledger.errors import LedgerError
from ledger.escrow.chart import SERVICE_FEES
from ledger.escrow.model import MilestoneState, PayoutState
from ledger.escrow.service import Escrow
from ledger.fees.rule import cumulative_fee, round_minor
from ledger.fees.schedule import CLASSIC
from ledger.gateway import PaymentFailed
from ledger.gateway.simulated import SimulatedGateway
from ledger.service import Ledger
from tests.conftest import START, database_names, empty_postgres

S = MilestoneState
ACTIVE = frozenset({S.FUNDED, S.SUBMITTED, S.CHANGES_REQUESTED})
FINAL = frozenset({S.RELEASED, S.REFUNDED, S.SETTLED})

# The periods (docs/architecture.md, "Timers"), restated rather than imported: the model is the spec.
REVIEW_PERIOD = timedelta(days=14)
REFUND_REQUEST_PERIOD = timedelta(days=7)
SECURITY_PERIOD = timedelta(days=5)
REFUND_WINDOW = timedelta(days=180)

CLIENTS = ("cl_1", "cl_2", "cl_3")
FREELANCERS = ("fr_1", "fr_2", "fr_3")
CURRENCIES = ("USD", "JPY")
MAX_CONTRACTS = 5
MAX_MILESTONES = 12
#: Where `open_marketplace` leaves each first milestone.
STAGES = ("draft", "funded", "funded", "submitted", "changes_requested")
DECLINED = "card_declined"

#: (examples, steps per example) per Hypothesis profile, on each database.
STATEFUL_BUDGET = {"ci": (50, 30)}
DEFAULT_BUDGET = (10, 20)

Pair = tuple[str, str, str]  # (freelancer, client, currency): the fee engine's key
Wallet = tuple[str, str]  # (freelancer, currency)
T = TypeVar("T")


def fee_total(currency: str, lifetime: int) -> int:
    """R(F(L)) under the classic schedule: the fees of a pair with net lifetime billings L."""
    return round_minor(cumulative_fee(CLASSIC.tiers_for(currency), lifetime))


def fundable(m: MMilestone) -> bool:
    return m.state is S.DRAFT and m.contract.ended_by is None


def choose(items: Sequence[T], pick: int, aim: bool, suits: Callable[[T], bool]) -> T:
    """items[pick], counted among the items that suit the action when `aim` (and some do)."""
    pool = [item for item in items if suits(item)] if aim else []
    pool = pool or list(items)
    return pool[pick % len(pool)]


# --- the model -------------------------------------------------------------------------


@dataclass
class MContract:
    id: str
    label: str
    client: str
    freelancer: str
    currency: str
    milestones: list[MMilestone] = field(default_factory=list)
    ended_by: str | None = None
    at_rest: bool = False  # ended, every milestone final, and the ledger agreed

    @property
    def pair(self) -> Pair:
        return (self.freelancer, self.client, self.currency)


@dataclass
class MMilestone:
    id: str
    label: str
    contract: MContract
    amount: int
    state: MilestoneState = S.DRAFT
    funded: int = 0
    released: int = 0
    refunded: int = 0
    review_deadline: datetime | None = None
    refund_deadline: datetime | None = None
    failure_reason: str | None = None

    @property
    def held(self) -> int:
        return self.funded - self.released - self.refunded


@dataclass
class MPayment:
    label: str
    milestone: MMilestone
    kind: str
    gross: int
    fee: int
    released_at: datetime
    pending_remaining: int
    refunded: int = 0
    id: str | None = None  # the ledger's id, once seen

    @property
    def net(self) -> int:
        return self.gross - self.fee

    @property
    def pending_until(self) -> datetime:
        return self.released_at + SECURITY_PERIOD

    @property
    def wallet(self) -> Wallet:
        return (self.milestone.contract.freelancer, self.milestone.contract.currency)


@dataclass
class MTimer:
    seq: int
    kind: str  # review, refund_request, pending
    subject: MMilestone | MPayment
    due: datetime
    done: bool = False


@dataclass
class Market:
    """What the escrow should hold, in plain Python."""

    contracts: list[MContract] = field(default_factory=list)
    milestones: list[MMilestone] = field(default_factory=list)
    payments: list[MPayment] = field(default_factory=list)
    timers: list[MTimer] = field(default_factory=list)
    lifetime: dict[Pair, int] = field(default_factory=lambda: defaultdict(int))
    fees: dict[Pair, int] = field(default_factory=lambda: defaultdict(int))
    available: dict[Wallet, int] = field(default_factory=lambda: defaultdict(int))
    psp: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def schedule(self, kind: str, subject: MMilestone | MPayment, due: datetime) -> None:
        # Timers are unique on (kind, subject, due): scheduling the same one twice is a no-op.
        if not any(t.kind == kind and t.subject is subject and t.due == due for t in self.timers):
            self.timers.append(MTimer(len(self.timers), kind, subject, due))

    def pending(self, wallet: Wallet) -> int:
        return sum(p.pending_remaining for p in self.payments if p.wallet == wallet)

    def release(self, m: MMilestone, amount: int, at: datetime, kind: str = "release") -> MPayment:
        """escrow -> freelancer pending (net) + fee revenue; the fee on the pair's lifetime billings."""
        pair = m.contract.pair
        before = self.lifetime[pair]
        fee = fee_total(pair[2], before + amount) - fee_total(pair[2], before)
        self.lifetime[pair] = before + amount
        self.fees[pair] += fee
        m.released += amount
        payment = MPayment(f"P{len(self.payments) + 1}", m, kind, amount, fee, at, pending_remaining=amount - fee)
        self.payments.append(payment)
        self.schedule("pending", payment, payment.pending_until)
        note(f"    {payment.label}: {kind} {amount} of {m.label} at {at:%m-%d %H:%M}, fee {fee}, net {payment.net}")
        return payment

    def refund_held(self, m: MMilestone, amount: int) -> None:
        """escrow -> PSP."""
        m.refunded += amount
        self.psp[m.contract.currency] -= amount

    def fire(self, timer: MTimer) -> None:
        subject = timer.subject
        if isinstance(subject, MPayment):
            if subject.pending_remaining and subject.pending_until == timer.due:
                note(f"    {subject.label}: {subject.pending_remaining} pending becomes available")
                self.available[subject.wallet] += subject.pending_remaining
                subject.pending_remaining = 0
        elif timer.kind == "review":
            if subject.state is S.SUBMITTED and subject.review_deadline == timer.due:
                note(f"    {subject.label}: the review clock expires, all {subject.held} held is released")
                self.release(subject, subject.held, timer.due)
                subject.state, subject.review_deadline = S.RELEASED, None
        elif subject.state is S.REFUND_REQUESTED and subject.refund_deadline == timer.due:
            note(f"    {subject.label}: the refund request expires, {subject.held} refunded")
            self.refund_held(subject, subject.held)
            subject.state, subject.refund_deadline = S.REFUNDED, None
        timer.done = True

    def tick(self, now: datetime) -> None:
        """Fire every timer due at `now`, by due time then creation, including the ones
        firing others creates that are due already (docs/architecture.md, "Timers": dated at its deadline)."""
        while due := sorted((t for t in self.timers if not t.done and t.due <= now), key=lambda t: (t.due, t.seq)):
            for timer in due:
                self.fire(timer)


# --- the machine -----------------------------------------------------------------------

Connector = Callable[[FixedClock], tuple[Ledger, Callable[[], None]]]

amounts = st.one_of(st.integers(1, 100_00), st.integers(100_00, 3_000_00), st.integers(3_000_00, 12_000_00))
extras = st.one_of(st.sampled_from([1, 50_00, 600_00]), st.integers(1, 2_000_00))
percents = st.integers(0, 100)
picks = st.integers(0, 15)


class EscrowMachine(RuleBasedStateMachine):
    """A real `Escrow` and a `Market` model, driven together; see the module docstring."""

    def __init__(self, connect: Connector) -> None:
        super().__init__()
        self.clock = FixedClock(START)
        # A fresh empty database per example: the model starts empty.
        self.book, self._cleanup = connect(self.clock)
        self.gateway = SimulatedGateway()
        self.escrow = Escrow(self.book, self.gateway)
        self.model = Market()

    def teardown(self) -> None:
        try:
            if sys.exc_info()[1] is None:
                assert not self.gateway._declines, "a decline was queued for a call that never came"
        finally:
            self.book.close()
            self._cleanup()

    # --- helpers -------------------------------------------------------------------------

    def journal_size(self) -> int:
        return self.book.transaction(
            lambda uow: int(uow.connection.execute(select(func.count()).select_from(entries)).scalar_one()),
            read_only=True,
        )

    def refused(self, what: str, call: Callable[[], Any]) -> None:
        """`call` must raise a LedgerError and change nothing: no entry, no call to the provider."""
        note(f"  {what}: expect a refusal")
        before = (self.journal_size(), len(self.gateway.calls))
        with pytest.raises(LedgerError) as caught:
            call()
        note(f"    refused: {type(caught.value).__name__}: {caught.value}")
        after = (self.journal_size(), len(self.gateway.calls))
        assert after == before, (
            f"{what} was refused but changed something: (journal entries, provider calls) {before} -> {after}"
        )

    def bind_payments(self, returned: Sequence[Any] = (), new: Sequence[MPayment] = ()) -> None:
        """Give the model's new payments the ledger's ids, checking they are the same payments."""
        matched = list(zip(returned, new, strict=True))
        for real, modelled in matched:
            modelled.id = real.id
        known = {p.id for p in self.model.payments}
        unbound = [p for p in self.model.payments if p.id is None]
        for m in {p.milestone.id: p.milestone for p in unbound}.values():
            waiting = [p for p in unbound if p.milestone is m]
            fresh = [p for p in self.escrow.reads.payments(m.id) if p.id not in known]
            assert len(fresh) == len(waiting), f"{m.label}: the ledger made {len(fresh)} payments, not {len(waiting)}"
            matched += zip(fresh, waiting, strict=True)
        for real, modelled in matched:
            modelled.id = real.id
            actual = (real.kind, real.gross, real.fee, real.net, real.released_at, real.pending_until)
            expected = (
                modelled.kind,
                modelled.gross,
                modelled.fee,
                modelled.net,
                modelled.released_at,
                modelled.pending_until,
            )
            assert actual == expected, (
                f"{modelled.label}: (kind, gross, fee, net, released, pending until) {actual} != model {expected}"
            )

    # --- contracts and milestones ------------------------------------------------------------

    @initialize(
        plan=st.lists(
            st.tuples(
                st.sampled_from(CLIENTS),
                st.sampled_from(FREELANCERS),
                st.sampled_from((*CURRENCIES, "USD")),
                st.lists(st.tuples(amounts, st.sampled_from(STAGES)), min_size=1, max_size=3),
            ),
            min_size=1,
            max_size=2,
        )
    )
    def open_marketplace(self, plan: list[tuple[str, str, str, list[tuple[int, str]]]]) -> None:
        """Contracts with milestones already under way, so that every example has
        something to act on whichever rules its swarm of enabled rules leaves it."""
        for client, freelancer, currency, milestones in plan:
            contract = self.open(client, freelancer, currency)
            for amount, stage in milestones:
                m = self.add(contract, amount)
                if stage != "draft":
                    self.fund_it(m, decline=False)
                if stage in ("submitted", "changes_requested"):
                    self.submit_it(m)
                if stage == "changes_requested":
                    self.request_changes_to(m)

    def open(self, client: str, freelancer: str, currency: str) -> MContract:
        real = self.escrow.contracts.open_contract(
            client_id=client, freelancer_id=freelancer, currency=currency, title="Property work"
        )
        contract = MContract(real.id, f"C{len(self.model.contracts) + 1}", client, freelancer, currency)
        self.model.contracts.append(contract)
        note(f"  {contract.label} = {real.id}: {client} hires {freelancer} in {currency}")
        return contract

    def add(self, contract: MContract, amount: int) -> MMilestone:
        label = f"M{len(self.model.milestones) + 1}"
        real = self.escrow.contracts.add_milestone(contract.id, title=f"Milestone {label}", amount=amount)
        m = MMilestone(real.id, label, contract, amount)
        self.model.milestones.append(m)
        contract.milestones.append(m)
        note(f"  {label} = {real.id}: {amount} {contract.currency} on {contract.label}")
        return m

    @precondition(lambda self: len(self.model.contracts) < MAX_CONTRACTS)
    @rule(
        client=st.sampled_from(CLIENTS),
        freelancer=st.sampled_from(FREELANCERS),
        currency=st.sampled_from((*CURRENCIES, "USD")),
    )
    def open_contract(self, client: str, freelancer: str, currency: str) -> None:
        self.open(client, freelancer, currency)

    @precondition(
        lambda self: (
            len(self.model.milestones) < MAX_MILESTONES and any(c.ended_by is None for c in self.model.contracts)
        )
    )
    @rule(pick=picks, aim=st.booleans(), amount=amounts)
    def add_milestone(self, pick: int, aim: bool, amount: int) -> None:
        contract = choose(self.model.contracts, pick, aim, lambda c: c.ended_by is None)
        if contract.ended_by is not None:
            self.refused(
                f"adding a milestone to {contract.label} (ended by the {contract.ended_by})",
                lambda: self.escrow.contracts.add_milestone(contract.id, title="More", amount=amount),
            )
            return
        self.add(contract, amount)

    def milestone(self, pick: int, aim: bool, suits: Callable[[MMilestone], bool]) -> MMilestone:
        return choose(self.model.milestones, pick, aim, suits)

    def some(self, suits: Callable[[MMilestone], bool]) -> bool:
        return any(suits(m) for m in self.model.milestones)

    # --- money in --------------------------------------------------------------------------

    @precondition(lambda self: self.some(fundable))
    @rule(pick=picks, aim=st.booleans(), decline=st.booleans())
    def fund(self, pick: int, aim: bool, decline: bool) -> None:
        m = self.milestone(pick, aim, fundable)
        if not fundable(m):
            self.refused(f"funding {m.label} ({m.state.value})", lambda: self.escrow.funding.fund(m.id))
            return
        self.fund_it(m, decline=decline)

    def fund_it(self, m: MMilestone, *, decline: bool) -> None:
        if decline:
            note(f"  fund {m.label}: the card is declined, it stays a draft")
            self.gateway.decline_next(DECLINED)
            m.failure_reason = DECLINED
            outcome = self.escrow.funding.fund(m.id)
            assert outcome.status == "failed"
        else:
            note(f"  fund {m.label}: {m.amount} held")
            m.state, m.funded, m.failure_reason = S.FUNDED, m.funded + m.amount, None
            self.model.psp[m.contract.currency] += m.amount
            outcome = self.escrow.funding.fund(m.id)
            assert outcome.status == "succeeded"
        assert outcome.milestone.state is m.state

    # --- work and approval ---------------------------------------------------------------------

    @precondition(lambda self: self.some(lambda m: m.state in (S.FUNDED, S.CHANGES_REQUESTED)))
    @rule(pick=picks, aim=st.booleans())
    def submit(self, pick: int, aim: bool) -> None:
        m = self.milestone(pick, aim, lambda m: m.state in (S.FUNDED, S.CHANGES_REQUESTED))
        if m.state not in (S.FUNDED, S.CHANGES_REQUESTED):
            self.refused(f"submitting {m.label} ({m.state.value})", lambda: self.escrow.contracts.submit(m.id))
            return
        self.submit_it(m)

    def submit_it(self, m: MMilestone) -> None:
        m.state, m.review_deadline = S.SUBMITTED, self.clock.now() + REVIEW_PERIOD
        self.model.schedule("review", m, m.review_deadline)
        note(f"  submit {m.label}: the review clock runs until {m.review_deadline:%m-%d %H:%M}")
        assert self.escrow.contracts.submit(m.id).state is S.SUBMITTED

    @precondition(lambda self: self.some(lambda m: m.state is S.SUBMITTED))
    @rule(pick=picks, aim=st.booleans())
    def request_changes(self, pick: int, aim: bool) -> None:
        m = self.milestone(pick, aim, lambda m: m.state is S.SUBMITTED)
        if m.state is not S.SUBMITTED:
            self.refused(f"changes to {m.label} ({m.state.value})", lambda: self.escrow.contracts.request_changes(m.id))
            return
        self.request_changes_to(m)

    def request_changes_to(self, m: MMilestone) -> None:
        m.state, m.review_deadline = S.CHANGES_REQUESTED, None
        note(f"  request changes to {m.label}: the review clock stops")
        assert self.escrow.contracts.request_changes(m.id).state is S.CHANGES_REQUESTED

    @precondition(lambda self: self.some(lambda m: m.state in ACTIVE))
    @rule(
        pick=picks,
        aim=st.booleans(),
        how=st.sampled_from(["all", "part", "exact", "bonus"]),
        percent=percents,
        extra=extras,
        decline=st.sampled_from(["", "declined", "declined, then retried"]),
    )
    def approve(self, pick: int, aim: bool, how: str, percent: int, extra: int, decline: str) -> None:
        """Approve all, part, exactly what is held, or more: a bonus, which the provider may decline."""
        m = self.milestone(pick, aim, lambda m: m.state in ACTIVE)
        held = m.held
        amount = {
            "all": None,
            "part": min(max(1, held * percent // 100), max(1, held - 1)),
            "exact": held or 1,
            "bonus": held + extra,
        }[how]
        wanted = held if amount is None else amount
        if m.state not in ACTIVE:
            self.refused(
                f"approving {wanted} of {m.label} ({m.state.value}, holding {held})",
                lambda: self.escrow.approvals.approve(m.id, amount=amount),
            )
            return
        bonus = wanted - held
        if bonus > 0 and decline:
            note(f"  approve {wanted} of {m.label} holding {held}: the bonus of {bonus} is declined")
            self.gateway.decline_next(DECLINED)
            before = self.journal_size()
            with pytest.raises(PaymentFailed):
                self.escrow.approvals.approve(m.id, amount=amount)
            assert self.journal_size() == before, "a declined bonus changed the journal"
            assert not self.gateway._declines, "the provider was not asked: an earlier answer was replayed"
            if decline == "declined":
                return
            note("  the client tries again")
        note(f"  approve {wanted} of {m.label} holding {held}")
        now = self.clock.now()
        new = [self.model.release(m, min(wanted, held), now)]
        if wanted >= held:
            m.state, m.review_deadline = S.RELEASED, None
        if bonus > 0:
            m.funded += bonus
            self.model.psp[m.contract.currency] += bonus
            new.append(self.model.release(m, bonus, now, kind="bonus"))
        self.bind_payments(self.escrow.approvals.approve(m.id, amount=amount), new)

    # --- ending, refunds, disputes ---------------------------------------------------------------

    @precondition(lambda self: any(c.ended_by is None for c in self.model.contracts))
    @rule(pick=picks, aim=st.booleans(), by=st.sampled_from(["client", "freelancer"]))
    def end_contract(self, pick: int, aim: bool, by: str) -> None:
        contract = choose(self.model.contracts, pick, aim, lambda c: c.ended_by is None)
        if contract.ended_by is not None:
            self.refused(
                f"ending {contract.label} again (ended by the {contract.ended_by})",
                lambda: self.escrow.contracts.end_contract(contract.id, ended_by=by),
            )
            return
        note(f"  the {by} ends {contract.label}")
        now = self.clock.now()
        for m in contract.milestones:
            if m.state not in ACTIVE:
                continue
            if by == "freelancer":
                note(f"    {m.label}: {m.held} refunded at once")
                self.model.refund_held(m, m.held)
                m.state, m.review_deadline = S.REFUNDED, None
            else:
                m.state, m.review_deadline, m.refund_deadline = S.REFUND_REQUESTED, None, now + REFUND_REQUEST_PERIOD
                self.model.schedule("refund_request", m, m.refund_deadline)
                note(f"    {m.label}: a refund of {m.held} is requested, until {m.refund_deadline:%m-%d %H:%M}")
        contract.ended_by = by
        assert self.escrow.contracts.end_contract(contract.id, ended_by=by).ended_by == by

    @precondition(lambda self: self.some(lambda m: m.state is S.REFUND_REQUESTED))
    @rule(pick=picks, aim=st.booleans())
    def accept_refund_request(self, pick: int, aim: bool) -> None:
        m = self.milestone(pick, aim, lambda m: m.state is S.REFUND_REQUESTED)
        if m.state is not S.REFUND_REQUESTED:
            self.refused(
                f"accepting a refund of {m.label} ({m.state.value})",
                lambda: self.escrow.refunds.accept_refund_request(m.id),
            )
            return
        note(f"  the freelancer accepts the refund of {m.label}: {m.held} back to the client")
        self.model.refund_held(m, m.held)
        m.state, m.refund_deadline = S.REFUNDED, None
        assert self.escrow.refunds.accept_refund_request(m.id).state is S.REFUNDED

    @precondition(lambda self: self.some(lambda m: m.state is S.REFUND_REQUESTED))
    @rule(pick=picks, aim=st.booleans())
    def dispute_refund_request(self, pick: int, aim: bool) -> None:
        m = self.milestone(pick, aim, lambda m: m.state is S.REFUND_REQUESTED)
        if m.state is not S.REFUND_REQUESTED:
            self.refused(
                f"disputing {m.label} ({m.state.value})", lambda: self.escrow.refunds.dispute_refund_request(m.id)
            )
            return
        note(f"  the freelancer disputes the refund request of {m.label}")
        m.state, m.refund_deadline = S.DISPUTED, None
        assert self.escrow.refunds.dispute_refund_request(m.id).state is S.DISPUTED

    @precondition(lambda self: self.some(lambda m: m.state is S.DISPUTED))
    @rule(pick=picks, aim=st.booleans(), percent=percents, wrong=st.sampled_from([0, 0, 0, 1, -1]))
    def resolve_dispute(self, pick: int, aim: bool, percent: int, wrong: int) -> None:
        m = self.milestone(pick, aim, lambda m: m.state is S.DISPUTED)
        release = m.held * percent // 100
        refund = max(0, m.held - release + wrong)
        if m.state is not S.DISPUTED or release + refund != m.held:
            self.refused(
                f"resolving {m.label} ({m.state.value}, holding {m.held}) as release {release} + refund {refund}",
                lambda: self.escrow.refunds.resolve_dispute(m.id, release=release, refund=refund),
            )
            return
        note(f"  resolve the dispute over {m.label}: release {release}, refund {refund}")
        if release:
            self.model.release(m, release, self.clock.now())
        if refund:
            self.model.refund_held(m, refund)
        m.state = S.SETTLED if release and refund else S.RELEASED if release else S.REFUNDED
        assert self.escrow.refunds.resolve_dispute(m.id, release=release, refund=refund).state is m.state
        self.bind_payments()

    @precondition(lambda self: self.model.payments)
    @rule(pick=picks, aim=st.booleans(), how=st.sampled_from(["all", "part", "part", "more"]), percent=percents)
    def refund_payment(self, pick: int, aim: bool, how: str, percent: int) -> None:
        now = self.clock.now()
        payment = choose(
            self.model.payments,
            pick,
            aim,
            lambda p: p.refunded < p.gross and now <= p.released_at + REFUND_WINDOW,
        )
        assert payment.id is not None
        refundable = payment.gross - payment.refunded
        amount = {"all": refundable or 1, "part": max(1, refundable * percent // 100), "more": refundable + 1}[how]
        pair = payment.milestone.contract.pair
        lifetime = self.model.lifetime[pair]
        available = self.model.available[payment.wallet]
        allowed = now <= payment.released_at + REFUND_WINDOW and amount <= refundable
        if allowed:
            # The fee comes back by the refund rule; the freelancer's part comes out of
            # what is still pending of this payment first, then out of available.
            fee_back = fee_total(pair[2], lifetime) - fee_total(pair[2], lifetime - amount)
            from_pending = min(payment.pending_remaining, amount - fee_back)
            from_available = amount - fee_back - from_pending
            allowed = from_available <= available
        if not allowed:
            self.refused(
                f"refunding {amount} of {payment.label} ({refundable} refundable, released"
                f" {payment.released_at:%Y-%m-%d}, {payment.pending_remaining} pending, {available} available)",
                lambda: self.escrow.refunds.refund_payment(payment.id, amount),  # type: ignore[arg-type]
            )
            return
        note(
            f"  refund {amount} of {payment.label}: fee back {fee_back},"
            f" {from_pending} out of pending, {from_available} out of available"
        )
        self.model.lifetime[pair] = lifetime - amount
        self.model.fees[pair] -= fee_back
        payment.refunded += amount
        payment.pending_remaining -= from_pending
        self.model.available[payment.wallet] -= from_available
        self.model.psp[pair[2]] -= amount
        refund = self.escrow.refunds.refund_payment(payment.id, amount)
        assert (refund.amount, refund.fee_returned) == (amount, fee_back)

    # --- freelancer money -----------------------------------------------------------------------

    @precondition(lambda self: self.model.payments)
    @rule(
        pick=picks,
        aim=st.booleans(),
        how=st.sampled_from(["part", "part", "all", "more"]),
        percent=percents,
        decline=st.booleans(),
    )
    def request_payout(self, pick: int, aim: bool, how: str, percent: int, decline: bool) -> None:
        wallets = [(f, c) for f in FREELANCERS for c in CURRENCIES]
        freelancer, currency = choose(wallets, pick, aim, lambda w: self.model.available[w] > 0)
        available = self.model.available[(freelancer, currency)]
        amount = {"part": max(1, available * percent // 100), "all": available or 1, "more": available + 1}[how]
        if amount > available:
            self.refused(
                f"paying out {amount} {currency} to {freelancer} with {available} available",
                lambda: self.escrow.payouts.request_payout(freelancer, amount=amount, currency=currency),
            )
            return
        if decline:
            note(f"  pay out {amount} {currency} to {freelancer}: the provider fails it, the money stays available")
            self.gateway.decline_next("account_closed")
            payout = self.escrow.payouts.request_payout(freelancer, amount=amount, currency=currency)
            assert payout.state is PayoutState.FAILED
            return
        note(f"  pay out {amount} {currency} of {available} available to {freelancer}")
        self.model.available[(freelancer, currency)] -= amount
        self.model.psp[currency] -= amount
        assert (
            self.escrow.payouts.request_payout(freelancer, amount=amount, currency=currency).state is PayoutState.PAID
        )

    # --- time -----------------------------------------------------------------------------------

    @rule(days=st.one_of(st.integers(0, 16), st.sampled_from([30, 90, 181])), hours=st.integers(0, 23))
    def advance_and_tick(self, days: int, hours: int) -> None:
        self.clock.advance(timedelta(days=days, hours=hours))
        now = self.clock.now()
        note(f"  {days} days {hours} hours later, {now:%Y-%m-%d %H:%M}: tick")
        self.model.tick(now)
        self.escrow.orders.tick()
        self.bind_payments()

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def escrow_agrees_with_the_model(self) -> None:
        """One invariant, so the story shows one line per step; its parts fail with their own message."""
        report = self.book.audit()
        assert report.ok, report.summary()
        self.check_milestones()
        platform = self.platform_balances()
        self.check_fees(platform)
        self.check_balances(platform)

    def check_milestones(self) -> None:
        for contract in self.model.contracts:
            if contract.at_rest:
                continue  # ended and all final, as seen before: nothing may change it now
            real = {m.id: m for m in self.escrow.reads.milestones(contract.id)}
            assert set(real) == {m.id for m in contract.milestones}, f"{contract.label}: other milestones"
            for m in contract.milestones:
                got = real[m.id]
                actual = (got.state, got.held, got.amount, got.review_deadline, got.refund_deadline, got.failure_reason)
                expected = (m.state, m.held, m.amount, m.review_deadline, m.refund_deadline, m.failure_reason)
                assert actual == expected, (
                    f"{m.label}: (state, held, amount, review, refund deadline, failure) {actual} != model {expected}"
                )
                assert got.state not in FINAL or got.held == 0, f"{m.label} is {got.state.value} but holds {got.held}"
            contract.at_rest = contract.ended_by is not None and all(m.state in FINAL for m in contract.milestones)

    def check_fees(self, platform: dict[tuple[str, str], int]) -> None:
        by_pair = (fee_events.c.freelancer_id, fee_events.c.client_id, fee_events.c.currency, fee_events.c.kind)
        query = select(*by_pair, func.sum(fee_events.c.fee)).group_by(*by_pair)
        rows = self.book.transaction(lambda uow: list(uow.connection.execute(query)), read_only=True)
        net_fees: dict[Pair, int] = defaultdict(int)
        for freelancer, client, currency, kind, total in rows:
            net_fees[(freelancer, client, currency)] += int(total) if kind == "charge" else -int(total)
        revenue: dict[str, int] = defaultdict(int)
        for pair in sorted({c.pair for c in self.model.contracts} | set(net_fees)):
            lifetime = self.model.lifetime[pair]
            billed = self.book.lifetime_billings(*pair)
            assert billed == lifetime, f"{pair}: lifetime billings {billed} != model {lifetime}"
            expected = fee_total(pair[2], lifetime)
            assert self.model.fees[pair] == expected, f"{pair}: the model's fees drifted from R(F(L))"
            assert net_fees[pair] == expected, (
                f"{pair}: fees charged - returned {net_fees[pair]} != R(F({lifetime})) = {expected}"
            )
            revenue[pair[2]] += expected
        for currency in CURRENCIES:
            actual = platform[(SERVICE_FEES, currency)]
            assert actual == revenue[currency], f"{currency} service fee revenue {actual} != {revenue[currency]}"

    def check_balances(self, platform: dict[tuple[str, str], int]) -> None:
        wallets = sorted({(c.freelancer, c.currency) for c in self.model.contracts} | set(self.model.available))
        for freelancer, currency in wallets:
            balance = self.escrow.payouts.balance(freelancer, currency)
            actual = (balance.pending, balance.available, balance.in_transit)
            expected = (self.model.pending((freelancer, currency)), self.model.available[(freelancer, currency)], 0)
            assert actual == expected, (
                f"{freelancer} {currency}: (pending, available, in transit) {actual} != model {expected}"
            )
        for currency in CURRENCIES:
            actual = platform[(self.gateway.psp_account, currency)]
            assert actual == self.model.psp[currency], (
                f"{currency} at the provider {actual} != {self.model.psp[currency]}"
            )

    def platform_balances(self) -> dict[tuple[str, str], int]:
        """Fee revenue and money at the provider per currency (0 where never opened), in one read."""

        def read(uow: UnitOfWork) -> dict[tuple[str, str], int]:
            found = {}
            for code in (SERVICE_FEES, self.gateway.psp_account):
                for currency in CURRENCIES:
                    account = uow.accounts.find(code, currency)
                    found[(code, currency)] = 0 if account is None else uow.accounts.balance(account)
            return found

        return self.book.transaction(read, read_only=True)


# --- running it on both databases ------------------------------------------------------


def stateful_settings(budgets: dict[str, tuple[int, int]] | None = None) -> settings:
    """The current profile (dev or ci), with a state machine's own budget (this one's by default)."""
    profile = settings.get_current_profile_name()
    examples, steps = (STATEFUL_BUDGET if budgets is None else budgets).get(profile, DEFAULT_BUDGET)
    return settings(
        parent=settings.get_profile(profile),
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
    )


def sqlite_connector(template: Path, directory: Path) -> Connector:
    """Each example gets its own copy of the migrated template file."""
    made = 0

    def connect(clock: FixedClock) -> tuple[Ledger, Callable[[], None]]:
        nonlocal made
        made += 1
        path = directory / f"escrow-{made}.sqlite3"
        path.write_bytes(template.read_bytes())

        def cleanup() -> None:
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)

        return open_ledger(f"sqlite:///{path}", clock=clock), cleanup

    return connect


def postgres_connector(url: str) -> Connector:
    """Each example empties the session's PostgreSQL database first."""

    def connect(clock: FixedClock) -> tuple[Ledger, Callable[[], None]]:
        empty_postgres(url)
        return open_ledger(url, clock=clock), lambda: None

    return connect


@pytest.mark.parametrize("database", database_names())
def test_escrow_machine(database: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Escrow rules, money flows, fees and balances hold over random marketplace histories."""
    if database == "sqlite":
        connect = sqlite_connector(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        connect = postgres_connector(request.getfixturevalue("postgres_database"))
    # Hypothesis documents any factory of machines here; its annotation says a class.
    run_state_machine_as_test(lambda: EscrowMachine(connect), settings=stateful_settings())  # type: ignore[arg-type]
