"""`ledger worker`: the dispatcher and the timers, continuously, for a deployment.

Each round fires the due timers, cancels charges the payer left incomplete for
24 hours, sends every due payment order, prunes expired Idempotency-Keys, and
records a heartbeat (`/health/ready` and `ledger orders list` show it). Several
workers may run at once: timers are claimed row by row and orders under a lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from ledger.escrow.dispatcher import dispatcher_name
from ledger.escrow.service import Escrow

log = logging.getLogger("ledger.worker")


def run_round(escrow: Escrow, *, name: str, started_at: datetime, housekeeping: Callable[[], str] | None = None) -> str:
    """One round: timers, expired charges, due orders, housekeeping, heartbeat; what it did, in words."""
    report = escrow.orders.tick()
    parts = [report.summary()]
    if housekeeping is not None:
        try:
            parts.append(housekeeping())
        except Exception:
            log.exception("worker housekeeping failed")
    summary = "; ".join(p for p in parts if p)
    escrow.book.transaction(lambda uow: uow.orders.heartbeat(name, started_at=started_at, summary=summary))
    return summary


def run_worker(
    escrow: Escrow,
    *,
    interval: float,
    rounds: int | None = None,
    housekeeping: Callable[[], str] | None = None,
    name: str | None = None,
) -> int:
    """Run rounds every `interval` seconds (`rounds` of them, or until interrupted)."""
    worker = name or f"worker:{dispatcher_name()}"
    started = escrow.book.clock.now()
    done = 0
    while rounds is None or done < rounds:
        try:
            log.info("worker round: %s", run_round(escrow, name=worker, started_at=started, housekeeping=housekeeping))
        except Exception:
            log.exception("worker round failed")
        done += 1
        if rounds is None or done < rounds:
            time.sleep(interval)
    return done
