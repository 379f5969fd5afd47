"""`ledger worker`: the dispatcher and the timers, continuously, for a deployment.

Each round fires the due timers, cancels charges the payer left incomplete for
24 hours, sends every due payment order, prunes expired Idempotency-Keys, and
records a heartbeat (`/health/ready` and `ledger orders list` show it). Several
workers may run at once: timers are claimed row by row and orders under a lease.

A round also runs the audit when `LEDGER_AUDIT_INTERVAL` (default 1h) has passed
since the last stored run, by any worker (`AuditSchedule`), and stores its result
for `/metrics` (`ledger.api.metrics`), which never runs it itself: the audit reads
the whole journal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ledger.actors import WORKER, set_actor
from ledger.audit import AuditReport
from ledger.escrow.dispatcher import dispatcher_name
from ledger.escrow.service import Escrow
from ledger.service import Ledger

log = logging.getLogger("ledger.worker")
#: How long a worker waits to try again an audit that could not run.
AUDIT_RETRY = timedelta(minutes=5)


class AuditSchedule:
    """The audit, run by a round when `interval` has passed since the last stored run.

    The last run is read from the database, so a restarted worker does not audit at
    once again, and several workers audit about once per interval between them (two
    that decide at the same instant both run it; each stores its own result).
    """

    def __init__(self, book: Ledger, interval: timedelta, run_audit: Callable[[], AuditReport]) -> None:
        self.book = book
        self.interval = interval
        self.run_audit = run_audit
        # After an audit that could not run (the database or the provider's books did
        # not answer): when this worker tries again, so that it does not read the whole
        # journal every round meanwhile. Nothing is stored: /metrics keeps the last
        # result, whose age then shows the audit is late.
        self.retry_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self.retry_at is not None and now < self.retry_at:
            return False
        last = self.book.transaction(lambda uow: uow.orders.last_audit_run(), read_only=True)
        return last is None or now - last.finished_at >= self.interval

    def __call__(self) -> str:
        started = self.book.clock.now()
        if not self.due(started):
            return ""
        self.retry_at = started + min(self.interval, AUDIT_RETRY)
        report = self.run_audit()  # raising: logged by the round, tried again at retry_at
        self.retry_at = None
        failed = [check.name for check in report.checks if not check.ok]
        problems = sum(len(check.problems) + check.omitted for check in report.checks)
        finished = self.book.clock.now()
        self.book.transaction(
            lambda uow: uow.orders.record_audit_run(
                started_at=started, finished_at=finished, ok=report.ok, failed_checks=failed, problems=problems
            )
        )
        fields = {"audit_ok": report.ok, "failed_checks": failed, "problems": problems}
        if report.ok:
            log.info("audit: all invariants hold", extra=fields)
            return "audit: all invariants hold"
        log.error("audit: %d problems in %s", problems, ", ".join(failed), extra=fields)
        return f"audit: {problems} problems in {', '.join(failed)}"


def run_round(
    escrow: Escrow,
    *,
    name: str,
    started_at: datetime,
    housekeeping: Callable[[], str] | None = None,
    audit: AuditSchedule | None = None,
) -> str:
    """One round: timers, expired charges, due orders, housekeeping, the audit when it
    is due, heartbeat; what it did, in words."""
    report = escrow.orders.tick()
    parts = [report.summary()]
    for step, what in ((housekeeping, "housekeeping"), (audit, "audit")):
        if step is None:
            continue
        try:
            parts.append(step())
        except Exception:
            log.exception("worker %s failed", what)
    summary = "; ".join(p for p in parts if p)
    escrow.book.transaction(lambda uow: uow.orders.heartbeat(name, started_at=started_at, summary=summary))
    return summary


def run_worker(
    escrow: Escrow,
    *,
    interval: float,
    rounds: int | None = None,
    housekeeping: Callable[[], str] | None = None,
    audit: AuditSchedule | None = None,
    name: str | None = None,
) -> int:
    """Run rounds every `interval` seconds (`rounds` of them, or until interrupted)."""
    worker = name or f"worker:{dispatcher_name()}"
    set_actor(WORKER)  # what the rounds book and send is the worker's
    started = escrow.book.clock.now()
    done = 0
    while rounds is None or done < rounds:
        try:
            log.info(
                "worker round: %s",
                run_round(escrow, name=worker, started_at=started, housekeeping=housekeeping, audit=audit),
            )
        except Exception:
            log.exception("worker round failed")
        done += 1
        if rounds is None or done < rounds:
            time.sleep(interval)
    return done
