"""Milestone use cases: the transition table (docs/architecture.md, "Milestone transitions and timers"), each with its money.

Every function takes a unit of work, locks the rows it changes, checks the
transition, and writes the new state and its journal entry in the same
transaction: a state without its entry, or an entry without its state, cannot
happen. Refused transitions raise `InvalidTransition` (a `LedgerError`) and change
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from ledger.bookkeeping import post_entry
from ledger.errors import CurrencyMismatch, InvalidRequest
from ledger.escrow.accounts import open_escrow_account, open_freelancer_accounts, open_platform_accounts
from ledger.escrow.chart import (
    CLIENT_PROCESSING_FEES,
    escrow_account_code,
)
from ledger.escrow.model import (
    REFUND_REQUEST_PERIOD,
    REVIEW_PERIOD,
    Contract,
    ContractEnded,
    Event,
    InvalidTransition,
    Milestone,
    MilestoneState,
    Payment,
    SubjectKind,
    WrongContractType,
    new_id,
    party_id,
    require_transition,
    require_unfrozen,
)
from ledger.escrow.orders import NewOrder, OrderKind, OrderState, PaymentOrder
from ledger.escrow.payments import entry_refs, refund_from_escrow, release
from ledger.fees.billing import schedule_in_force
from ledger.fees.rule import client_processing_fee
from ledger.journal import EntryRequest, credit, debit
from ledger.kinds import EntryKind
from ledger.money import normalize_currency
from ledger.ports.unit_of_work import UnitOfWork

REVIEW_EXPIRY = "review_expiry"
REFUND_REQUEST_EXPIRY = "refund_request_expiry"
MAX_TITLE = 200


def _title(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TITLE:
        raise InvalidRequest(f"title is a non-empty string of at most {MAX_TITLE} characters", field="title")
    return value.strip()


def positive_amount(amount: object, field: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequest(f"{field} must be a positive integer of minor units, not {amount!r}", field=field)
    return amount


def open_contract(uow: UnitOfWork, *, client_id: str, freelancer_id: str, currency: str, title: str) -> Contract:
    contract = new_contract(uow, client_id=client_id, freelancer_id=freelancer_id, currency=currency, title=title)
    save_new_contract(uow, contract)
    return contract


def new_contract(uow: UnitOfWork, *, client_id: str, freelancer_id: str, currency: str, title: str) -> Contract:
    """A fixed-price contract checked and not saved yet (an hourly one is made from it)."""
    client = party_id(client_id, "client_id")
    freelancer = party_id(freelancer_id, "freelancer_id")
    if client == freelancer:
        raise InvalidRequest("a client cannot contract with themselves", field="freelancer_id")
    code = normalize_currency(currency)
    # The fee schedule must cover the currency, or no release could ever be priced.
    schedule_in_force(uow, uow.clock.now()).schedule.tiers_for(code)
    return Contract(new_id("ct"), client, freelancer, code, _title(title), uow.clock.now())


def save_new_contract(uow: UnitOfWork, contract: Contract) -> None:
    uow.escrow.add_contract(contract)
    # Opened now, so that the contract's first release, on the approval's hot path, finds them.
    open_freelancer_accounts(uow, contract.freelancer_id, contract.currency)


def add_milestone(
    uow: UnitOfWork, contract_id: str, *, title: str, amount: int, due_date: date | None = None
) -> Milestone:
    contract = uow.escrow.contract(contract_id, lock=True)
    if contract.ended_by is not None:
        raise ContractEnded(f"contract {contract_id} has ended", contract_id=contract_id)
    if contract.is_hourly:
        raise WrongContractType(
            f"contract {contract_id} is hourly: it is paid by the week for logged time, not by milestones",
            contract_id=contract_id,
            type=contract.type,
        )
    if due_date is not None and not isinstance(due_date, date):
        raise InvalidRequest("due_date must be a date", field="due_date")
    milestone = add_subject(
        uow,
        contract,
        subject_id=new_id("ms"),
        kind=SubjectKind.MILESTONE,
        title=_title(title),
        amount=positive_amount(amount),
        due_date=due_date,
    )
    return uow.escrow.milestone(milestone.id)


def add_subject(
    uow: UnitOfWork,
    contract: Contract,
    *,
    subject_id: str,
    kind: SubjectKind,
    title: str,
    amount: int,
    due_date: date | None = None,
) -> Milestone:
    """A new escrow subject (a milestone, an hourly week or an hourly bonus) in `draft`,
    with its escrow account open."""
    subject = Milestone(
        id=subject_id,
        contract_id=contract.id,
        title=title,
        amount=amount,
        due_date=due_date,
        state=MilestoneState.DRAFT,
        held=0,
        review_deadline=None,
        refund_deadline=None,
        failure_reason=None,
        created_at=uow.clock.now(),
        kind=kind,
    )
    uow.escrow.add_milestone(subject)
    open_escrow_account(uow, subject_id, contract.currency)
    return subject


@dataclass(frozen=True)
class FundingStart:
    """A funding requested: the milestone, and the payment order that charges the client
    (a cancellation of the previous attempt's charge first, when one may still succeed).

    Attributes:
        milestone: as it stands (`funding`).
        order: the order written, or the open one of the attempt under way.
    """

    milestone: Milestone
    order: PaymentOrder | None


def start_funding(uow: UnitOfWork, milestone_id: str, *, payment_method: str | None = None) -> FundingStart:
    """draft -> funding, with the order that charges the client.

    A milestone already `funding` returns its attempt's open order, so a retried request
    asks after the same charge instead of making another. The amount charged (the
    milestone's amount and the client processing fee of the schedule in force now) is
    fixed on the order: the booking takes it from there."""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    contract = uow.escrow.contract(milestone.contract_id)
    fund_orders = uow.orders.of_milestone(milestone_id, kinds=(OrderKind.FUND, OrderKind.CANCEL))
    open_orders = [o for o in fund_orders if not o.state.is_final]
    if milestone.state is MilestoneState.FUNDING:
        return FundingStart(milestone, open_orders[-1] if open_orders else None)
    require_transition(milestone_id, milestone.state, Event.REQUEST_FUNDING)
    if contract.ended_by is not None:
        raise ContractEnded(f"contract {contract.id} has ended", contract_id=contract.id)
    key = new_id("fund")
    details = _charge_details(uow, milestone, contract, key, payment_method)
    unfinished = [o for o in open_orders if o.kind is OrderKind.FUND and o.provider_reference]
    if unfinished:
        # The previous attempt's charge is not over at the provider (it failed authentication
        # but could still be completed): cancel it first; the new charge follows the cancellation.
        previous = unfinished[-1]
        order = uow.orders.add(
            NewOrder(
                kind=OrderKind.CANCEL,
                amount=previous.amount,
                currency=contract.currency,
                provider_key=f"cancel:{previous.id}",
                milestone_id=milestone_id,
                target_reference=previous.provider_reference,
                details={
                    **{k: v for k, v in details.items() if k != "funding_key"},
                    "funding_key": previous.details.get("funding_key", previous.provider_key),
                    "next_funding_key": key,
                    "reason": "superseded by a new funding attempt",
                },
            )
        )
        uow.escrow.begin_funding(milestone_id, funding_key=previous.details.get("funding_key", previous.provider_key))
        return FundingStart(uow.escrow.milestone(milestone_id), order)
    order = _order_charge(uow, milestone_id, contract.currency, details)
    uow.escrow.begin_funding(milestone_id, funding_key=key)
    return FundingStart(uow.escrow.milestone(milestone_id), order)


def _charge_details(
    uow: UnitOfWork, milestone: Milestone, contract: Contract, funding_key: str, payment_method: str | None
) -> dict[str, str]:
    """What a charge for the milestone's amount carries: the amount and the client
    processing fee of the schedule in force now, fixed here for the booking."""
    schedule = schedule_in_force(uow, uow.clock.now()).schedule
    details = {
        "funding_key": funding_key,
        "amount": str(milestone.amount),
        "client_fee": str(client_processing_fee(schedule, milestone.amount)),
        "party": contract.client_id,
        "contract": contract.id,
        "milestone": milestone.id,
    }
    if payment_method:
        details["payment_method"] = payment_method
    return details


def charge_subject(
    uow: UnitOfWork, milestone: Milestone, contract: Contract, *, funding_key: str, off_session: bool = False
) -> PaymentOrder:
    """draft -> funding for an escrow subject the platform charges for on its own (an
    hourly week at its close, an hourly bonus): the charge's order, under the subject's
    lock. Unlike `start_funding` it is not refused on an ended contract: the week's
    work was done before the end. An `off_session` charge has no payer present to act:
    the provider asking for the payer's action is its failure."""
    require_transition(milestone.id, milestone.state, Event.REQUEST_FUNDING)
    details = _charge_details(uow, milestone, contract, funding_key, None)
    if off_session:
        details["off_session"] = "true"
    order = _order_charge(uow, milestone.id, contract.currency, details)
    uow.escrow.begin_funding(milestone.id, funding_key=funding_key)
    return order


def _order_charge(uow: UnitOfWork, milestone_id: str, currency: str, details: dict[str, str]) -> PaymentOrder:
    return uow.orders.add(
        NewOrder(
            kind=OrderKind.FUND,
            amount=int(details["amount"]) + int(details["client_fee"]),
            currency=currency,
            provider_key=details["funding_key"],
            milestone_id=milestone_id,
            details=details,
        )
    )


def start_next_attempt(uow: UnitOfWork, cancellation: PaymentOrder) -> None:
    """The previous attempt's charge is cancelled: make the new one."""
    milestone_id = cancellation.milestone_id or ""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    key, _ = uow.escrow.funding(milestone_id)
    if milestone.state is not MilestoneState.FUNDING or key != cancellation.details.get("funding_key"):
        return  # the milestone moved on (the old charge was booked, or the contract ended)
    details = {k: v for k, v in cancellation.details.items() if k not in ("next_funding_key", "reason", "funding_key")}
    details["funding_key"] = cancellation.details["next_funding_key"]
    _order_charge(uow, milestone_id, cancellation.currency, details)
    uow.escrow.set_funding_key(milestone_id, details["funding_key"])


def await_funding(uow: UnitOfWork, milestone_id: str, *, funding_key: str, reference: str) -> Milestone:
    """The payment waits for the customer: remember the provider's payment to ask about it later."""
    key, _ = uow.escrow.funding(milestone_id)
    if key == funding_key:
        uow.escrow.set_funding_reference(milestone_id, reference)
    return uow.escrow.milestone(milestone_id)


def confirm_funding(
    uow: UnitOfWork, milestone_id: str, *, funding_key: str, reference: str, psp_account: str
) -> Milestone:
    """funding -> funded, posting psp -> escrow (and the client processing fee), with the
    amounts on the attempt's order.

    Idempotent: the provider's webhook and our own retrieval may both confirm; the
    second finds the attempt booked and changes nothing. A success of an attempt that is
    no longer the milestone's (superseded, failed, expired, or the milestone funded
    otherwise) is booked and refunded at once: the client paid, nothing holds it."""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    if uow.journal.find_by_keys([f"escrow.fund:{funding_key}"]):
        return milestone  # this attempt is booked already
    contract = uow.escrow.contract(milestone.contract_id)
    order = uow.orders.by_provider_key(funding_key)
    if order is not None:
        amount, client_fee = int(order.details["amount"]), int(order.details["client_fee"])
    else:  # an attempt started before payment orders existed
        schedule = schedule_in_force(uow, uow.clock.now()).schedule
        amount, client_fee = milestone.amount, client_processing_fee(schedule, milestone.amount)
    key, _ = uow.escrow.funding(milestone_id)
    if key != funding_key or milestone.state is not MilestoneState.FUNDING:
        post_funding(uow, contract, milestone_id, amount + client_fee, 0, psp_account, funding_key, reference)
        refund_from_escrow(
            uow,
            contract,
            milestone_id,
            amount + client_fee,
            reason="superseded_attempt",
            charge_reference=reference,
            psp_account=psp_account,
        )
        if order is not None:
            uow.orders.finish(
                order.id, OrderState.SUCCEEDED, reference=reference, reason="refunded: superseded attempt"
            )
        return uow.escrow.milestone(milestone_id)
    require_transition(milestone_id, milestone.state, Event.PAYMENT_CONFIRMED)
    post_funding(uow, contract, milestone_id, amount, client_fee, psp_account, funding_key, reference)
    uow.escrow.mark_funded(milestone_id, reference=reference, psp_account=psp_account)
    if order is not None:
        uow.orders.finish(order.id, OrderState.SUCCEEDED, reference=reference)
    if contract.ended_by is not None and milestone.kind is SubjectKind.MILESTONE:
        # The payment landed after the contract ended: the money goes straight back.
        # (An hourly week is charged for work done before the end: it is released.)
        refund_from_escrow(uow, contract, milestone_id, amount, reason="contract_ended")
        uow.escrow.save_milestone(replace(milestone, state=MilestoneState.REFUNDED))
    return uow.escrow.milestone(milestone_id)


def post_funding(
    uow: UnitOfWork,
    contract: Contract,
    milestone_id: str,
    amount: int,
    client_fee: int,
    psp_account: str,
    key: str,
    reference: str,
    *,
    kind: EntryKind = EntryKind.FUND,
) -> None:
    currency = contract.currency
    open_platform_accounts(uow, currency, psp_account)
    postings = [
        debit(psp_account, amount + client_fee, currency),
        credit(escrow_account_code(milestone_id), amount, currency),
    ]
    if client_fee:
        postings.append(credit(CLIENT_PROCESSING_FEES, client_fee, currency))
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"{kind}:{key}",
            kind=kind,
            postings=tuple(postings),
            refs=entry_refs(contract, milestone_id, gateway_reference=reference),
        ),
    )


