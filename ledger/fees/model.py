"""Fees' domain records: the schedule in force, recorded fee events, and the fee errors.

Plain values: the use cases in `ledger.fees.billing` compute them with the fee rule
(`ledger.fees.rule`) and the unit of work's fee store keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ledger.errors import Conflict, LedgerError, NotFound
from ledger.fees.rule import FeeBreakdown
from ledger.fees.schedule import FeeSchedule

#: How far ahead of now a schedule must be put in force: a fee priced now never
#: depends on a schedule activated a moment ago, and a server may keep the
#: schedules it read for less than this (`ledger.db.fee_store`).
ACTIVATION_LEAD = timedelta(minutes=5)


class RefundExceedsBillings(Conflict):
    """A refund is larger than what the freelancer has billed the client."""

    code = "refund-exceeds-billings"


class UnknownCharge(NotFound):
    """A refund names a fee charge that the pair has not been charged in that currency."""

    code = "unknown-charge"


class ScheduleNotInFuture(Conflict):
    """A fee schedule can only be put in force from a future time, `ACTIVATION_LEAD` ahead at least."""

    code = "schedule-not-in-future"


class NoScheduleInForce(LedgerError):
    """No fee schedule rules the time asked for (the migrations put `classic` in force from 1970)."""

    code = "no-schedule-in-force"


@dataclass(frozen=True)
class ScheduleInForce:
    """A schedule and the time from which it rules.

    Attributes:
        id: database id, recorded on every fee event charged under it.
        schedule: the tiers and rates.
        effective_from: it applies to fee events effective at or after this time,
            until the next schedule's `effective_from`.
    """

    id: int
    schedule: FeeSchedule
    effective_from: datetime


@dataclass(frozen=True)
class FeeEvent:
    """A recorded fee charge or refund.

    Attributes:
        id, idempotency_key: identity; the key is shared with the journal entry that books the fee.
        kind: "charge" or "refund".
        freelancer_id, client_id, currency: the pair and currency.
        breakdown: amount, fee, net, lifetime before and after, tier lines.
        schedule_id: the schedule it was computed under.
        effective_at, recorded_at: when it counts; when it was written.
    """

    id: int
    idempotency_key: str
    kind: str
    freelancer_id: str
    client_id: str
    currency: str
    breakdown: FeeBreakdown
    schedule_id: int
    effective_at: datetime
    recorded_at: datetime

    @property
    def fee(self) -> int:
        return self.breakdown.fee
