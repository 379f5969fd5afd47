"""Posting throughput of the ledger on PostgreSQL, beside pgbench and a PL/pgSQL ledger.

    .venv/bin/python -m bench.posting            # 3 rounds, 6 s per figure
    .venv/bin/python -m bench.posting --quick    # 1 round, 2 s per figure: a smoke run

Each round measures, one after the other on one scratch PostgreSQL database: single
two-leg postings through `Ledger.post` with 1 and with 4 worker processes, batches of
1,000 through `Ledger.post_batch`, a hot account (every posting credits one revenue
account) with 4 processes, SQLite with 1 process, and on the same server in the same
round pgbench's TPC-B-like workload and a PL/pgSQL ledger (one function call per
transfer) with 1 and 4 clients. It prints every figure of every round, then the median
of the rounds beside pgbench's and the ratio, the client CPU and round trips per
posting. It asserts nothing; see bench/README.md for the aims it is read against.

Environment: LEDGER_BENCH_POSTGRES_URL, an admin URL of the PostgreSQL server
(default postgresql://postgres@127.0.0.1:5432/postgres); the role must be allowed
to create databases.
"""

from __future__ import annotations

import argparse
import glob
import logging
import multiprocessing
import os
import platform
import random
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy import event
from sqlalchemy.engine import make_url

from ledger.accounts import AccountSpec, AccountType
from ledger.bootstrap import connect
from ledger.config import normalize_database_url
from ledger.journal import EntryRequest, credit, debit
from ledger.service import Ledger

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CURRENCY = "USD"
KIND = "bench.transfer"
HOT_ACCOUNT = "revenue:bench:hot"
HOT_SLOTS = 16

# The aims the figures are read against (never asserted; see README.md).
AIM_FOUR_VS_PGBENCH = 0.75
AIM_ONE_VS_PGBENCH = 0.55
AIM_BATCHED = 25_000
AIM_HOT_SHARE = 0.90
AIM_CPU_MS = 0.3
AIM_ROUND_TRIPS = 1.0


# --- measuring --------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Job:
    """What one worker process does.

    Attributes:
        workload: "transfer", "hot", "batch" (through the ledger) or "plpgsql" (the reference).
        url: the database (a SQLAlchemy URL for the ledger, a libpq one for the reference).
        worker: its number, for its idempotency keys and random seed.
        run: the run and figure, also for the keys.
        accounts: how many asset accounts transfers move money between.
        batch_size: entries per `post_batch` call.
        warmup, seconds: unmeasured, then measured seconds.
    """

    workload: str
    url: str
    worker: int
    run: str
    accounts: int
    batch_size: int
    warmup: float
    seconds: float


@dataclass
class Measured:
    """What one worker did in its measured seconds."""

    entries: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    retries: int = 0


def account_codes(count: int) -> list[str]:
    return [f"assets:bench:a{i:04d}" for i in range(count)]


def ledger_call(job: Job, ledger: Ledger) -> Callable[[], int]:
    """One call of a ledger worker: post something, return how many entries it posted."""
    codes = account_codes(job.accounts)
    rng = random.Random(f"{job.run}-{job.worker}")
    prefix = f"bench-{job.run}-w{job.worker}-"
    counter = iter(range(1, 1 << 62))

    def transfer() -> EntryRequest:
        a, b = rng.sample(codes, 2)
        amount = rng.randint(1, 10_000)
        return EntryRequest(f"{prefix}{next(counter)}", KIND, (debit(a, amount, CURRENCY), credit(b, amount, CURRENCY)))

    def hot() -> EntryRequest:
        amount = rng.randint(1, 10_000)
        postings = (debit(rng.choice(codes), amount, CURRENCY), credit(HOT_ACCOUNT, amount, CURRENCY))
        return EntryRequest(f"{prefix}{next(counter)}", "bench.sale", postings)

    if job.workload == "batch":

        def batch() -> int:
            ledger.post_batch([transfer() for _ in range(job.batch_size)])
            return job.batch_size

        return batch
    make = hot if job.workload == "hot" else transfer

    def single() -> int:
        ledger.post(make())
        return 1

    return single