def fail_funding(uow: UnitOfWork, milestone_id: str, *, funding_key: str, reason: str) -> Milestone:
    """funding -> draft, keeping the provider's reason; no money moved."""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    key, _ = uow.escrow.funding(milestone_id)
    if milestone.state is not MilestoneState.FUNDING and key == funding_key:
        return milestone  # the failure was already recorded (or the attempt was booked meanwhile)
    if key != funding_key:
        raise InvalidTransition(f"funding attempt {funding_key} is not current", milestone_id=milestone_id)
    require_transition(milestone_id, milestone.state, Event.PAYMENT_FAILED)
    order = uow.orders.by_provider_key(funding_key)
    if order is not None and order.state is OrderState.PENDING:
        uow.orders.finish(order.id, OrderState.FAILED, reason=reason)
    # The key stays: a later success of this attempt is recognised (booked and refunded).
    uow.escrow.save_milestone(replace(milestone, state=MilestoneState.DRAFT, failure_reason=reason[:500]))
    return uow.escrow.milestone(milestone_id)


def submit(uow: UnitOfWork, milestone_id: str) -> Milestone:
    """The freelancer submits work: the 14-day review clock starts (or restarts)."""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    require_transition(milestone_id, milestone.state, Event.SUBMIT)
    if milestone.frozen_by is not None:  # a chargeback holds the clock; it starts when it closes
        uow.escrow.save_milestone(replace(milestone, state=MilestoneState.SUBMITTED, review_deadline=None))
        return uow.escrow.milestone(milestone_id)
    deadline = uow.clock.now() + REVIEW_PERIOD
    uow.escrow.save_milestone(replace(milestone, state=MilestoneState.SUBMITTED, review_deadline=deadline))
    uow.escrow.schedule(REVIEW_EXPIRY, milestone_id, deadline)
    return uow.escrow.milestone(milestone_id)


