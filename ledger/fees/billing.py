"""Fee use cases: charge, refund, quote; schedules in force; lifetime billings.

Each use case takes a unit of work and runs inside its transaction, so a release
can charge its fee and post its journal entry atomically. A charge or refund:
1. locks the pair's lifetime billings row (created at 0 on first use);
2. replays the original event if its idempotency key was used with the same
   request (`IdempotencyConflict` if with another);
3. computes the fee: a charge under the schedule in force at its `effective_at`, a
   refund under the schedule of the charge it refunds (so a schedule change between
   the two never turns into money);
4. records the fee event, with that schedule, and moves the pair's lifetime billings.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from ledger.clock import require_utc
from ledger.errors import IdempotencyConflict, InvalidRequest
from ledger.fees.model import (
    ACTIVATION_LEAD,
    FeeEvent,
    RefundExceedsBillings,
    ScheduleInForce,
    ScheduleNotInFuture,
    UnknownCharge,
)
from ledger.fees.rule import FeeBreakdown, fee_for_payment, fee_for_refund
from ledger.fees.schedule import shipped_schedule
from ledger.money import normalize_currency
from ledger.ports.unit_of_work import UnitOfWork

MAX_PARTY_ID = 100


def _party(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PARTY_ID:
        raise InvalidRequest(f"{field} is a non-empty id of at most {MAX_PARTY_ID} characters", field=field)
    return value


def _amount(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(f"amount must be a positive integer of minor units, not {value!r}", field="amount")
    return value


def _utc(at: datetime | None, uow: UnitOfWork) -> datetime:
    if at is None:
        return uow.clock.now()
    try:
        return require_utc(at)
    except ValueError as error:
        raise InvalidRequest(str(error), field="effective_at") from None


def _fingerprint(
    kind: str, freelancer: str, client: str, currency: str, amount: int, at: datetime | None, refunds: str | None
) -> str:
    body: list[object] = [kind, freelancer, client, currency, amount, None if at is None else at.isoformat()]
    if refunds is not None:  # appended, so a charge's fingerprint is what it always was
        body.append(refunds)
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()


def schedule_in_force(uow: UnitOfWork, at: datetime) -> ScheduleInForce:
    """The schedule that rules fee events effective at `at`."""
    return uow.fees.schedule_at(require_utc(at))


def schedules(uow: UnitOfWork) -> list[ScheduleInForce]:
    """Every schedule ever put in force, oldest first."""
    return uow.fees.all_schedules()


def activate_schedule(uow: UnitOfWork, name: str, effective_from: datetime) -> ScheduleInForce:
    """Put a shipped schedule (`classic`, `flat-10`) in force from a future time.

    The past is never re-priced: fees already charged were charged under the
    schedule then in force, so `effective_from` must be later than now, by
    `ACTIVATION_LEAD` at least (so that servers may keep the schedules they read
    for a while without pricing a fee under the wrong one).
    """
    schedule = shipped_schedule(name)
    start = _utc(effective_from, uow)
    earliest = uow.clock.now() + ACTIVATION_LEAD
    if start < earliest:
        raise ScheduleNotInFuture(
            f"a schedule can only take effect {ACTIVATION_LEAD} from now or later; "
            f"{start.isoformat()} is before {earliest.isoformat()}",
            effective_from=start.isoformat(),
            earliest=earliest.isoformat(),
        )
    return uow.fees.add_schedule(schedule, start, recorded_at=uow.clock.now())


def lifetime_billings(uow: UnitOfWork, freelancer_id: str, client_id: str, currency: str) -> int:
    """What the freelancer has billed the client in `currency`, net of refunds (minor units)."""
    return uow.fees.billed(_party(freelancer_id, "freelancer_id"), _party(client_id, "client_id"), currency)


def quote_fee(
    uow: UnitOfWork,
    *,
    amount: int,
    currency: str,
    freelancer_id: str | None = None,
    client_id: str | None = None,
    lifetime: int | None = None,
    at: datetime | None = None,
) -> FeeBreakdown:
    """Preview the fee of a prospective payment; charges nothing, locks nothing. The
    lifetime billings it starts from are the pair's (`freelancer_id` and `client_id`), or
    a hypothetical `lifetime` (minor units) for pricing without a pair."""
    currency = normalize_currency(currency)
    moment = _utc(at, uow)
    if lifetime is not None:
        if freelancer_id is not None or client_id is not None:
            raise InvalidRequest("give lifetime or the freelancer and client, not both", field="lifetime")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 0:
            raise InvalidRequest(f"lifetime is an amount of 0 or more, not {lifetime!r}", field="lifetime")
        billed = lifetime
    elif freelancer_id and client_id:
        billed = lifetime_billings(uow, freelancer_id, client_id, currency)
    else:
        raise InvalidRequest("name the freelancer and the client, or give lifetime", field="freelancer_id")
    return fee_for_payment(uow.fees.schedule_at(moment).schedule, currency, billed, _amount(amount))


def charge_fee(
    uow: UnitOfWork,
    *,
    idempotency_key: str,
    freelancer_id: str,
    client_id: str,
    amount: int,
    currency: str,
    effective_at: datetime | None = None,
) -> FeeEvent:
    """Charge the fee on a payment of `amount` under the schedule in force at `effective_at`
    (now by default) and add it to the pair's lifetime billings."""
    return _record(uow, "charge", idempotency_key, freelancer_id, client_id, amount, currency, effective_at, None)


