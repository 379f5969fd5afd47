"""How long Idempotency-Keys live: the lease of a claim in progress, the retention of a
finished one, and pruning. Plain Python over the unit of work (no web framework), so
that `ledger idempotency prune` and a background worker can call it.

Lifecycle of a key (per API key):

- claimed: the first request with the key records it as in progress and runs. Its
  claim holds the key for a lease of the request timeout plus `LEASE_MARGIN` (30 s,
  `LEDGER_IDEMPOTENCY_LEASE_MARGIN`); a retry meanwhile answers 409 `request-in-progress`.
- finished: the response (a 2xx, or a 4xx refusal) is recorded and replayed to every
  retry with the same body; another body is 409 `idempotency-conflict`. A 5xx is not
  recorded: the key is released and a retry runs again.
- abandoned: a claim that is still in progress after its lease belongs to a server
  that died (or to a request stuck past its timeout; a thread cannot be stopped). A
  retry with the same path and body takes it over and runs the request again; only
  one of several concurrent retries wins (one conditional UPDATE). That is safe
  because every POST's use case binds the request's key to the request's
  fingerprint (`request_keys`) and returns its first result when run again:
  creating a contract or a milestone, funding, the transitions, approvals, refunds,
  payouts, ending and resolving.
  The stale run, if it ever finishes, records nothing: the newer claim owns the key.
- pruned: finished keys last claimed longer ago than the retention
  (`LEDGER_IDEMPOTENCY_RETENTION`, default 7 days) and abandoned claims as old are
  deleted by `prune_idempotency_keys`. A pruned key is simply new again: a retry
  after the retention runs as a new request (Stripe does the same after 24 hours).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ledger.clock import require_utc
from ledger.config import (
    DEFAULT_IDEMPOTENCY_LEASE_MARGIN,
    DEFAULT_IDEMPOTENCY_RETENTION,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
)
from ledger.errors import InvalidRequest
from ledger.service import Ledger

#: Beyond the request timeout: the time a request past its timeout still has to record
#: its response (and clock skew between servers) before a retry may take its key over.
#: A server reads its own from LEDGER_IDEMPOTENCY_LEASE_MARGIN.
LEASE_MARGIN = DEFAULT_IDEMPOTENCY_LEASE_MARGIN


def claim_lease(
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS, margin: timedelta = LEASE_MARGIN
) -> timedelta:
    """How long a claim in progress holds its key against a retry of the same request."""
    return timedelta(seconds=request_timeout_seconds) + margin


@dataclass(frozen=True)
class PrunedKeys:
    """What `prune_idempotency_keys` removed.

    Attributes:
        finished: keys with a recorded response, last claimed before `before`.
        abandoned: claims left in progress, made before `before` and past their lease.
        before: the cutoff, now minus the retention.
    """

    finished: int
    abandoned: int
    before: datetime

    @property
    def total(self) -> int:
        return self.finished + self.abandoned


def prune_idempotency_keys(
    book: Ledger,
    now: datetime | None = None,
    *,
    retention: timedelta = DEFAULT_IDEMPOTENCY_RETENTION,
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    lease_margin: timedelta = LEASE_MARGIN,
) -> PrunedKeys:
    """Delete finished keys and abandoned claims last claimed more than `retention`
    before `now` (default: the ledger's clock). A claim still within its lease is kept
    whatever the retention, so that pruning never lets a request run twice at once."""
    moment = book.clock.now() if now is None else require_utc(now)
    if retention <= timedelta(0):
        raise InvalidRequest("the retention must be positive", field="retention")
    before = moment - retention
    abandoned_before = min(before, moment - claim_lease(request_timeout_seconds, lease_margin))
    finished, abandoned = book.transaction(
        lambda uow: uow.api.prune_requests(finished_before=before, abandoned_before=abandoned_before)
    )
    return PrunedKeys(finished, abandoned, before)