def request_changes(uow: UnitOfWork, milestone_id: str) -> Milestone:
    """The client asks for changes: the review clock stops."""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    require_transition(milestone_id, milestone.state, Event.REQUEST_CHANGES)
    uow.escrow.save_milestone(replace(milestone, state=MilestoneState.CHANGES_REQUESTED, review_deadline=None))
    return uow.escrow.milestone(milestone_id)


def expire_review(uow: UnitOfWork, milestone_id: str, deadline: datetime) -> list[Payment]:
    """The client stayed silent 14 days after submission: release all held, dated at the deadline.

    A stale timer (the client approved or asked for changes meanwhile, or the work
    was resubmitted with a new deadline) does nothing."""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    if (
        milestone.state is not MilestoneState.SUBMITTED
        or milestone.review_deadline != deadline
        or milestone.frozen_by is not None
    ):
        return []
    require_transition(milestone_id, milestone.state, Event.REVIEW_EXPIRED)
    contract = uow.escrow.contract(milestone.contract_id)
    payment = release(uow, contract, milestone, milestone.held, effective_at=deadline)
    uow.escrow.save_milestone(replace(milestone, state=MilestoneState.RELEASED, review_deadline=None))
    return [payment]


def end_contract(uow: UnitOfWork, contract_id: str, *, ended_by: str) -> Contract:
    """End a contract. Money held for active milestones: if the freelancer ends it,
    it is refunded to the client at once; if the client ends it, the freelancer is
    asked (a refund request, refunded after 7 days of silence). A client cannot pull
    escrow back on their own."""
    if ended_by not in ("client", "freelancer"):
        raise InvalidRequest("ended_by is 'client' or 'freelancer'", field="ended_by")
    contract = uow.escrow.contract(contract_id, lock=True)
    if contract.ended_by is not None:
        raise InvalidTransition(
            f"contract {contract_id} was already ended by the {contract.ended_by}", contract_id=contract_id
        )
    now = uow.clock.now()
    event = Event.CLIENT_ENDS if ended_by == "client" else Event.FREELANCER_ENDS
    for milestone in uow.escrow.milestones_of(contract_id, lock=True):
        if milestone.state is MilestoneState.APPROVAL_PENDING:
            raise InvalidTransition(
                f"milestone {milestone.id} waits for its approval's bonus charge: end the contract after it",
                milestone_id=milestone.id,
                state=milestone.state.value,
            )
        if not milestone.state.is_active:
            continue
        require_transition(milestone.id, milestone.state, event)
        require_unfrozen(milestone, event)
        if ended_by == "freelancer":
            refund_from_escrow(uow, contract, milestone.id, milestone.held, reason="ended_by_freelancer")
            uow.escrow.save_milestone(replace(milestone, state=MilestoneState.REFUNDED, review_deadline=None))
        else:
            # A chargeback holds the clock: it starts when the dispute closes.
            deadline = None if milestone.frozen_by else now + REFUND_REQUEST_PERIOD
            uow.escrow.save_milestone(
                replace(
                    milestone, state=MilestoneState.REFUND_REQUESTED, review_deadline=None, refund_deadline=deadline
                )
            )
            if deadline is not None:
                uow.escrow.schedule(REFUND_REQUEST_EXPIRY, milestone.id, deadline)
    uow.escrow.end_contract(contract_id, ended_by, now)
    return uow.escrow.contract(contract_id)