def refund_fee(
    uow: UnitOfWork,
    *,
    idempotency_key: str,
    freelancer_id: str,
    client_id: str,
    amount: int,
    currency: str,
    refunds: str,
    effective_at: datetime | None = None,
) -> FeeEvent:
    """Return the fee on a refund of `amount` of the charge whose idempotency key is
    `refunds` (a release's payment id): R(F_s(L)) - R(F_s(L - amount)) at the pair's
    lifetime billings L, the most recently billed tier first, where s is the schedule
    that charge was made under, whatever schedule is in force now."""
    if not isinstance(refunds, str) or not refunds.strip():
        raise InvalidRequest("a refund names the idempotency key of the charge it refunds", field="refunds")
    return _record(uow, "refund", idempotency_key, freelancer_id, client_id, amount, currency, effective_at, refunds)


def _record(
    uow: UnitOfWork,
    kind: str,
    key: str,
    freelancer_id: str,
    client_id: str,
    amount: int,
    currency: str,
    effective_at: datetime | None,
    refunds: str | None,
) -> FeeEvent:
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise InvalidRequest(
            "an idempotency key is a non-empty string of at most 255 characters", field="idempotency_key"
        )
    freelancer = _party(freelancer_id, "freelancer_id")
    client = _party(client_id, "client_id")
    code = normalize_currency(currency)
    minor = _amount(amount)
    requested_at = None if effective_at is None else _utc(effective_at, uow)
    request_hash = _fingerprint(kind, freelancer, client, code, minor, requested_at, refunds)

    billed = uow.fees.lock_pair(freelancer, client, code)  # serializes the pair's fee events
    moment = requested_at or uow.clock.now()
    if refunds is None:
        # A charge's key is new but for a retry (a release's is its payment id): the event
        # is written first and only a key already used is looked up.
        schedule = uow.fees.schedule_at(moment)
        breakdown = fee_for_payment(schedule.schedule, code, billed, minor)
    else:
        # A refund's is looked up first: a replay must not be refused for what the
        # first refund itself changed (the billings it lowered).
        earlier = _replayed(uow, key, request_hash)
        if earlier is not None:
            return earlier
        schedule = _schedule_charged(uow, refunds, freelancer, client, code)
        if minor > billed:
            raise RefundExceedsBillings(
                f"a refund of {minor} exceeds the {billed} that {freelancer} has billed {client} in {code} (minor units)",
                amount=minor,
                billed=billed,
            )
        breakdown = fee_for_refund(schedule.schedule, code, billed, minor)
    recorded = uow.fees.add_event(
        key=key,
        request_hash=request_hash,
        kind=kind,
        freelancer_id=freelancer,
        client_id=client,
        breakdown=breakdown,
        schedule_id=schedule.id,
        effective_at=moment,
        recorded_at=uow.clock.now(),
    )
    if recorded is not None:
        return recorded
    earlier = _replayed(uow, key, request_hash)
    assert earlier is not None, "add_event writes nothing only when the key was used"
    return earlier


def _replayed(uow: UnitOfWork, key: str, request_hash: str) -> FeeEvent | None:
    """The event recorded under `key` if the same request made it; `IdempotencyConflict` if another did."""
    existing = uow.fees.event_by_key(key)
    if existing is None:
        return None
    event, stored_hash = existing
    if stored_hash != request_hash:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was already used for fee event {event.id} with a different request",
            idempotency_key=key,
        )
    return event


def _schedule_charged(uow: UnitOfWork, charge_key: str, freelancer: str, client: str, currency: str) -> ScheduleInForce:
    """The schedule the pair's charge `charge_key` was made under (its fee event records it)."""
    found = uow.fees.event_by_key(charge_key)
    charge = None if found is None else found[0]
    pair = (freelancer, client, currency)
    if charge is None or charge.kind != "charge" or (charge.freelancer_id, charge.client_id, charge.currency) != pair:
        raise UnknownCharge(
            f"{freelancer} has no fee charge {charge_key!r} with {client} in {currency} to refund",
            refunds=charge_key,
        )
    return uow.fees.schedule_by_id(charge.schedule_id)
