"""The `ledger` command: migrations, audits and reads for operators and finance.

Every command but `ledger db ...` refuses an unmigrated database. Errors print one
line on stderr and exit 2; `ledger audit` exits 1 when an invariant is violated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ledger.config import load_settings
from ledger.db.engine import current_revision, head_revision, make_engine, upgrade
from ledger.errors import LedgerError
from ledger.fees.rule import FeeBreakdown
from ledger.journal import Entry
from ledger.money import format_amount, normalize_currency, to_minor
from ledger.service import Ledger

EXIT_OK, EXIT_AUDIT_FAILED, EXIT_ERROR = 0, 1, 2


class UsageError(LedgerError):
    """The command line is malformed."""

    code = "usage"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parse_time(text: str) -> datetime:
    """ISO 8601 with an explicit offset (`2024-05-01T00:00:00Z`); a bare time is ambiguous."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise UsageError(f"{text!r} has no UTC offset; add Z or +00:00")
    return moment


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "idempotency_key": entry.idempotency_key,
        "kind": entry.kind,
        "effective_at": entry.effective_at.isoformat(),
        "recorded_at": entry.recorded_at.isoformat(),
        "reverses_entry_id": entry.reverses_entry_id,
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
    balance.add_argument("currency")
    balance.add_argument("--as-of", type=parse_time, help="only entries effective before this time")

    fee = commands.add_parser("fees", help="the service fee: schedules and quotes")
    fee_commands = fee.add_subparsers(dest="fees_command", required=True, parser_class=_Parser)
    fee_commands.add_parser("schedules", help="list the schedules put in force, oldest first")
    activate = fee_commands.add_parser("activate", help="put a shipped schedule (classic, flat-10) in force")
    activate.add_argument("name")
    activate.add_argument("--from", dest="effective_from", type=parse_time, required=True, help="a future time")
    quote = fee_commands.add_parser("quote", help="preview the fee of a payment (charges nothing)")
    quote.add_argument("--freelancer", required=True)
    quote.add_argument("--client", required=True)
    quote.add_argument("--amount", required=True, help='decimal major units, e.g. "1000.00"')
    quote.add_argument("--currency", required=True)
    quote.add_argument("--at", type=parse_time, help="price under the schedule in force then (default: now)")

    tick = commands.add_parser("tick", help="fire due timers: auto-releases, refund requests, security periods")
    tick.add_argument("--now", type=parse_time, help="ISO 8601 with an offset (default: now)")

    journal = commands.add_parser("journal", help="print journal entries as JSON lines, in order")
    journal.add_argument("--after", type=int, help="start after this entry id")
    journal.add_argument("--limit", type=int, default=100)
    return parser


def run(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    url = load_settings().database_url
    if args.command == "db":
        engine = make_engine(url)
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

    book = Ledger.connect(url)
    try:
        if args.command == "audit":
            report = book.audit()
            print(report.to_json() if args.json else report.summary())
            return EXIT_OK if report.ok else EXIT_AUDIT_FAILED
        if args.command == "balance":
            amount = book.balance(args.account, args.currency, as_of=args.as_of)
            print(f"{format_amount(amount, args.currency.upper())} {args.currency.upper()}")
            return EXIT_OK
        if args.command == "tick":
            from ledger.escrow.timers import tick

            print(tick(book, args.now).summary())
            return EXIT_OK
        if args.command == "fees":
            return run_fees(book, args)
        if args.command == "journal":
            page = book.journal(after=args.after, limit=args.limit)
            for entry in page.entries:
                print(json.dumps(entry_json(entry), sort_keys=True))
            if page.next_cursor is not None:
                print(f"more: ledger journal --after {page.next_cursor}", file=sys.stderr)
            return EXIT_OK
    finally:
        book.close()
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
    breakdown = book.quote_fee(
        freelancer_id=args.freelancer,
        client_id=args.client,
        amount=to_minor(args.amount, currency),
        currency=currency,
        at=args.at,
    )
    print(json.dumps(fee_json(breakdown), indent=2))
    return EXIT_OK


def fee_json(breakdown: FeeBreakdown) -> dict[str, Any]:
    currency = breakdown.currency

    def money(minor: int) -> str:
        return format_amount(minor, currency)

    return {
        "schedule": breakdown.schedule,
        "currency": currency,
        "amount": money(breakdown.amount),
        "fee": money(breakdown.fee),
        "net": money(breakdown.net),
        "blended_rate": str(breakdown.blended_rate),
        "lifetime_before": money(breakdown.lifetime_before),
        "lifetime_after": money(breakdown.lifetime_after),
        "lines": [
            {"amount": money(line.amount), "rate": str(line.rate), "fee": money(line.fee)} for line in breakdown.lines
        ],
    }


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