def accept_refund_request(uow: UnitOfWork, milestone_id: str) -> Milestone:
    """The freelancer agrees: all held goes back to the client."""
    return _refund_requested(uow, milestone_id, Event.ACCEPT_REFUND, uow.clock.now())


def expire_refund_request(uow: UnitOfWork, milestone_id: str, deadline: datetime) -> Milestone | None:
    """Seven days without an answer: refunded, dated at the deadline (stale timers do nothing)."""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    if (
        milestone.state is not MilestoneState.REFUND_REQUESTED
        or milestone.refund_deadline != deadline
        or milestone.frozen_by is not None
    ):
        return None
    return _refund_requested(uow, milestone_id, Event.REFUND_REQUEST_EXPIRED, deadline)


def _refund_requested(uow: UnitOfWork, milestone_id: str, event: Event, at: datetime) -> Milestone:
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    require_transition(milestone_id, milestone.state, event)
    require_unfrozen(milestone, event)
    contract = uow.escrow.contract(milestone.contract_id)
    refund_from_escrow(uow, contract, milestone_id, milestone.held, reason=event.value, effective_at=at)
    uow.escrow.save_milestone(replace(milestone, state=MilestoneState.REFUNDED, refund_deadline=None))
    return uow.escrow.milestone(milestone_id)