def plpgsql_call(job: Job, conn: psycopg.Connection[Any]) -> Callable[[], int]:
    rng = random.Random(f"{job.run}-{job.worker}")
    prefix = f"ref-{job.run}-w{job.worker}-"
    counter = iter(range(1, 1 << 62))

    def call() -> int:
        a, b = rng.sample(range(1, job.accounts + 1), 2)
        conn.execute(
            "SELECT bench_ref.transfer(%s, %s, %s, %s)", (f"{prefix}{next(counter)}", a, b, rng.randint(1, 10_000))
        )
        return 1

    return call


def run_worker(job: Job, ready: Any, start: Any, results: Any) -> None:
    """A worker process: connect, wait for the common start, warm up, measure, report."""
    logging.getLogger("ledger.transactions").setLevel(logging.ERROR)
    closers: list[Callable[[], None]] = []
    try:
        if job.workload == "plpgsql":
            conn = psycopg.connect(job.url, autocommit=True)
            closers.append(conn.close)
            call = plpgsql_call(job, conn)
            retries: Callable[[], int] = lambda: 0  # noqa: E731
        else:
            ledger = connect(job.url)
            closers.append(ledger.close)
            # A long-running writer has the accounts it posts to cached (they never change).
            keys = [(code, CURRENCY) for code in account_codes(job.accounts)]
            if job.workload == "hot":
                keys.append((HOT_ACCOUNT, CURRENCY))
            for start_at in range(0, len(keys), 100):
                chunk = keys[start_at : start_at + 100]
                ledger.transaction(lambda uow, chunk=chunk: uow.accounts.resolve(chunk), read_only=True)
            call = ledger_call(job, ledger)
            retries = lambda: ledger.database.retries  # noqa: E731
        ready.wait()
        start.wait()
        clock = time.perf_counter
        deadline = clock() + job.warmup
        while clock() < deadline:
            call()
        measured = Measured()
        retries_before = retries()
        cpu_before, began = time.process_time(), clock()
        deadline = began + job.seconds
        while True:
            t0 = clock()
            if t0 >= deadline:
                break
            measured.entries += call()
            measured.latencies.append(clock() - t0)
        measured.seconds = clock() - began
        measured.cpu_seconds = time.process_time() - cpu_before
        measured.retries = retries() - retries_before
        results.put((job.worker, measured))
    except BaseException as error:
        results.put((job.worker, f"{type(error).__name__}: {error}"))
        ready.abort()  # the others, and the parent, stop waiting for this worker
        start.abort()
    finally:
        for close in closers:
            close()


@dataclass
class Figure:
    """One figure of one round: all workers together."""

    entries: int
    seconds: float
    cpu_seconds: float
    latencies: list[float]
    retries: int

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_entry(self) -> float:
        return 1000.0 * self.cpu_seconds / self.entries if self.entries else float("nan")


