"""`GET /metrics`: the API's and the ledger's figures in Prometheus's text format.

Two kinds of figures, and no party data in either (label values are route templates,
methods, statuses, order states and worker names only):

- Requests, counted by `ledger.api.request_log` as they are answered:
  `ledger_http_requests_total{method,route,status}` and
  `ledger_http_request_duration_seconds{method,route}`. Under `ledger serve --workers N`
  each process counts its own in prometheus_client's multiprocess directory
  (`PROMETHEUS_MULTIPROC_DIR`, `ledger.observability.prepare_multiprocess_metrics`), and
  whichever process a scrape reaches answers with the sum over all of them.
- The ledger's state, read from the database when scraped (`LedgerCollector`, one
  read-only transaction of a few counts, `ledger.ports.queries.MetricsQueries`), so
  collected once whatever the number of processes: it is registered on the registry
  that answers the scrape, never written to the multiprocess files. A scrape never
  runs the audit: the worker runs it on its schedule and stores the result
  (`ledger.worker`), which is read here.

The route is an ASGI route: it has no roles, so no key is needed (like `/health/*`),
and it is not in the OpenAPI document.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio.to_thread
from litestar import asgi
from litestar.exceptions import MethodNotAllowedException
from litestar.handlers.asgi_handlers import ASGIRouteHandler
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from ledger.escrow.orders import OrderState
from ledger.ports.escrow import AuditRun
from ledger.ports.unit_of_work import UnitOfWork
from ledger.service import Ledger

log = logging.getLogger("ledger.api.metrics")

#: The route label of a request no route matched (a 404 or 405 from the router), so
#: that a scanner's paths do not each become a series.
UNMATCHED = "unmatched"
#: The methods counted by name; any other is counted as `other`.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Workers whose last heartbeat is older than this are not reported.
HEARTBEAT_WINDOW = timedelta(days=1)
#: Up to the request timeout (30 s by default).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class LedgerFigures:
    """What a scrape reads from the database, in one read-only transaction.

    Attributes:
        now: the ledger's clock when it was read.
        oldest_open_order: when the oldest open payment order was written (None: none is open).
        heartbeats: (worker, last beat), most recent first.
        last_audit: the last audit the worker stored (None: none yet).
    """

    now: datetime
    postings: int
    orders_by_state: Mapping[str, int]
    oldest_open_order: datetime | None
    timers_due: int
    heartbeats: list[tuple[str, datetime]]
    last_audit: AuditRun | None


def read_figures(uow: UnitOfWork) -> LedgerFigures:
    now = uow.clock.now()
    return LedgerFigures(
        now=now,
        postings=uow.metrics.posting_count(),
        orders_by_state=uow.metrics.orders_by_state(),
        oldest_open_order=uow.metrics.oldest_open_order_created_at(),
        timers_due=uow.metrics.timers_due(now),
        # A worker gone for a day is dropped, so restarts (each a new name) do not pile up series.
        heartbeats=[(name, at) for name, at, _ in uow.orders.heartbeats() if now - at <= HEARTBEAT_WINDOW],
        last_audit=uow.orders.last_audit_run(),
    )


class LedgerCollector(Collector):
    """The ledger's state, read from the database at each scrape."""

    def __init__(self, book: Ledger) -> None:
        self.book = book

    def describe(self) -> Iterable[Metric]:
        # The names, for the registry's duplicate check, without reading the database.
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        try:
            figures = self.book.transaction(read_figures, read_only=True)
        except Exception as error:
            # The class only: a driver's message may name the database's user or host.
            log.warning("metrics: the database does not answer (%s)", type(error).__name__)
            figures = None
        yield from self._families(figures)

    def _families(self, figures: LedgerFigures | None = None) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "ledger_database_up", "Whether the database answered this scrape's reads (1) or not (0)."
        )
        postings = CounterMetricFamily("ledger_postings", "Postings in the journal (never deleted, so it only rises).")
        orders = GaugeMetricFamily("ledger_payment_orders", "Payment orders by state.", labels=["state"])
        oldest = GaugeMetricFamily(
            "ledger_payment_order_oldest_pending_age_seconds",
            "Age of the oldest payment order still pending, sent or requires_action (0: none).",
        )
        timers = GaugeMetricFamily("ledger_timers_due", "Timers due now and not fired yet.")
        beats = GaugeMetricFamily(
            "ledger_worker_heartbeat_timestamp_seconds", "Each worker's last heartbeat (Unix time).", labels=["worker"]
        )
        audit_ok = GaugeMetricFamily("ledger_audit_last_ok", "Whether the last scheduled audit passed (1) or not (0).")
        audit_at = GaugeMetricFamily(
            "ledger_audit_last_finished_timestamp_seconds", "When the last scheduled audit finished (Unix time)."
        )
        audit_problems = GaugeMetricFamily("ledger_audit_last_problems", "Problems the last scheduled audit found.")
        families: list[Metric] = [up, postings, orders, oldest, timers, beats, audit_ok, audit_at, audit_problems]
        if figures is None:  # describe(), or the database did not answer: the other families stay empty
            up.add_metric([], 0)
            yield from families
            return
        up.add_metric([], 1)
        postings.add_metric([], figures.postings)
        for state in OrderState:
            orders.add_metric([state.value], figures.orders_by_state.get(state.value, 0))
        age = 0.0 if figures.oldest_open_order is None else (figures.now - figures.oldest_open_order).total_seconds()
        oldest.add_metric([], max(age, 0.0))
        timers.add_metric([], figures.timers_due)
        for name, at in figures.heartbeats:
            beats.add_metric([name], at.timestamp())
        if figures.last_audit is not None:  # absent until the worker has run one
            audit_ok.add_metric([], 1 if figures.last_audit.ok else 0)
            audit_at.add_metric([], figures.last_audit.finished_at.timestamp())
            audit_problems.add_metric([], figures.last_audit.problems)
        yield from families