def dispute_refund_request(uow: UnitOfWork, milestone_id: str) -> Milestone:
    """The freelancer disputes the client's refund request: the money stays held until resolved."""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    require_transition(milestone_id, milestone.state, Event.DISPUTE)
    uow.escrow.save_milestone(replace(milestone, state=MilestoneState.DISPUTED, refund_deadline=None))
    return uow.escrow.milestone(milestone_id)


def resolve_dispute(uow: UnitOfWork, milestone_id: str, *, release_amount: int, refund_amount: int) -> Milestone:
    """Split what is held: `release_amount` to the freelancer (fee only on it), `refund_amount` back."""
    for value, field in ((release_amount, "release"), (refund_amount, "refund")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest(f"{field} must be a non-negative integer of minor units", field=field)
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    require_transition(milestone_id, milestone.state, Event.RESOLVE)
    require_unfrozen(milestone, Event.RESOLVE)
    if release_amount + refund_amount != milestone.held:
        raise InvalidRequest(
            f"release {release_amount} + refund {refund_amount} must equal the {milestone.held} held",
            field="release",
            held=milestone.held,
        )
    contract = uow.escrow.contract(milestone.contract_id)
    now = uow.clock.now()
    if release_amount:
        release(uow, contract, milestone, release_amount, effective_at=now)
    if refund_amount:
        refund_from_escrow(uow, contract, milestone_id, refund_amount, reason="dispute_resolved")
    final = (
        MilestoneState.SETTLED
        if release_amount and refund_amount
        else MilestoneState.RELEASED
        if release_amount
        else MilestoneState.REFUNDED
    )
    uow.escrow.save_milestone(replace(milestone, state=final))
    return uow.escrow.milestone(milestone_id)


def require_currency(contract: Contract, currency: str) -> None:
    if normalize_currency(currency) != contract.currency:
        raise CurrencyMismatch(
            f"contract {contract.id} is in {contract.currency}, not {currency}",
            contract_id=contract.id,
            account_currency=contract.currency,
            currency=currency,
        )
