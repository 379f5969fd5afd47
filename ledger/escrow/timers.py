"""`tick`: fire the durable timers that are due.

Timers are rows, not sleeps: a review deadline, a refund request's deadline, the
end of a payment's security period, an hourly week's close and review end. `tick(now)` fires each due timer in its own
transaction, dated at the timer's deadline, and marks it done; firing twice (two
ticks at once, a tick racing an approval) moves money once, because each handler
re-checks the milestone or payment under its row lock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from ledger.clock import require_utc
from ledger.escrow import hourly_disputes
from ledger.escrow.hourly import WEEK_CHARGE_RETRY, WEEK_CLOSE, WEEK_DISPUTE_EXPIRY, WEEK_REVIEW_END, WEEK_WRITE_OFF
from ledger.escrow.hourly_billing import close_week, end_review, retry_charge, write_off
from ledger.escrow.milestones import REFUND_REQUEST_EXPIRY, REVIEW_EXPIRY, expire_refund_request, expire_review
from ledger.escrow.payments import PENDING_RELEASE, mature_payment
from ledger.ports.unit_of_work import UnitOfWork
from ledger.progress import Progress
from ledger.service import Ledger

BATCH = 200


@dataclass(frozen=True)
class TickReport:
    """What a tick did.

    Attributes:
        fired: timers fired, by kind, that moved money (auto-releases, refunds, maturities).
        stale: timers that were no longer relevant (the client acted first).
        orders: what the dispatch after the timers did with the payment orders due.
    """

    fired: Counter[str] = field(default_factory=Counter)
    stale: int = 0
    orders: str = ""

    def summary(self) -> str:
        parts = [f"{n} {kind}" for kind, n in sorted(self.fired.items())] or ["nothing due"]
        text = ", ".join(parts) + (f" ({self.stale} stale timers closed)" if self.stale else "")
        return f"{text}; {self.orders}" if self.orders else text


def fire(uow: UnitOfWork, timer_id: int, kind: str, subject_id: str, due_at: datetime) -> bool:
    """Fire one timer; True if it moved money. Runs inside the caller's transaction."""
    if not uow.escrow.claim_timer(timer_id):
        return False
    if kind == REVIEW_EXPIRY:
        moved = bool(expire_review(uow, subject_id, due_at))
    elif kind == REFUND_REQUEST_EXPIRY:
        moved = expire_refund_request(uow, subject_id, due_at) is not None
    elif kind == PENDING_RELEASE:
        moved = mature_payment(uow, subject_id, due_at) > 0
    elif kind == WEEK_CLOSE:
        moved = close_week(uow, subject_id, due_at)
    elif kind == WEEK_REVIEW_END:
        moved = end_review(uow, subject_id, due_at)
    elif kind == WEEK_CHARGE_RETRY:
        moved = retry_charge(uow, subject_id, due_at)
    elif kind == WEEK_WRITE_OFF:
        moved = write_off(uow, subject_id, due_at)
    elif kind == WEEK_DISPUTE_EXPIRY:
        moved = hourly_disputes.expire(uow, subject_id, due_at)
    else:  # pragma: no cover - a timer kind from a newer version
        raise ValueError(f"unknown timer kind {kind}")
    uow.escrow.finish_timer(timer_id, uow.clock.now())
    return moved


def tick(book: Ledger, now: datetime | None = None, progress: Progress | None = None) -> TickReport:
    """Fire every timer due at `now` (default: the clock's now), oldest first; `progress`
    is told each timer handled (the total is not known: firing one may make another due)."""
    moment = require_utc(now) if now is not None else book.clock.now()
    report = TickReport()
    stale = 0
    while True:
        due = book.transaction(lambda uow: uow.escrow.due_timers(moment, BATCH), read_only=True)
        if not due:
            break
        for timer_id, kind, subject_id, due_at in due:
            moved = book.transaction(lambda uow: fire(uow, timer_id, kind, subject_id, due_at))  # noqa: B023
            if moved:
                report.fired[kind] += 1
            else:
                stale += 1
            if progress is not None:
                progress(sum(report.fired.values()) + stale, None)
        # Firing a timer can schedule another that is already due (an auto-release at
        # day 14 starts a security period ending at day 19): look again until none is.
    return TickReport(report.fired, stale)
