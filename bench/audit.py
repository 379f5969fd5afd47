"""How long `ledger audit` takes, and how much memory it needs, on a large journal.

    .venv/bin/python -m bench.audit                      # 1,000,000 entries on PostgreSQL
    .venv/bin/python -m bench.audit --entries 100000     # a quicker run
    .venv/bin/python -m bench.audit --sqlite             # the same on a SQLite file

It creates a scratch PostgreSQL database (or a temporary SQLite file), migrates it,
runs a few thousand milestones through the escrow services (fundings, releases with
their fee events and invoices, refunds, refunds after release, processing fees at the
simulated provider), posts the bulk of the journal with `Ledger.post_batch`, then runs
the real `ledger audit` command on it and prints its wall time, its peak resident
memory and its result against the aims. It drops the database at the end, also on an
error or Ctrl-C. It asserts nothing; see bench/README.md.

Environment: LEDGER_BENCH_POSTGRES_URL, an admin URL of the PostgreSQL server
(default postgresql://postgres@127.0.0.1:5432/postgres); the role must be allowed
to create databases.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from sqlalchemy import create_engine, func, select

from bench.http import ledger_command
from bench.posting import Postgres, cpu_cores, cpu_model, gib, load_average, meminfo_kib
from ledger.accounts import AccountSpec, AccountType
from ledger.audit import AuditReport, Check, run_checks
from ledger.bookkeeping import open_account
from ledger.bootstrap import Services, connect, marketplace_checks
from ledger.config import normalize_database_url
from ledger.db.provider_books import DatabaseBooks
from ledger.db.schema import entries
from ledger.gateway.books import provider_books_of
from ledger.gateway.simulated import SimulatedGateway
from ledger.journal import EntryRequest, Posting, credit, debit
from ledger.ports.unit_of_work import UnitOfWork
from ledger.service import Ledger

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 1_000  # entries per post_batch call: one transaction each
CURRENCIES = ("USD", "EUR")
HOT_ACCOUNT = "revenue:bench:hot"
HOT_SLOTS = 16
#: The simulated provider withholds 2.9% + 0.30 of each charge, so `psp.fee` entries exist.
PSP_FEE_BASIS_POINTS = 290
PSP_FEE_FIXED = 30
LABEL_WIDTH = 34

# The aims the figures are read against (never asserted; see README.md).
AIM_SECONDS = 60.0
AIM_RSS_MIB = 300.0
AIM_ENTRIES = 1_000_000


class BenchError(Exception):
    """The benchmark could not set itself up (not a figure: those are printed)."""


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def line(label: str, value: str) -> None:
    print(f"  {label:<{LABEL_WIDTH}} {value}", flush=True)


# --- building the journal ------------------------------------------------------------------


@dataclass
class Built:
    """What the build wrote, for the printout."""

    entries: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


def run_escrow(services: Services, milestones: int, pairs: int, rng: random.Random) -> int:
    """Milestones through the escrow services, as the marketplace would drive them:
    funded, then released (most), refunded by the freelancer ending the contract (every
    tenth), or released and partly refunded after release (every twentieth)."""
    escrow = services.escrow
    contracts: dict[int, str] = {}
    done = 0
    for i in range(milestones):
        pair = i % pairs
        client, freelancer = f"cl_{pair}", f"fr_{pair}"
        currency = CURRENCIES[pair % len(CURRENCIES)]
        amount = rng.randrange(50_00, 2_000_00)
        if i % 10 == 9:  # its own contract, ended by the freelancer: the escrow is refunded
            contract = escrow.contracts.open_contract(
                client_id=client, freelancer_id=freelancer, currency=currency, title=f"bench {i}"
            ).id
        else:
            if pair not in contracts:
                contracts[pair] = escrow.contracts.open_contract(
                    client_id=client, freelancer_id=freelancer, currency=currency, title=f"bench pair {pair}"
                ).id
            contract = contracts[pair]
        milestone = escrow.contracts.add_milestone(contract, title=f"milestone {i}", amount=amount)
        escrow.funding.fund(milestone.id)
        if i % 10 == 9:
            escrow.contracts.end_contract(contract, ended_by="freelancer")
        else:
            [payment] = escrow.approvals.approve(milestone.id)
            if i % 20 == 4:
                escrow.refunds.refund_payment(payment.id, amount // 4)
        done += 1
    return done


@dataclass
class Chart:
    """The bench's own accounts: assets without floors, wallets with a floor of 0, one hot revenue account."""

    assets: dict[str, list[str]]
    wallets: dict[str, list[str]]