class ApiMetrics:
    """The registry `/metrics` answers from, the request metrics and the ledger's collector.

    Attributes:
        registry: what a scrape collects: in one process, the request metrics and the
            ledger's collector; with `multiprocess_dir`, the sum of every process's
            files (`MultiProcessCollector`) and the ledger's collector.
        multiprocess_dir: PROMETHEUS_MULTIPROC_DIR, or None in one process.
    """

    def __init__(self, book: Ledger, *, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        if multiprocess_dir:
            MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        # With the directory, prometheus_client writes each value to this process's file
        # (it chose so when imported, from the environment): the metrics are not
        # registered, or a scrape would count this process twice.
        counted_in = None if multiprocess_dir else self.registry
        self.requests = Counter(
            "ledger_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=counted_in,
        )
        self.durations = Histogram(
            "ledger_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            registry=counted_in,
            buckets=DURATION_BUCKETS,
        )
        self.registry.register(LedgerCollector(book))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.durations.labels(method, route).observe(seconds)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition the scraper asked for (`Accept`: OpenMetrics or the text format)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def close(self) -> None:
        """When this server process stops: prometheus_client's bookkeeping of a dead
        process (its live gauges' files go; its counts stay in the sum)."""
        if self.multiprocess_dir:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


def metrics_route(metrics: ApiMetrics) -> ASGIRouteHandler:
    """`GET /metrics` over `metrics`."""

    @asgi("/metrics", include_in_schema=False, copy_scope=False)
    async def serve_metrics(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") not in ("GET", "HEAD"):
            raise MethodNotAllowedException(headers={"Allow": "GET, HEAD"})
        accept = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"accept"), None)
        # In a thread: the ledger's collector reads the database.
        body, content_type = await anyio.to_thread.run_sync(metrics.render, accept)
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        }
        await send(start)
        finish: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": b"" if scope.get("method") == "HEAD" else body,
            "more_body": False,
        }
        await send(finish)

    return serve_metrics