def measure(jobs: Sequence[Job]) -> Figure:
    """Run the jobs in worker processes (spawned: no engine crosses a fork) from one start."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(len(jobs) + 1)
    start = context.Barrier(len(jobs) + 1)
    results = context.Queue()
    processes = [context.Process(target=run_worker, args=(job, ready, start, results)) for job in jobs]
    for process in processes:
        process.start()
    try:
        try:
            ready.wait(timeout=120)
            start.wait(timeout=30)
        except threading.BrokenBarrierError:
            raise BenchError(f"a worker failed before the start: {results.get(timeout=30)[1]}") from None
        outcomes = [results.get(timeout=jobs[0].warmup + jobs[0].seconds + 120) for _ in jobs]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    failures = [outcome for _, outcome in outcomes if isinstance(outcome, str)]
    if failures:
        raise BenchError(f"a worker failed: {failures[0]}")
    measured = [outcome for _, outcome in outcomes if isinstance(outcome, Measured)]
    return Figure(
        entries=sum(m.entries for m in measured),
        seconds=max(m.seconds for m in measured),
        cpu_seconds=sum(m.cpu_seconds for m in measured),
        latencies=sorted(x for m in measured for x in m.latencies),
        retries=sum(m.retries for m in measured),
    )


class BenchError(RuntimeError):
    pass


def round_trips(ledger: Ledger, codes: Sequence[str], run: str, *, batch_size: int = 1) -> tuple[float, int]:
    """Round trips per call of `post` (or `post_batch`), and calls probed.

    Counted by SQLAlchemy's events: every statement, and BEGIN and COMMIT unless the
    connection runs in autocommit (then the driver sends neither)."""
    engine = ledger.database.engine
    sent = [0]

    def statement(conn: Any, *args: Any) -> None:
        sent[0] += 1

    def begin_or_commit(conn: Any) -> None:
        if not conn.connection.dbapi_connection.autocommit:
            sent[0] += 1

    rng = random.Random(run)
    calls = 200 if batch_size == 1 else 5

    def request(i: int) -> EntryRequest:
        a, b = rng.sample(list(codes), 2)
        return EntryRequest(f"probe-{run}-{i}", KIND, (debit(a, 100, CURRENCY), credit(b, 100, CURRENCY)))

    ledger.post(request(-1))  # the accounts are cached from here on
    event.listen(engine, "before_cursor_execute", statement)
    for name in ("begin", "commit"):
        event.listen(engine, name, begin_or_commit)
    try:
        for i in range(calls):
            if batch_size == 1:
                ledger.post(request(i))
            else:
                ledger.post_batch([request(i * batch_size + j + 1_000_000) for j in range(batch_size)])
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        for name in ("begin", "commit"):
            event.remove(engine, name, begin_or_commit)
    return sent[0] / calls, calls


# --- the PL/pgSQL reference ledger ---------------------------------------------------------------

# The reference a hand-written database ledger reaches: one function call per transfer
# (entry, two postings, two balance updates in id order), from a minimal psycopg client.
PLPGSQL_LEDGER = """
CREATE SCHEMA bench_ref;
CREATE TABLE bench_ref.accounts (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
CREATE TABLE bench_ref.entries (id bigserial PRIMARY KEY, key text NOT NULL UNIQUE,
                                recorded_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE bench_ref.postings (id bigserial PRIMARY KEY, entry_id bigint NOT NULL REFERENCES bench_ref.entries,
                                 account_id bigint NOT NULL REFERENCES bench_ref.accounts, amount bigint NOT NULL);
CREATE FUNCTION bench_ref.transfer(k text, debit_id bigint, credit_id bigint, amount bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
BEGIN
    -- Lock both balances first, in id order: the postings' foreign keys would otherwise
    -- share-lock the rows, and two transfers upgrading those locks could deadlock.
    PERFORM 1 FROM bench_ref.accounts WHERE id IN (debit_id, credit_id) ORDER BY id FOR UPDATE;
    INSERT INTO bench_ref.entries (key) VALUES (k) RETURNING id INTO entry;
    INSERT INTO bench_ref.postings (entry_id, account_id, amount) VALUES (entry, debit_id, amount), (entry, credit_id, -amount);
    UPDATE bench_ref.accounts SET balance = balance + amount WHERE id = debit_id;
    UPDATE bench_ref.accounts SET balance = balance - amount WHERE id = credit_id;
    RETURN entry;
END
$$;
"""


def create_plpgsql_ledger(conninfo: str, accounts: int) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(PLPGSQL_LEDGER)
        conn.execute("INSERT INTO bench_ref.accounts (id) SELECT generate_series(1, %s)", (accounts,))


# --- machine ---------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_cores() -> str:
    logical = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = logical
    physical: set[tuple[str, str]] = set()
    try:
        package = core = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                package = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                core = line.split(":", 1)[1].strip()
                physical.add((package, core))
    except OSError:
        pass
    text = f"{logical} logical"
    if physical:
        text += f", {len(physical)} physical"
    if usable != logical:
        text += f", {usable} usable by this process"
    return text


def meminfo_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_kib() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def load_average() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every figure."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def gib(kib: int | None) -> str:
    return "unknown" if kib is None else f"{kib / 1024 / 1024:.1f} GiB"


# --- PostgreSQL scratch databases ----------------------------------------------------------


class Postgres:
    """The server behind the admin URL: scratch databases and version."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        # psycopg / libpq want plain postgresql://; SQLAlchemy wants the driver spelled out.
        self.admin_conninfo = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", admin_url)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_conninfo, autocommit=True, connect_timeout=10)

    def settings(self) -> dict[str, str]:
        names = ("server_version", "synchronous_commit", "fsync", "shared_buffers", "max_connections")
        found: dict[str, str] = {}
        with self._admin() as conn:
            for name in names:
                row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                found[name] = "?" if row is None else str(row[0])
        return found

    def create(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def conninfo(self, name: str) -> str:
        """A libpq connection string for database `name` (for pgbench)."""
        return make_conninfo(self.admin_conninfo, dbname=name)

    def sqlalchemy_url(self, name: str) -> str:
        url = make_url(normalize_database_url(self.admin_conninfo)).set(database=name)
        return url.render_as_string(hide_password=False)


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    return candidates[0] if candidates else None


# --- output ----------------------------------------------------------------------------------


LABEL_WIDTH = 44


def line(label: str, value: str) -> None:
    print(f"  {label:<{LABEL_WIDTH}} {value}", flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def describe(figure: Figure, unit: str = "posting") -> str:
    lat = figure.latencies
    return (
        f"{figure.rate:>9,.0f}/s   p50 {ms(percentile(lat, 50))}  p99 {ms(percentile(lat, 99))} ms per {unit}"
        f"   cpu {figure.cpu_ms_per_entry:.3f} ms/entry   retries {figure.retries}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.posting", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="measured seconds per figure (default 6; 2 with --quick)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds before each figure (default 1; 0.5 with --quick)")
    parser.add_argument("--rounds", type=int, help="rounds; medians are printed (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="one short round of every figure: a smoke run")
    parser.add_argument("--workers", type=int, default=4, help="processes of the multi-worker figures (default 4)")
    parser.add_argument(
        "--accounts", type=int, default=1000, help="accounts transfers move money between (default 1000)"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="entries per post_batch call (default 1000)")
    parser.add_argument("--no-pgbench", action="store_true", help="skip the pgbench reference")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 6.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.accounts < 2:
        parser.error("--accounts must be at least 2")
    if min(args.workers, args.batch_size, args.rounds) < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--workers, --batch-size, --rounds and --seconds must be positive, --warmup not negative")
    return args


def on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # runs the clean-up of `main`


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    logging.getLogger("ledger.transactions").setLevel(logging.ERROR)
    run_id = uuid.uuid4().hex[:10]
    pg = Postgres(os.environ.get("LEDGER_BENCH_POSTGRES_URL") or DEFAULT_ADMIN_URL)
    codes = account_codes(args.accounts)
    n = args.workers

    print(f"ledger posting benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, run {run_id}")
    print("machine")
    line("cpu", f"{cpu_model()} ({cpu_cores()})")
    line("memory", f"{gib(meminfo_kib('MemTotal'))} total, {gib(meminfo_kib('MemAvailable'))} available")
    line("os", f"{platform.system()} {platform.release()} {platform.machine()}")
    line("load average at start", load_average())
    line("python", f"{platform.python_version()} ({platform.python_implementation()}) {sys.executable}")
    line("ledger code", str(Path(sys.modules["ledger"].__file__ or "?").parent))
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
    line("sqlite", f"{sqlite3.sqlite_version} (WAL, synchronous=NORMAL)")
    line(
        "run",
        f"{args.rounds} round(s); {args.seconds:g} s per figure after {args.warmup:g} s warm-up; "
        f"{args.accounts} USD accounts, random pairs, 1-10,000 cents; {n} processes; batches of {args.batch_size:,}",
    )

    pg_name = f"ledger_bench_{run_id}"
    pgbench_name = f"ledger_bench_pgbench_{run_id}"
    sqlite_dir = tempfile.mkdtemp(prefix="ledger_bench_")
    sqlite_url = f"sqlite:///{Path(sqlite_dir) / 'bench.sqlite3'}"
    ledger: Ledger | None = None
    lite: Ledger | None = None
    pgbench = find_pgbench() if not args.no_pgbench else None
    try:
        pg.create(pg_name)
        url = pg.sqlalchemy_url(pg_name)
        ledger = connect(url, migrate=True)
        for code in codes:
            ledger.open_account(AccountSpec(code=code, type=AccountType.ASSET, currency=CURRENCY))
        ledger.open_account(AccountSpec(code=HOT_ACCOUNT, type=AccountType.REVENUE, currency=CURRENCY, slots=HOT_SLOTS))
        lite = connect(sqlite_url, migrate=True)
        for code in codes:
            lite.open_account(AccountSpec(code=code, type=AccountType.ASSET, currency=CURRENCY))
        create_plpgsql_ledger(pg.conninfo(pg_name), args.accounts)
        if pgbench is not None:
            pg.create(pgbench_name)
            subprocess.run([pgbench, "-i", "-s", "1", "-q", pg.conninfo(pgbench_name)], capture_output=True, check=True)

        def jobs(workload: str, workers: int, figure: str, at: str = url) -> list[Job]:
            return [
                Job(workload, at, w, f"{run_id}-{figure}", args.accounts, args.batch_size, args.warmup, args.seconds)
                for w in range(workers)
            ]

        def pgbench_tps(clients: int) -> float | None:
            if pgbench is None:
                return None
            done = subprocess.run(
                [
                    pgbench,
                    "-n",
                    "-c",
                    str(clients),
                    "-j",
                    str(min(clients, 2)),
                    "-T",
                    str(max(1, round(args.seconds))),
                    pg.conninfo(pgbench_name),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            found = re.search(r"^tps = ([0-9.]+)", done.stdout, re.MULTILINE)
            return float(found.group(1)) if found else None

        rows: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}

        def keep(name: str, value: float | None, cpu_ms: float | None = None) -> None:
            if value is not None:
                rows.setdefault(name, []).append(value)
            if cpu_ms is not None:
                cpu.setdefault(name, []).append(cpu_ms)

        for r in range(1, args.rounds + 1):
            print(f"round {r} of {args.rounds}")
            figures = [
                ("ledger, 1 process", jobs("transfer", 1, f"r{r}one"), "posting"),
                (f"ledger, {n} processes", jobs("transfer", n, f"r{r}many"), "posting"),
                (f"ledger, batches of {args.batch_size:,}, 1 process", jobs("batch", 1, f"r{r}batch"), "batch"),
                (f"ledger, hot account, {n} processes", jobs("hot", n, f"r{r}hot"), "posting"),
                ("ledger on SQLite, 1 process", jobs("transfer", 1, f"r{r}lite", sqlite_url), "posting"),
                ("PL/pgSQL ledger, 1 client", jobs("plpgsql", 1, f"r{r}ref1", pg.conninfo(pg_name)), "call"),
                (f"PL/pgSQL ledger, {n} clients", jobs("plpgsql", n, f"r{r}refn", pg.conninfo(pg_name)), "call"),
            ]
            for name, figure_jobs, unit in figures:
                figure = measure(figure_jobs)
                keep(name, figure.rate, figure.cpu_ms_per_entry)
                line(name, describe(figure, unit))
            for clients in (1, n):
                tps = pgbench_tps(clients)
                keep(f"pgbench c={clients}", tps)
                line(f"pgbench TPC-B-like, c={clients}", "skipped" if tps is None else f"{tps:>9,.0f} tps")

        med = {name: median(values) for name, values in rows.items()}
        med_cpu = {name: median(values) for name, values in cpu.items()}
        pgb1, pgbn = med.get("pgbench c=1"), med.get(f"pgbench c={n}")

        def ratio(value: float, reference: float | None) -> str:
            return "" if not reference else f"{value / reference:.2f}x"

        print(f"medians of {args.rounds} round(s), each figure beside the same run's references")
        one, many = med["ledger, 1 process"], med[f"ledger, {n} processes"]
        plpg1, plpgn = med["PL/pgSQL ledger, 1 client"], med[f"PL/pgSQL ledger, {n} clients"]
        line(
            "single postings, 1 process",
            f"{one:>7,.0f}/s  pgbench c=1 {pgb1 or 0:,.0f} tps: {ratio(one, pgb1)} (aim >= {AIM_ONE_VS_PGBENCH}x)"
            f"  PL/pgSQL {plpg1:,.0f}/s: {ratio(one, plpg1)}",
        )
        line(
            f"single postings, {n} processes",
            f"{many:>7,.0f}/s  pgbench c={n} {pgbn or 0:,.0f} tps: {ratio(many, pgbn)} (aim >= {AIM_FOUR_VS_PGBENCH}x)"
            f"  PL/pgSQL {plpgn:,.0f}/s: {ratio(many, plpgn)}",
        )
        line("PL/pgSQL ledger vs pgbench", f"c=1 {ratio(plpg1, pgb1)}, c={n} {ratio(plpgn, pgbn)}")
        batched = med[f"ledger, batches of {args.batch_size:,}, 1 process"]
        line(f"batches of {args.batch_size:,}, 1 process", f"{batched:>7,.0f} entries/s (aim >= {AIM_BATCHED:,})")
        hot = med[f"ledger, hot account, {n} processes"]
        line(f"hot account, {n} processes", f"{hot:>7,.0f}/s: {hot / many:.0%} of uniform (aim >= {AIM_HOT_SHARE:.0%})")
        line("SQLite, 1 process", f"{med['ledger on SQLite, 1 process']:>7,.0f}/s")
        line(
            "client CPU per posting (ledger workers)",
            f"1 process {med_cpu['ledger, 1 process']:.3f} ms, {n} processes {med_cpu[f'ledger, {n} processes']:.3f} ms"
            f" (aim <= {AIM_CPU_MS} ms); PL/pgSQL client {med_cpu['PL/pgSQL ledger, 1 client']:.3f} ms",
        )
        trips, probed = round_trips(ledger, codes, run_id)
        batch_trips, _ = round_trips(ledger, codes, run_id + "b", batch_size=args.batch_size)
        line(
            "round trips per posting (PostgreSQL)",
            f"{trips:.2f} per post (aim <= {AIM_ROUND_TRIPS:g}; {probed} posts probed), "
            f"{batch_trips:.2f} per batch of {args.batch_size:,}",
        )

        print("sanity")
        report_pg = ledger.audit()
        line("ledger audit, PostgreSQL bench database", f"ok={report_pg.ok}")
        report_lite = lite.audit()
        line("ledger audit, SQLite bench file", f"ok={report_lite.ok}")
        if not report_pg.ok:
            print(report_pg.summary())
        if not report_lite.ok:
            print(report_lite.summary())
        line("load average at end", load_average())
    finally:
        if lite is not None:
            lite.close()
        shutil.rmtree(sqlite_dir, ignore_errors=True)
        if ledger is not None:
            ledger.close()
        for name in (pg_name, pgbench_name):
            try:
                pg.drop(name)
            except psycopg.Error as error:
                print(f"could not drop database {name}: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