def open_chart(book: Ledger, accounts: int) -> Chart:
    assets: dict[str, list[str]] = {}
    wallets: dict[str, list[str]] = {}
    specs: list[AccountSpec] = []
    for currency in CURRENCIES:
        assets[currency] = [f"assets:bench:{n}" for n in range(accounts)]
        wallets[currency] = [f"liabilities:bench:wallet:{n}" for n in range(max(1, accounts // 10))]
        specs += [AccountSpec(code=code, type=AccountType.ASSET, currency=currency) for code in assets[currency]]
        specs += [
            AccountSpec(code=code, type=AccountType.LIABILITY, currency=currency, floor=0) for code in wallets[currency]
        ]
        specs.append(AccountSpec(code=HOT_ACCOUNT, type=AccountType.REVENUE, currency=currency, slots=HOT_SLOTS))
    # One transaction for the whole chart: opening thousands of accounts one commit each
    # would take longer than posting the journal.
    book.transaction(lambda uow: [open_account(uow, spec) for spec in specs])
    return Chart(assets, wallets)


def journal_requests(
    count: int, chart: Chart, run_id: str, rng: random.Random, start: datetime
) -> Iterator[EntryRequest]:
    """`count` entries: mostly two-leg transfers between asset accounts, some with a
    third leg to the hot revenue account (a fee), some topping up or spending a wallet
    (an account with a floor, never taken below it), in two currencies, spread over a
    year of effective times in journal order."""
    held: dict[tuple[str, str], int] = {}
    step = timedelta(days=365) / max(count, 1)
    for n in range(count):
        currency = CURRENCIES[n % len(CURRENCIES)]
        assets = chart.assets[currency]
        amount = rng.randrange(1_00, 5_000_00)
        source, target = rng.sample(assets, 2)
        legs: tuple[Posting, ...]
        roll = rng.random()
        if roll < 0.80:
            kind, legs = "bench.transfer", (debit(target, amount, currency), credit(source, amount, currency))
        elif roll < 0.90:
            fee = max(1, amount // 50)
            kind = "bench.transfer_with_fee"
            legs = (
                debit(target, amount, currency),
                credit(source, amount - fee, currency),
                credit(HOT_ACCOUNT, fee, currency),
            )
        else:
            wallet = rng.choice(chart.wallets[currency])
            balance = held.get((wallet, currency), 0)
            if roll < 0.95 or balance < 2:
                kind, legs = "bench.top_up", (debit(source, amount, currency), credit(wallet, amount, currency))
                held[(wallet, currency)] = balance + amount
            else:
                spent = rng.randrange(1, balance)
                kind, legs = "bench.spend", (debit(wallet, spent, currency), credit(target, spent, currency))
                held[(wallet, currency)] = balance - spent
        yield EntryRequest(
            idempotency_key=f"bench-{run_id}-{n}",
            kind=kind,
            postings=legs,
            effective_at=start + step * n,
            refs={"bench": run_id, "transfer": str(n)},
        )


def build_journal(book: Ledger, count: int, chart: Chart, run_id: str, reversals: int, rng: random.Random) -> Built:
    """Post `count` entries with `post_batch`, `BATCH` at a time, then reverse `reversals`
    transfers (one `Ledger.reverse` each); prints the rate as it goes."""
    start_at = datetime.now(UTC) - timedelta(days=366)
    requests = journal_requests(count, chart, run_id, rng, start_at)
    posted = 0
    transfer_ids: list[int] = []
    started = last_print = time.perf_counter()
    while posted < count:
        batch = [next(requests) for _ in range(min(BATCH, count - posted))]
        entries = book.post_batch(batch)
        posted += len(batch)
        if len(transfer_ids) < reversals:
            transfer_ids.extend(e.id for e in entries[:2] if e.kind == "bench.transfer")
        now = time.perf_counter()
        if now - last_print >= 10 or posted == count:
            last_print = now
            rate = posted / (now - started)
            line("posted", f"{posted:>10,} of {count:,}  ({rate:,.0f} entries/s)")
    built = Built(posted, time.perf_counter() - started)
    for n, entry_id in enumerate(transfer_ids[:reversals]):
        book.reverse(entry_id, idempotency_key=f"bench-{run_id}-reversal-{n}")
    return built


# --- the audit -------------------------------------------------------------------------------


@dataclass
class AuditRun:
    seconds: float
    peak_rss_kib: int
    exit_code: int
    report: dict[str, Any] | None
    output: str


def run_audit(env: dict[str, str]) -> AuditRun:
    """`ledger audit --json` as a subprocess; its wall time and its own peak RSS (wait4's rusage)."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        process = subprocess.Popen([ledger_command(), "audit", "--json"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    try:
        report = json.loads(text)
    except ValueError:
        report = None
    return AuditRun(seconds, int(usage.ru_maxrss), process.returncode, report, text)


def print_audit(run: AuditRun, entries: int) -> None:
    mib = run.peak_rss_kib / 1024
    line("wall time", f"{run.seconds:.1f} s")
    line("peak RSS", f"{mib:.0f} MiB")
    if run.report is None:
        line("result", f"exit {run.exit_code}, no JSON report:")
        print(run.output[-3000:])
        return
    checks = run.report.get("checks", [])
    failed = [c for c in checks if isinstance(c, dict) and not c.get("ok")]
    line("result", "ok: all invariants hold" if run.report.get("ok") else f"FAILED ({len(failed)} checks)")
    for check in failed:
        problems = check.get("problems", [])
        line("", f"FAIL {check.get('name')}: {problems[:3]}")
    scale = "" if entries >= AIM_ENTRIES else f" (aims are for {AIM_ENTRIES:,} entries; this run has {entries:,})"
    for label, value, aim, unit in (
        ("aim: wall time", run.seconds, AIM_SECONDS, "s"),
        ("aim: peak RSS", mib, AIM_RSS_MIB, "MiB"),
    ):
        verdict = "within" if value <= aim else "ABOVE"
        line(label, f"<= {aim:g} {unit}: {value:,.1f} {unit}, {verdict}{scale}")


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=AIM_ENTRIES, help="entries posted with post_batch")
    parser.add_argument("--milestones", type=int, default=1_000, help="milestones through the escrow services")
    parser.add_argument("--pairs", type=int, default=200, help="client-freelancer pairs the milestones are spread over")
    parser.add_argument("--accounts", type=int, default=2_000, help="asset accounts per currency")
    parser.add_argument("--reversals", type=int, default=1_000, help="transfers reversed afterwards")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--no-breakdown", action="store_true", help="skip timing each check on its own")
    parser.add_argument("--seed", type=int, default=1, help="random seed of amounts and accounts")
    args = parser.parse_args(argv)
    if args.entries < 0 or args.milestones < 0 or args.reversals < 0:
        parser.error("--entries, --milestones and --reversals are not negative")
    if args.accounts < 2 or args.pairs < 1:
        parser.error("--accounts is at least 2, --pairs at least 1")
    return args


def database_size(pg: Postgres, name: str) -> str:
    with psycopg.connect(pg.conninfo(name), autocommit=True) as conn:
        row = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    return "?" if row is None else str(row[0])


def bench(args: argparse.Namespace, url: str, run_id: str, pg: Postgres | None, db_name: str) -> None:
    rng = random.Random(args.seed)
    started = time.perf_counter()
    book = connect(url, migrate=True)
    books = DatabaseBooks(url)
    gateway = SimulatedGateway(books, fee_basis_points=PSP_FEE_BASIS_POINTS, fee_fixed=PSP_FEE_FIXED)
    services = Services.over(book, gateway)
    try:
        print("build")
        line("migrated", f"{time.perf_counter() - started:.1f} s")
        chart = open_chart(book, args.accounts)
        line("accounts opened", f"{args.accounts:,} assets and {max(1, args.accounts // 10):,} wallets per currency")
        escrow_started = time.perf_counter()
        milestones = run_escrow(services, args.milestones, args.pairs, rng)
        escrow_seconds = time.perf_counter() - escrow_started
        line(
            "escrow",
            f"{milestones:,} milestones over {args.pairs:,} pairs in {escrow_seconds:.1f} s"
            f" ({milestones / escrow_seconds if escrow_seconds else 0:,.0f}/s)",
        )
        built = build_journal(book, args.entries, chart, run_id, args.reversals, rng)
        line(
            "build rate (post_batch)",
            f"{built.rate:,.0f} entries/s ({built.entries:,} entries in {built.seconds:.1f} s)",
        )
        line("entries in the journal", f"{journal_size(url):,}")
        if pg is not None:
            line("database size", database_size(pg, db_name))

        print("ledger audit")
        env = {**os.environ, "LEDGER_DATABASE_URL": url, "LEDGER_GATEWAY": "simulated"}
        line("command", f"{ledger_command()} audit --json (LEDGER_GATEWAY=simulated)")
        run = run_audit(env)
        print_audit(run, built.entries)
        if not args.no_breakdown:
            print("time per check (each alone, in this process)")
            check_times(book, gateway)
    finally:
        services.close()  # the gateway's books too


def run_alone(check: tuple[str, Check], uow: UnitOfWork) -> AuditReport:
    return run_checks(uow.audit, [check])


def check_times(book: Ledger, gateway: SimulatedGateway) -> None:
    """Each check of the audit run alone in its own read-only transaction, timed: where the audit's time goes."""
    for name, check in marketplace_checks(provider_books_of(gateway)):
        started = time.perf_counter()
        result = book.transaction(functools.partial(run_alone, (name, check)), read_only=True)
        found = result.checks[0]
        verdict = "ok" if found.ok else f"{len(found.problems) + found.omitted} problems"
        line(name, f"{time.perf_counter() - started:6.2f} s  {verdict}")


def journal_size(url: str) -> int:
    """Entries in the journal, escrow's and the batches' (read directly: the bench only counts)."""
    engine = create_engine(normalize_database_url(url))
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(entries)).scalar_one())
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    logging.getLogger("ledger.transactions").setLevel(logging.ERROR)
    run_id = uuid.uuid4().hex[:10]
    pg = Postgres(os.environ.get("LEDGER_BENCH_POSTGRES_URL") or DEFAULT_ADMIN_URL)

    print(f"ledger audit benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, run {run_id}")
    print("machine")
    line("cpu", f"{cpu_model()} ({cpu_cores()})")
    line("memory", f"{gib(meminfo_kib('MemTotal'))} total, {gib(meminfo_kib('MemAvailable'))} available")
    line("os", f"{platform.system()} {platform.release()} {platform.machine()}")
    line("load average at start", load_average())
    line("python", f"{platform.python_version()} ({platform.python_implementation()}) {sys.executable}")
    line(
        "run",
        f"{args.entries:,} entries in batches of {BATCH:,}, {args.milestones:,} milestones, "
        f"{args.reversals:,} reversals, {args.accounts:,} accounts per currency, "
        f"{'SQLite' if args.sqlite else 'PostgreSQL'}",
    )

    db_name = f"ledger_bench_audit_{run_id}"
    created = False
    scratch: Path | None = None
    try:
        if args.sqlite:
            scratch = Path(tempfile.mkdtemp(prefix="ledger_bench_audit_"))
            url = f"sqlite:///{scratch / 'ledger.sqlite3'}"
            line("sqlite file", str(scratch / "ledger.sqlite3"))
            bench(args, url, run_id, None, db_name)
        else:
            try:
                settings = pg.settings()
            except psycopg.Error as error:
                print(f"cannot reach PostgreSQL at {pg.admin_conninfo}: {error}", file=sys.stderr)
                return 2
            line(
                "postgresql",
                f"{settings['server_version']} (synchronous_commit={settings['synchronous_commit']}, "
                f"fsync={settings['fsync']}, shared_buffers={settings['shared_buffers']})",
            )
            pg.create(db_name)
            created = True
            line("database", db_name)
            bench(args, pg.sqlalchemy_url(db_name), run_id, pg, db_name)
        line("load average at end", load_average())
        return 0
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: dropping the database", file=sys.stderr)
        return 130
    finally:
        if created:
            pg.drop(db_name)
        if scratch is not None:
            for path in scratch.iterdir():
                path.unlink()
            scratch.rmdir()


if __name__ == "__main__":
    raise SystemExit(main())
