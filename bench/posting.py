"""Posting throughput and latency of the ledger, on PostgreSQL and SQLite.

    .venv/bin/python -m bench.posting            # 8 s per figure
    .venv/bin/python -m bench.posting --quick    # 2 s per figure, a smoke run

It creates a scratch PostgreSQL database (and drops it at the end), a temporary
SQLite file, prints the machine, then one line per figure: entries/s and p50/p95/p99
latency of each call. It asserts nothing; see bench/README.md for what the figures
mean and the aims they are read against.

Environment: LEDGER_BENCH_POSTGRES_URL, an admin URL of the PostgreSQL server
(default postgresql://postgres@127.0.0.1:5432/postgres); the role must be allowed
to create databases.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import platform
import random
import re
import resource
import shutil
import sqlite3
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

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
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
AIM_ONE_WORKER = 1_100
AIM_FOUR_WORKERS = 3_300
AIM_BATCHED = 25_000
AIM_HOT_SHARE = 90.0


# --- measuring -----------------------------------------------------------------------


@dataclass
class Result:
    """What one measured phase did.

    Attributes:
        entries: entries posted.
        seconds: wall time from the start signal to the last call's return.
        latencies: seconds per call (one entry, or one batch).
        retries: transactions the ledger ran again during the phase.
    """

    entries: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    retries: int = 0

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


# One call of a worker: post something, return how many entries it posted.
Call = Callable[[], int]


def run_phase(ledger: Ledger, calls: Sequence[Call], seconds: float) -> Result:
    """Run each call in its own thread (or inline for one) in a loop for `seconds`."""
    retries_before = ledger.database.retries
    counts = [0] * len(calls)
    latencies: list[list[float]] = [[] for _ in calls]
    ends = [0.0] * len(calls)
    errors: list[BaseException] = []
    start_gate = threading.Barrier(len(calls) + 1) if len(calls) > 1 else None
    started = [0.0]

    def loop(i: int) -> None:
        call, lat = calls[i], latencies[i]
        try:
            if start_gate is not None:
                start_gate.wait()
            deadline = started[0] + seconds
            n = 0
            clock = time.perf_counter
            while True:
                t0 = clock()
                if t0 >= deadline:
                    break
                n += call()
                lat.append(clock() - t0)
            counts[i] = n
            ends[i] = clock()
        except BaseException as error:  # report, do not hang the others
            errors.append(error)
            ends[i] = time.perf_counter()

    if start_gate is None:
        started[0] = time.perf_counter()
        loop(0)
    else:
        threads = [threading.Thread(target=loop, args=(i,), name=f"bench-worker-{i}") for i in range(len(calls))]
        for thread in threads:
            thread.start()
        started[0] = time.perf_counter()
        start_gate.wait()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return Result(
        entries=sum(counts),
        seconds=max(ends) - started[0],
        latencies=sorted(x for lat in latencies for x in lat),
        retries=ledger.database.retries - retries_before,
    )


def measure(ledger: Ledger, calls: Sequence[Call], seconds: float, warmup: float) -> Result:
    if warmup > 0:
        run_phase(ledger, calls, warmup)
    return run_phase(ledger, calls, seconds)


# --- workloads -------------------------------------------------------------------------


class Keys:
    """Idempotency keys unique to this run, figure and worker."""

    def __init__(self, run_id: str, figure: str, worker: int) -> None:
        self._prefix = f"bench-{run_id}-{figure}-w{worker}-"
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n}"


def account_codes(count: int) -> list[str]:
    return [f"assets:bench:a{i:04d}" for i in range(count)]


def open_accounts(ledger: Ledger, codes: Sequence[str], *, hot: bool) -> None:
    for code in codes:
        ledger.open_account(AccountSpec(code=code, type=AccountType.ASSET, currency=CURRENCY))
    if hot:
        ledger.open_account(AccountSpec(code=HOT_ACCOUNT, type=AccountType.REVENUE, currency=CURRENCY, slots=HOT_SLOTS))


def transfer(keys: Keys, rng: random.Random, codes: Sequence[str]) -> EntryRequest:
    """A two-leg entry between two distinct random accounts (no floors)."""
    a, b = rng.sample(codes, 2)
    amount = rng.randint(1, 10_000)
    return EntryRequest(keys.next(), KIND, (debit(a, amount, CURRENCY), credit(b, amount, CURRENCY)))


def hot_sale(keys: Keys, rng: random.Random, codes: Sequence[str]) -> EntryRequest:
    """A two-leg entry crediting the shared hot revenue account."""
    amount = rng.randint(1, 10_000)
    return EntryRequest(
        keys.next(),
        "bench.sale",
        (debit(rng.choice(codes), amount, CURRENCY), credit(HOT_ACCOUNT, amount, CURRENCY)),
    )


def single_posters(
    ledger: Ledger,
    run_id: str,
    figure: str,
    workers: int,
    codes: Sequence[str],
    make: Callable[[Keys, random.Random, Sequence[str]], EntryRequest],
) -> list[Call]:
    calls: list[Call] = []
    for worker in range(workers):
        keys = Keys(run_id, figure, worker)
        rng = random.Random(f"{run_id}-{figure}-{worker}")

        def call(keys: Keys = keys, rng: random.Random = rng) -> int:
            ledger.post(make(keys, rng, codes))
            return 1

        calls.append(call)
    return calls


def batch_poster(ledger: Ledger, run_id: str, figure: str, codes: Sequence[str], size: int) -> Call:
    keys = Keys(run_id, figure, 0)
    rng = random.Random(f"{run_id}-{figure}")

    def call() -> int:
        ledger.post_batch([transfer(keys, rng, codes) for _ in range(size)])
        return size

    return call


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


@dataclass
class PgbenchResult:
    tps: float | None
    note: str


def run_pgbench(pg: Postgres, run_id: str, seconds: int, clients: int, threads: int) -> PgbenchResult:
    binary = find_pgbench()
    if binary is None:
        return PgbenchResult(None, "pgbench not found (PATH, /usr/lib/postgresql/*/bin): skipped")
    name = f"ledger_bench_pgbench_{run_id}"
    pg.create(name)
    try:
        target = pg.conninfo(name)
        init = subprocess.run(
            [binary, "-i", "-s", "1", "-q", target], capture_output=True, text=True, timeout=600, check=False
        )
        if init.returncode != 0:
            return PgbenchResult(None, f"pgbench -i failed: {(init.stderr or init.stdout).strip()[-300:]}")
        bench = subprocess.run(
            [binary, "-c", str(clients), "-j", str(threads), "-T", str(seconds), target],
            capture_output=True,
            text=True,
            timeout=seconds + 300,
            check=False,
        )
        if bench.returncode != 0:
            return PgbenchResult(None, f"pgbench failed: {(bench.stderr or bench.stdout).strip()[-300:]}")
        match = re.search(r"^tps = ([0-9.]+)", bench.stdout, re.MULTILINE)
        if match is None:
            return PgbenchResult(None, "could not find 'tps = ' in pgbench's output")
        latency = re.search(r"^latency average = ([0-9.]+) ms", bench.stdout, re.MULTILINE)
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        note = f"{version}; TPC-B-like, scale 1, -c {clients} -j {threads} -T {seconds}"
        if latency:
            note += f", latency avg {float(latency.group(1)):.2f} ms"
        return PgbenchResult(float(match.group(1)), note)
    finally:
        pg.drop(name)


# --- output ----------------------------------------------------------------------------------


LABEL_WIDTH = 50


def line(label: str, value: str) -> None:
    print(f"  {label:<{LABEL_WIDTH}} {value}", flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def report(label: str, result: Result, *, unit: str = "entry", extra: str = "") -> None:
    lat = result.latencies
    text = f"{result.rate:>9,.0f} entries/s"
    if lat:
        text += (
            f"   p50 {ms(percentile(lat, 50))}  p95 {ms(percentile(lat, 95))}  p99 {ms(percentile(lat, 99))} ms"
            f" per {unit}"
        )
    text += f"   ({result.entries:,} entries in {result.seconds:.1f} s)"
    if extra:
        text += f"   {extra}"
    line(label, text)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.posting", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="measured seconds per figure (default 8; 2 with --quick)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds before each figure (default 1; 0.5 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a 2-second smoke run of every figure")
    parser.add_argument("--workers", type=int, default=4, help="threads of figures 2 and 4 (default 4)")
    parser.add_argument("--accounts", type=int, default=100, help="accounts entries move money between (default 100)")
    parser.add_argument("--batch-size", type=int, default=1000, help="entries per post_batch call (default 1000)")
    parser.add_argument("--pgbench-seconds", type=int, help="pgbench -T (default 10; 2 with --quick)")
    parser.add_argument("--no-pgbench", action="store_true", help="skip the pgbench reference")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 8.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.pgbench_seconds is None:
        args.pgbench_seconds = 2 if args.quick else 10
    if args.accounts < 2:
        parser.error("--accounts must be at least 2")
    if args.workers < 1 or args.batch_size < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--workers, --batch-size and --seconds must be positive, --warmup not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Retries are counted by the ledger and reported; a log line per retry would only
    # slow the workers down and bury the figures.
    logging.getLogger("ledger.transactions").setLevel(logging.ERROR)

    run_id = uuid.uuid4().hex[:10]
    pg = Postgres(os.environ.get("LEDGER_BENCH_POSTGRES_URL") or DEFAULT_ADMIN_URL)
    codes = account_codes(args.accounts)

    print(f"ledger posting benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, run {run_id}")
    print("machine")
    line("cpu", f"{cpu_model()} ({cpu_cores()})")
    line("memory", f"{gib(meminfo_kib('MemTotal'))} total, {gib(meminfo_kib('MemAvailable'))} available")
    line("os", f"{platform.system()} {platform.release()} {platform.machine()}")
    line("load average at start", load_average())
    line("python", f"{platform.python_version()} ({platform.python_implementation()}) {sys.executable}")
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
        f"{args.seconds:g} s per figure after {args.warmup:g} s warm-up; {args.accounts} accounts, "
        f"{args.workers} workers, batches of {args.batch_size:,}",
    )

    pg_name = f"ledger_bench_{run_id}"
    sqlite_dir = tempfile.mkdtemp(prefix="ledger_bench_")
    ledger: Ledger | None = None
    lite: Ledger | None = None
    audits: list[tuple[str, str]] = []
    try:
        pg.create(pg_name)
        ledger = connect(pg.sqlalchemy_url(pg_name), migrate=True)
        open_accounts(ledger, codes, hot=True)
        print("figures (PostgreSQL database " + pg_name + ")")

        one = measure(ledger, single_posters(ledger, run_id, "f1", 1, codes, transfer), args.seconds, args.warmup)
        report("1. PostgreSQL, 1 worker, 2-leg entries", one, extra=f"aim >= {AIM_ONE_WORKER:,}/s")

        many = measure(
            ledger, single_posters(ledger, run_id, "f2", args.workers, codes, transfer), args.seconds, args.warmup
        )
        report(
            f"2. PostgreSQL, {args.workers} workers, 2-leg entries",
            many,
            extra=f"retries {many.retries}; aim >= {AIM_FOUR_WORKERS:,}/s",
        )

        batched = measure(
            ledger, [batch_poster(ledger, run_id, "f3", codes, args.batch_size)], args.seconds, args.warmup
        )
        report(
            f"3. PostgreSQL, batches of {args.batch_size:,}, 1 connection",
            batched,
            unit="batch",
            extra=f"aim >= {AIM_BATCHED:,}/s",
        )

        hot = measure(
            ledger, single_posters(ledger, run_id, "f4", args.workers, codes, hot_sale), args.seconds, args.warmup
        )
        share = 100.0 * hot.rate / many.rate if many.rate else float("nan")
        report(
            f"4. PostgreSQL, {args.workers} workers, hot account ({HOT_SLOTS} slots)",
            hot,
            extra=f"retries {hot.retries}; {share:.0f}% of figure 2 (aim >= {AIM_HOT_SHARE:.0f}%)",
        )

        lite = connect(f"sqlite:///{Path(sqlite_dir) / 'bench.sqlite3'}", migrate=True)
        open_accounts(lite, codes, hot=False)
        sqlite_one = measure(lite, single_posters(lite, run_id, "f5", 1, codes, transfer), args.seconds, args.warmup)
        report("5. SQLite, 1 worker, 2-leg entries", sqlite_one)

        if args.no_pgbench:
            line("6. pgbench reference", "skipped (--no-pgbench)")
        else:
            ref = run_pgbench(pg, run_id, args.pgbench_seconds, clients=8, threads=2)
            if ref.tps is None:
                line("6. pgbench reference", ref.note)
            else:
                line(
                    "6. pgbench reference, 8 clients",
                    f"{ref.tps:>9,.0f} tps   figure 2 is {100.0 * many.rate / ref.tps:.0f}% of it   ({ref.note})",
                )

        print("sanity")
        report_pg = ledger.audit()
        audits.append(("ledger audit, PostgreSQL bench database", f"ok={report_pg.ok}"))
        report_lite = lite.audit()
        audits.append(("ledger audit, SQLite bench file", f"ok={report_lite.ok}"))
        for label, value in audits:
            line(label, value)
        if not report_pg.ok:
            print(report_pg.summary())
        if not report_lite.ok:
            print(report_lite.summary())
        line("load average at end", load_average())
        line("peak RSS of this process", f"{peak_rss_kib() / 1024:.0f} MiB")
    finally:
        if lite is not None:
            lite.close()
        shutil.rmtree(sqlite_dir, ignore_errors=True)
        if ledger is not None:
            ledger.close()
        try:
            pg.drop(pg_name)
        except psycopg.Error as error:
            print(f"could not drop database {pg_name}: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
