"""The `ledger` command: migrations, audits and reads for operators and finance.

Every command but `ledger db ...` refuses an unmigrated database. Errors print one
line on stderr and exit 2; `ledger audit` exits 1 when an invariant is violated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from ledger import actors, demo
from ledger.api.app import create_app
from ledger.api.idempotency import prune_idempotency_keys
from ledger.api.keys import create_key, list_keys, revoke_key
from ledger.bootstrap import Services, build_services
from ledger.clock import FixedClock, format_period, parse_instant
from ledger.config import Settings, load_settings, parse_duration
from ledger.db.engine import backend_name, current_revision, head_revision, make_engine, upgrade
from ledger.errors import LedgerError
from ledger.escrow.operations import list_orders, resolve_order, retry_order
from ledger.escrow.services.transactions import require_gateway
from ledger.fees.rule import FeeBreakdown
from ledger.invoices.render import render_document, render_statement
from ledger.invoices.statements import csv_chunks
from ledger.journal import Entry
from ledger.money import format_amount, normalize_currency, to_minor
from ledger.observability import configure_logging, prepare_multiprocess_metrics, uvicorn_log_config
from ledger.progress import Progress
from ledger.service import Ledger
from ledger.simulation import START, simulate
from ledger.worker import AuditSchedule, run_worker

EXIT_OK, EXIT_AUDIT_FAILED, EXIT_ERROR = 0, 1, 2


class UsageError(LedgerError):
    """The command line is malformed."""

    code = "usage"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_time(text: str) -> datetime:
    """A date (`2026-01-01`: 00:00 UTC that day) or ISO 8601 with an explicit offset
    (`2026-01-01T09:30:00Z`); a time without an offset is ambiguous and refused."""
    try:
        return parse_instant(text)
    except ValueError as refused:
        raise UsageError(str(refused).removeprefix("time ")) from None


def parse_workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise UsageError(f"--workers must be a whole number of processes, at least 1, not {text!r}")
    return workers


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity, which a container may narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover


def parse_duration_argument(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise UsageError(str(error)) from None


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "idempotency_key": entry.idempotency_key,
        "kind": entry.kind,
        "effective_at": entry.effective_at.isoformat(),
        "recorded_at": entry.recorded_at.isoformat(),
        "reverses_entry_id": entry.reverses_entry_id,
        "actor": entry.actor,
        "refs": dict(entry.refs),
        "metadata": dict(entry.metadata),
        "postings": [
            {
                "account": p.account,
                "side": p.side.value,
                "amount": format_amount(p.amount, p.currency),
                "currency": p.currency,
            }
            for p in entry.postings
        ],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ledger", description="The marketplace's payments, escrow and fee ledger.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    db = commands.add_parser("db", help="database migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    db_commands.add_parser("upgrade", help="apply all migrations to LEDGER_DATABASE_URL")
    db_commands.add_parser("current", help="show the database's migration revision")

    audit = commands.add_parser("audit", help="check every ledger invariant; exit 1 if one is violated")
    audit.add_argument("--json", action="store_true", help="print the machine-readable report")

    balance = commands.add_parser("balance", help="an account's balance (normal side, major units)")
    balance.add_argument("account")
    balance.add_argument("currency", nargs="?", help="optional when the account is held in one currency")
    balance.add_argument("--as-of", type=parse_time, help="only entries effective before this time or date")

    fee = commands.add_parser("fees", help="the service fee: schedules and quotes")
    fee_commands = fee.add_subparsers(dest="fees_command", required=True, parser_class=_Parser)
    fee_commands.add_parser("schedules", help="list the schedules put in force, oldest first")
    activate = fee_commands.add_parser("activate", help="put a shipped schedule (classic, flat-10) in force")
    activate.add_argument("name")
    activate.add_argument(
        "--from",
        dest="effective_from",
        type=parse_time,
        required=True,
        help="a future time, 5 minutes from now at least",
    )
    quote = fee_commands.add_parser(
        "quote", help="preview the fee of a payment (charges nothing): for a pair, or from a lifetime"
    )
    quote.add_argument("--amount", required=True, help='decimal major units, e.g. "1000.00"')
    quote.add_argument("--currency", required=True)
    quote.add_argument("--lifetime", help="what the freelancer has billed the client so far (default: the pair's)")
    quote.add_argument("--freelancer")
    quote.add_argument("--client")
    quote.add_argument("--at", type=parse_time, help="price under the schedule in force then (default: now)")
    quote.add_argument("--json", action="store_true", help="print the quote as JSON, amounts as decimal strings")

    tick = commands.add_parser("tick", help="fire due timers: auto-releases, refund requests, security periods")
    tick.add_argument("--now", type=parse_time, help="ISO 8601 with an offset (default: now)")

    parties = commands.add_parser("parties", help="party records printed on invoices")
    party_commands = parties.add_subparsers(dest="parties_command", required=True, parser_class=_Parser)
    party_set = party_commands.add_parser("set", help="create or update a party")
    party_set.add_argument("party_id")
    party_set.add_argument("--name", dest="display_name")
    for flag in ("legal-name", "address", "country", "tax-id", "provider-id"):
        party_set.add_argument(f"--{flag}", dest=flag.replace("-", "_"))
    party_commands.add_parser("show", help="print a party as JSON").add_argument("party_id")

    invoices = commands.add_parser("invoices", help="issued invoices and credit notes")
    invoice_commands = invoices.add_subparsers(dest="invoices_command", required=True, parser_class=_Parser)
    invoice_list = invoice_commands.add_parser("list", help="newest first")
    invoice_list.add_argument("--party")
    invoice_list.add_argument("--limit", type=int, default=50)
    invoice_pdf = invoice_commands.add_parser("pdf", help="write a document's PDF")
    invoice_pdf.add_argument("document", help="number (INV-2026-000001) or id")
    invoice_pdf.add_argument("-o", "--output", required=True)

    statement = commands.add_parser("statement", help="an account's or a party's statement over [from, to)")
    statement.add_argument("subject", help="an account code, or a party id with --role")
    statement.add_argument("currency", nargs="?", help="optional for an account held in one currency")
    statement.add_argument("--role", choices=["freelancer", "client"], help="a party statement")
    statement.add_argument("--from", dest="period_from", type=parse_time, required=True)
    statement.add_argument("--to", dest="period_to", type=parse_time, required=True)
    statement.add_argument("--pdf", help="write a PDF here instead of CSV on stdout")

    export = commands.add_parser("export", help="the journal in another bookkeeping format")
    export_commands = export.add_subparsers(dest="export_command", required=True, parser_class=_Parser)
    beancount_parser = export_commands.add_parser(
        "beancount", help="the journal over [from, to) as a Beancount file (bean-check accepts it)"
    )
    beancount_parser.add_argument("--from", dest="period_from", type=parse_time, help="opening balances as of it")
    beancount_parser.add_argument("--to", dest="period_to", type=parse_time, help="balances asserted as of it")
    beancount_parser.add_argument("-o", "--output", required=True, help="the file to write")

    report = commands.add_parser("report", help="finance reports")
    report_commands = report.add_subparsers(dest="report_command", required=True, parser_class=_Parser)
    report_commands.add_parser("trial-balance").add_argument(
        "--as-of", type=parse_time, help="entries effective before this time or date (default: now)"
    )
    fees_report = report_commands.add_parser("fees", help="fee revenue by client")
    fees_report.add_argument("--from", dest="period_from", type=parse_time, required=True)
    fees_report.add_argument("--to", dest="period_to", type=parse_time, required=True)

    keys = commands.add_parser("keys", help="API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    key_commands.add_parser("create", help="print a new key (shown only once)").add_argument(
        "--role", required=True, choices=["marketplace", "finance", "auditor", "admin"]
    )
    key_commands.add_parser("list", help="ids, roles and creation times")
    key_commands.add_parser("revoke").add_argument("key_id")

    idempotency = commands.add_parser("idempotency", help="the API's recorded Idempotency-Keys")
    idempotency_commands = idempotency.add_subparsers(dest="idempotency_command", required=True, parser_class=_Parser)
    prune = idempotency_commands.add_parser(
        "prune", help="remove finished keys and abandoned claims older than the retention"
    )
    prune.add_argument(
        "--older-than",
        type=parse_duration_argument,
        help="the retention: 7d, 24h, 90m, 30s (default: LEDGER_IDEMPOTENCY_RETENTION, 7d)",
    )
    prune.add_argument("--now", type=parse_time, help="ISO 8601 with an offset (default: now)")

    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=parse_workers,
        help="server processes (default: one per CPU core on PostgreSQL; SQLite allows only 1)",
    )

    demo = commands.add_parser("demo", help="fill an empty database with a demo marketplace")
    demo.add_argument("--if-empty", action="store_true", help="do nothing (exit 0) if the database has data")

    reconcile = commands.add_parser("reconcile", help="the payment provider's objects against the ledger")
    reconcile.add_argument("--from", dest="period_from", type=parse_time, required=True)
    reconcile.add_argument("--to", dest="period_to", type=parse_time, required=True)

    orders = commands.add_parser("orders", help="payment orders: every call to the payment provider")
    order_commands = orders.add_subparsers(dest="orders_command", required=True, parser_class=_Parser)
    order_list = order_commands.add_parser("list", help="orders with their state and age, and the workers' heartbeats")
    order_list.add_argument(
        "--state",
        help="pending, sent, requires_action, succeeded, failed, cancelled, or stuck (sent, unacknowledged)",
    )
    order_list.add_argument("--json", action="store_true")
    order_commands.add_parser(
        "retry", help="send a refund or payout order again (the provider is searched first)"
    ).add_argument("order_id")
    resolve = order_commands.add_parser("resolve", help="settle an order by hand (recorded and audited)")
    resolve.add_argument("order_id")
    resolve.add_argument("--as", dest="outcome", required=True, choices=("succeeded", "failed"))
    resolve.add_argument("--reference", help="the provider's id of the object (required with --as succeeded)")
    resolve.add_argument("--reason", help="why it failed (required with --as failed)")

    worker = commands.add_parser("worker", help="run the dispatcher and the timers continuously")
    worker.add_argument("--interval", type=float, default=5.0, help="seconds between rounds (default 5)")
    worker.add_argument("--rounds", type=int, help="stop after this many rounds (default: run until stopped)")

    simulate = commands.add_parser(
        "simulate",
        help="run a seeded marketplace on an empty database through the service layer, then audit it",
    )
    simulate.add_argument(
        "--seed", type=int, default=1, help="the same seed gives the same run and summary (default 1)"
    )
    simulate.add_argument("--clients", type=int, default=5, help="how many clients (default 5)")
    simulate.add_argument("--freelancers", type=int, default=5, help="how many freelancers (default 5)")
    simulate.add_argument("--months", type=int, default=3, help="months of simulated time (default 3)")
    simulate.add_argument("--json", action="store_true", help="print the summary as JSON")

    journal = commands.add_parser("journal", help="print journal entries as JSON lines, in order")
    journal.add_argument("--after", type=int, help="start after this entry id")
    journal.add_argument("--limit", type=int, default=100)
    return parser


#: Who a command acts as (`ledger.actors`); every other command is the operator's, `cli`.
COMMAND_ACTORS = {"worker": actors.WORKER, "demo": actors.DEMO, "simulate": actors.SIMULATE}


def run(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    with actors.acting_as(COMMAND_ACTORS.get(args.command, actors.CLI)):
        return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.command == "db":
        engine = make_engine(settings.database_url)
        try:
            if args.db_command == "upgrade":
                upgrade(engine)
                print(f"database at revision {current_revision(engine)}")
            else:
                current, head = current_revision(engine), head_revision()
                state = "up to date" if current == head else f"behind (newest is {head})"
                print(f"{current or 'empty (no migrations applied)'} - {state}")
        finally:
            engine.dispose()
        return EXIT_OK

    if args.command == "demo":
        return run_demo(settings, args)
    if args.command == "simulate":
        return run_simulate(settings, args)
    services = build_services(settings)
    book = services.book
    try:
        if args.command == "audit":
            with progress_bar("audit: checks") as progress:
                report = book.audit(provider=services.provider_books, progress=progress)
            print(report.to_json() if args.json else report.summary())
            return EXIT_OK if report.ok else EXIT_AUDIT_FAILED
        if args.command == "balance":
            currency = book.currency_of(args.account, args.currency)
            amount = book.balance(args.account, currency, as_of=args.as_of)
            print(f"{format_amount(amount, currency)} {currency}")
            return EXIT_OK
        if args.command == "tick":
            escrow = services.escrow
            with progress_bar("tick: timers") as progress:
                summary = escrow.orders.tick(args.now, progress).summary()
            print(summary)
            if escrow.gateway is None:
                waiting = book.transaction(lambda uow: len(uow.orders.open_orders()), read_only=True)
                if waiting:
                    print(f"{waiting} payment orders wait for the payment provider (LEDGER_GATEWAY)")
            return EXIT_OK
        if args.command == "fees":
            return run_fees(book, args)
        if args.command == "reconcile":
            with progress_bar("reconcile: provider objects") as progress:
                lines = services.escrow.orders.reconcile(args.period_from, args.period_to, progress)
            print("status,kind,reference,currency,provider_amount,ledger_amount,entry_id")
            for line in lines:
                amounts = [
                    "" if value is None else format_amount(value, line.currency)
                    for value in (line.provider_amount, line.ledger_amount)
                ]
                print(
                    f"{line.status},{line.kind},{line.reference},{line.currency},{amounts[0]},{amounts[1]},{line.entry_id or ''}"
                )
            return EXIT_OK if all(line.status == "matched" for line in lines) else EXIT_AUDIT_FAILED
        if args.command == "keys":
            return run_keys(book, args)
        if args.command == "idempotency":
            return run_idempotency(services, args)
        if args.command == "orders":
            return run_orders(services, args)
        if args.command == "worker":
            return run_worker_command(services, args)
        if args.command == "serve":
            return run_serve(services, args)
        if args.command in ("parties", "invoices", "statement", "report", "export"):
            return run_finance(services, args)
        if args.command == "journal":
            page = book.journal(after=args.after, limit=args.limit)
            for entry in page.entries:
                print(json.dumps(entry_json(entry), sort_keys=True))
            if page.next_cursor is not None:
                print(f"more: ledger journal --after {page.next_cursor}", file=sys.stderr)
            return EXIT_OK
    finally:
        services.close()
    raise UsageError(f"unknown command {args.command}")  # pragma: no cover


def run_fees(book: Ledger, args: argparse.Namespace) -> int:
    if args.fees_command == "schedules":
        for item in book.fee_schedules():
            print(f"{item.effective_from.isoformat()}  {item.schedule.name}")
        return EXIT_OK
    if args.fees_command == "activate":
        item = book.activate_fee_schedule(args.name, args.effective_from)
        print(f"{item.schedule.name} in force from {item.effective_from.isoformat()}")
        return EXIT_OK
    currency = normalize_currency(args.currency)
    if args.lifetime is not None and (args.freelancer or args.client):
        raise UsageError("give --lifetime or --freelancer and --client, not both")
    if args.lifetime is None and not (args.freelancer and args.client):
        raise UsageError("give --lifetime, or --freelancer and --client")
    breakdown = book.quote_fee(
        amount=to_minor(args.amount, currency),
        currency=currency,
        freelancer_id=args.freelancer,
        client_id=args.client,
        lifetime=None if args.lifetime is None else to_minor(args.lifetime, currency),
        at=args.at,
    )
    quote = fee_json(breakdown)
    if args.json:
        print(json.dumps(quote, indent=2))
        return EXIT_OK
    print(f"schedule {quote['schedule']}: fee {quote['fee']} {currency}, net {quote['net']} {currency}")
    print(f"lifetime billings {quote['lifetime_before']} -> {quote['lifetime_after']} {currency}")
    for tier in quote["tiers"]:
        print(f"  {tier['amount']:>14} at {tier['rate']:<6} fee {tier['fee']}")
    print(f"blended rate {quote['blended_rate']}")
    return EXIT_OK


def run_keys(book: Ledger, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        _, key = book.transaction(lambda uow: create_key(uow, args.role))
        print(key)
    elif args.keys_command == "list":
        for item in book.transaction(list_keys, read_only=True):
            state = f"revoked {item.revoked_at.isoformat()}" if item.revoked_at else "active"
            print(f"{item.id}  {item.role:<11}  {item.created_at.isoformat()}  {state}")
    else:
        book.transaction(lambda uow: revoke_key(uow, args.key_id))
        print(f"revoked {args.key_id}")
    return EXIT_OK


def run_idempotency(services: Services, args: argparse.Namespace) -> int:
    settings = services.settings
    pruned = prune_idempotency_keys(
        services.book,
        args.now,
        retention=args.older_than or settings.idempotency_retention,
        request_timeout_seconds=settings.request_timeout_seconds,
        lease_margin=settings.idempotency_lease_margin,
    )
    print(
        f"removed {pruned.total} idempotency keys last used before {pruned.before.isoformat()}"
        f" ({pruned.finished} finished, {pruned.abandoned} abandoned in progress)"
    )
    return EXIT_OK


def run_orders(services: Services, args: argparse.Namespace) -> int:
    book = services.book
    if args.orders_command == "list":
        listing = list_orders(book, state=args.state)
        beats = book.transaction(lambda uow: uow.orders.heartbeats(), read_only=True)
        if args.json:
            print(
                json.dumps(
                    {
                        "orders": [
                            {
                                "id": o.id,
                                "kind": o.kind.value,
                                "state": o.state.value,
                                "amount": format_amount(o.amount, o.currency),
                                "currency": o.currency,
                                "provider_reference": o.provider_reference,
                                "failure_reason": o.failure_reason,
                                "attempts": o.attempts,
                                "age_seconds": int(o.age(listing.now).total_seconds()),
                                "stuck": o.is_stuck(listing.now),
                            }
                            for o in listing.orders
                        ],
                        "workers": [
                            {"name": name, "beat_at": at.isoformat(), "summary": summary} for name, at, summary in beats
                        ],
                        "more": listing.more,
                    },
                    sort_keys=True,
                )
            )
            return EXIT_OK
        for o in listing.orders:
            age = int(o.age(listing.now).total_seconds())
            stuck = " STUCK" if o.is_stuck(listing.now) else ""
            reason = f"  {o.failure_reason}" if o.failure_reason else ""
            print(
                f"{o.id}  {o.kind.value:<14} {o.state.value:<15} {format_amount(o.amount, o.currency):>12} "
                f"{o.currency}  age {age}s  attempts {o.attempts}{stuck}{reason}"
            )
        if listing.more:
            print(f"(the oldest {len(listing.orders)} only: narrow with --state)")
        if not listing.orders:
            print("no payment orders" + (f" in state {args.state}" if args.state else ""))
        for name, at, summary in beats:
            print(f"worker {name}: last heartbeat {at.isoformat()} ({summary})")
        if not beats:
            print("no worker has reported (run `ledger worker`)")
        return EXIT_OK
    gateway = require_gateway(services.escrow.gateway)
    if args.orders_command == "retry":
        order = retry_order(book, gateway, args.order_id)
    else:
        order = resolve_order(
            book, gateway, args.order_id, outcome=args.outcome, reference=args.reference, reason=args.reason
        )
    print(f"{order.id} {order.state.value}" + (f": {order.failure_reason}" if order.failure_reason else ""))
    return EXIT_OK


def run_worker_command(services: Services, args: argparse.Namespace) -> int:
    if args.interval <= 0 or (args.rounds is not None and args.rounds <= 0):
        raise UsageError("--interval and --rounds must be positive")
    settings = services.settings
    configure_logging(settings)

    def housekeeping() -> str:
        pruned = prune_idempotency_keys(
            services.book,
            retention=settings.idempotency_retention,
            request_timeout_seconds=settings.request_timeout_seconds,
            lease_margin=settings.idempotency_lease_margin,
        )
        return f"{pruned.total} idempotency keys pruned" if pruned.total else ""

    try:
        audit = None
        if settings.audit_interval is not None:
            audit = AuditSchedule(
                services.book, settings.audit_interval, lambda: services.book.audit(provider=services.provider_books)
            )
        run_worker(services.escrow, interval=args.interval, rounds=args.rounds, housekeeping=housekeeping, audit=audit)
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


#: What uvicorn imports in each server process of `ledger serve --workers N` (N > 1).
APP_FACTORY = "ledger.api.app:create_app_from_environment"


def run_serve(services: Services, args: argparse.Namespace) -> int:
    """One process serving the app over `services`, or, with more than one worker, uvicorn's
    supervisor and that many server processes, each building its own services from the
    same environment (`create_app_from_environment`). The services built here have
    checked the settings and the database first, so a bad setup is one line, not N."""
    sqlite = backend_name(services.settings.database_url) == "sqlite"
    workers = args.workers or (1 if sqlite else cpu_cores())
    if sqlite and workers > 1:
        # SQLite has one writer at a time: the other processes would queue on its lock
        # and, past the busy timeout, answer SQLITE_BUSY.
        raise UsageError(f"--workers {workers} needs PostgreSQL: SQLite serves from one process (--workers 1)")
    log_config = uvicorn_log_config(services.settings)
    if workers == 1:
        uvicorn.run(create_app(services), host=args.host, port=args.port, log_config=log_config)
        return EXIT_OK
    services.close()  # the supervisor serves nothing: each worker opens its own
    prepare_multiprocess_metrics(workers)  # before the server processes start: they inherit it
    uvicorn.run(APP_FACTORY, factory=True, workers=workers, host=args.host, port=args.port, log_config=log_config)
    return EXIT_OK


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """The demo books its money at the simulated provider the server will use (its books
    live in the same database), whatever LEDGER_GATEWAY says."""
    # The demo's story starts some days ago on a clock of its own, which moves with
    # it, so that every entry is booked after what it depends on (no later than now).
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=demo.DEMO_DAYS)
    services = build_services(replace(settings, gateway="simulated"), clock=FixedClock(start))
    try:
        if args.if_empty and not demo.is_empty(services.book):
            print("the database already has data: no demo added (create a key with `ledger keys create --role admin`)")
            return EXIT_OK
        key = demo.fill(services)
    finally:
        services.close()
    print("demo marketplace added: 2 clients, 2 freelancers, 2 contracts, 5 milestones, invoices and a payout")
    print(f"admin API key (shown once): {key}")
    print(f"try: curl -s -H 'Authorization: Bearer {key}' http://127.0.0.1:8000/v1/audit")
    return EXIT_OK


def run_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """The simulation moves its own clock from `START` and injects faults at the
    simulated provider, so it builds its services over those two, on the configured
    database (which must be empty)."""
    services = build_services(replace(settings, gateway="simulated"), clock=FixedClock(START))
    try:
        with progress_bar("simulate: days") as progress:
            summary = simulate(
                services,
                seed=args.seed,
                clients=args.clients,
                freelancers=args.freelancers,
                months=args.months,
                progress=progress,
            )
    finally:
        services.close()
    print(json.dumps(summary.to_json(), indent=2) if args.json else "\n".join(summary.lines()))
    return EXIT_OK if summary.audit_ok else EXIT_AUDIT_FAILED


def run_finance(services: Services, args: argparse.Namespace) -> int:
    finance = services.finance
    if args.command == "parties":
        if args.parties_command == "set":
            fields = ("display_name", "legal_name", "address", "country", "tax_id", "provider_id")
            party = finance.set_party(args.party_id, **{f: getattr(args, f) for f in fields})
        else:
            party = finance.party(args.party_id)
        print(json.dumps({k: v for k, v in vars(party).items() if k != "updated_at"}, indent=2))
    elif args.command == "invoices" and args.invoices_command == "list":
        for document in finance.documents(party_id=args.party, limit=args.limit):
            total = format_amount(document.total, document.currency)
            print(
                f"{document.number}  {document.issued_at.date()}  {document.recipient.party_id}  {total} {document.currency}"
            )
    elif args.command == "invoices":
        with open(args.output, "wb") as out:
            out.write(render_document(finance.document(args.document)))
        print(f"wrote {args.output}")
    elif args.command == "statement":
        period = (args.period_from, args.period_to)
        if args.role and not args.currency:
            raise UsageError("a party statement names its currency")
        currency = args.currency if args.role else finance.book.currency_of(args.subject, args.currency)
        args.currency = currency
        print(f"statement of {args.subject} in {currency} over {format_period(*period)}", file=sys.stderr)
        if args.pdf:
            # Built whole, so at most MAX_PDF_LINES lines (StatementTooLong beyond).
            if args.role:
                made = finance.party_statement(args.subject, args.role, args.currency, *period)
            else:
                made = finance.account_statement(args.subject, args.currency, *period)
            with open(args.pdf, "wb") as out:
                out.write(render_statement(made))
            print(f"wrote {args.pdf}")
        else:
            # CSV is written as it is read: a statement of any length.
            if args.role:
                chunks = finance.stream_party_statement(args.subject, args.role, args.currency, *period, csv_chunks)
            else:
                chunks = finance.stream_account_statement(args.subject, args.currency, *period, csv_chunks)
            for chunk in chunks:
                sys.stdout.write(chunk)
    elif args.command == "export":
        partial = f"{args.output}.partial"
        with progress_bar("export: entries") as progress:
            chunks = finance.export_beancount(args.period_from, args.period_to, progress)  # refuses a bad period first
            with open(partial, "w", encoding="utf-8", newline="\n") as out:
                out.writelines(chunks)
        os.replace(partial, args.output)  # a failed export leaves no half-written file
        print(f"wrote {args.output}")
    elif args.report_command == "trial-balance":
        balance = finance.trial_balance(args.as_of)
        print(f"trial balance as of {balance.as_of.isoformat()} (entries effective before it)", file=sys.stderr)
        print("account,type,currency,debit,credit")
        for row in balance.rows:
            amounts = (format_amount(row.debit, row.currency), format_amount(row.credit, row.currency))
            print(f"{row.account},{row.type},{row.currency},{amounts[0]},{amounts[1]}")
        for currency, (debits, credits) in sorted(balance.totals.items()):
            print(f"TOTAL,,{currency},{format_amount(debits, currency)},{format_amount(credits, currency)}")
    else:
        print(f"fee revenue over {format_period(args.period_from, args.period_to)}", file=sys.stderr)
        print("client,currency,billings,fees,refunded,fee_refunds,net")
        for r in finance.fee_revenue(args.period_from, args.period_to):
            cells = [format_amount(v, r.currency) for v in (r.billings, r.fees, r.refunded, r.fee_refunds, r.net)]
            print(",".join([r.client_id, r.currency, *cells]))
    return EXIT_OK


def fee_json(breakdown: FeeBreakdown) -> dict[str, Any]:
    currency = breakdown.currency

    def money(minor: int) -> str:
        return format_amount(minor, currency)

    return {
        "fee": money(breakdown.fee),
        "net": money(breakdown.net),
        "currency": currency,
        "blended_rate": str(breakdown.blended_rate),
        "lifetime_before": money(breakdown.lifetime_before),
        "lifetime_after": money(breakdown.lifetime_after),
        "schedule": breakdown.schedule,
        "tiers": [
            {"amount": money(line.amount), "rate": str(line.rate), "fee": money(line.fee)} for line in breakdown.lines
        ],
    }


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Progress | None]:
    """A bar on stderr while the work runs, when stderr is a terminal; otherwise None,
    and the command stays quiet (scripts, pipes and logs get its output only)."""
    if not sys.stderr.isatty():
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with RichProgress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except LedgerError as error:
        print(f"ledger: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a database that cannot be reached, a broken file...
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"ledger: error: {first_line}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
