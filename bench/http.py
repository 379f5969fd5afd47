"""Latency of the HTTP API's release path under a fixed request rate.

    .venv/bin/python -m bench.http             # 200 requests/s for 20 s after a 2 s warm-up
    .venv/bin/python -m bench.http --quick     # 5 s (and a 1 s warm-up): a smoke run
    .venv/bin/python -m bench.http --workers 1 # one server process (default: `ledger serve`'s)

It creates a scratch PostgreSQL database, migrates it with `ledger db upgrade`,
creates a marketplace API key with `ledger keys create`, starts `ledger serve` on a
free port (simulated gateway) and prepares funded, submitted milestones through the
API, untimed. Then an open-loop load generator sends POST /v1/milestones/{id}/approve
(fee, journal entry, invoices), each to a different milestone, at a fixed rate that
slow responses do not lower; latency runs from each request's scheduled send time.
It prints the machine, the offered and achieved rates, errors by status and the
p50/p90/p99/max latency, stops the server and drops the database, also on Ctrl-C
or an error. It asserts nothing; see bench/README.md.

Environment: LEDGER_BENCH_POSTGRES_URL, an admin URL of the PostgreSQL server
(default postgresql://postgres@127.0.0.1:5432/postgres); the role must be allowed
to create databases.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import psycopg

from bench.posting import Postgres, cpu_cores, cpu_model, gib, load_average, meminfo_kib, percentile

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CURRENCY = "USD"
PREPARE_THREADS = 8
SERVER_START_TIMEOUT = 60.0

# The goal the figures are read against (never asserted; see README.md).
GOAL_RATE = 200.0
GOAL_P99_MS = 30.0
GOAL_CORES = 2

T = TypeVar("T")


class BenchError(Exception):
    """The benchmark could not set itself up (not a figure: those are printed)."""


# --- machine -------------------------------------------------------------------------------


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (uvicorn's supervisor, its workers and their helpers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_pid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def backend_pids(database: str) -> list[int]:
    """PostgreSQL backends connected to `database` (their title names it), from /proc/*/cmdline."""
    marker = f" {database} ".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"postgres:") and marker in title:
                found.append(int(entry.name))
    return found


@dataclass
class CpuSnapshot:
    """CPU counters at one moment: the machine, `ledger serve` (each of its processes), this
    process, the database's backends."""

    at: float
    machine: tuple[int, int]
    server: dict[int, float]
    own: float
    backends: dict[int, float]

    @classmethod
    def take(cls, server_pid: int, database: str) -> CpuSnapshot:
        return cls(
            time.perf_counter(),
            machine_cpu_ticks(),
            cpu_of(process_tree(server_pid)),
            time.process_time(),
            cpu_of(backend_pids(database)),
        )


def cpu_of(pids: Sequence[int]) -> dict[int, float]:
    found = {pid: process_cpu_seconds(pid) for pid in pids}
    return {pid: cpu for pid, cpu in found.items() if cpu is not None}


def cpu_seconds_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the processes used between two snapshots (one started in between: all of its own)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def cpu_per_request(before: CpuSnapshot, after: CpuSnapshot, answered: int) -> str:
    """CPU milliseconds per answered request (cores x seconds / requests): the server's, the database's."""
    if not answered:
        return "no 2xx answers"
    server = cpu_seconds_between(before.server, after.server) / answered * 1000
    backends = cpu_seconds_between(before.backends, after.backends) / answered * 1000
    return f"`ledger serve` {server:.2f}, PostgreSQL backends {backends:.2f}, together {server + backends:.2f}"


def cpu_usage(before: CpuSnapshot, after: CpuSnapshot) -> list[str]:
    """Where the CPU went between two snapshots, in cores (1.00 = one core busy all along)."""
    wall = after.at - before.at
    if wall <= 0:
        return ["unknown"]
    busy, total = after.machine[0] - before.machine[0], after.machine[1] - before.machine[1]
    cores = os.cpu_count() or 1
    used = {
        f"`ledger serve` ({len(after.server)} processes)": cpu_seconds_between(before.server, after.server),
        "PostgreSQL backends of the bench database": cpu_seconds_between(before.backends, after.backends),
        "this load generator": after.own - before.own,
    }
    parts = []
    if total > 0:
        machine = busy / total * cores
        parts.append(f"machine {machine:.2f} of {cores} cores busy")
    parts += [f"{label} {seconds / wall:.2f}" for label, seconds in used.items()]
    if total > 0:
        known = sum(used.values()) / wall
        parts.append(f"everything else (other processes, kernel) {max(0.0, machine - known):.2f}")
    return parts


# --- the server --------------------------------------------------------------------------


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def ledger_command() -> str:
    """The `ledger` script of this virtualenv (next to the interpreter), else the one on PATH."""
    beside = Path(sys.executable).parent / "ledger"
    if beside.exists():
        return str(beside)
    found = shutil.which("ledger")
    if found is None:
        raise BenchError("the `ledger` command is not installed (pip install -e . in the virtualenv)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_ledger(env: dict[str, str], *args: str) -> str:
    """Run a `ledger` command to completion; its stdout, or BenchError with its stderr."""
    done = subprocess.run([ledger_command(), *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise BenchError(f"`ledger {' '.join(args)}` exited {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


class Server:
    """`ledger serve` as a subprocess in its own session, its output in a log file.

    `workers`: its `--workers` (None: `ledger serve`'s default, one process per core on
    PostgreSQL)."""

    def __init__(self, env: dict[str, str], port: int, database: str, workers: int | None = None) -> None:
        self.port = port
        self.database = database
        self.base_url = f"http://127.0.0.1:{port}"
        handle, name = tempfile.mkstemp(prefix="ledger_bench_http_", suffix=".log")
        self.log_path = Path(name)
        self.keep_log = False  # kept, and its path printed, when the API answered 5xx
        with os.fdopen(handle, "wb") as log:
            # Its own session: a Ctrl-C reaches the benchmark only, which then stops it in order.
            workers_option = [] if workers is None else ["--workers", str(workers)]
            self.process = subprocess.Popen(
                [ledger_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *workers_option],
                env={**env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The server processes under uvicorn's supervisor; none when it serves in one process."""
        return [pid for pid in process_tree(self.pid)[1:] if b"spawn_main" in _cmdline(pid)]

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_text(self, start: int = 0) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> None:
        """Until /health/ready answers and every server process has started (the supervisor
        starts them all at once, so all are listed once one answers)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"`ledger serve` exited {self.process.returncode}:\n{self.log_text()[-3000:]}")
            probe = HTTPConnection("127.0.0.1", self.port, timeout=2.0)
            try:
                probe.request("GET", "/health/ready")
                response = probe.getresponse()
                body = response.read()
                started = self.log_text().count("Application startup complete.")
                if response.status == 200 and started >= max(1, len(self.worker_pids())):
                    return
                last = f"{response.status} {body[:200].decode(errors='replace')}"
            except (OSError, HTTPException) as error:
                last = f"{type(error).__name__}: {error}"
            finally:
                probe.close()
            time.sleep(0.1)
        raise BenchError(f"`ledger serve` not ready after {timeout:.0f} s ({last}):\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                # The whole session: the supervisor and its workers.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


# --- the client ------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection to the server (stdlib http.client), for one thread.

    Reopened after an error, and before a request if it sat idle long enough that the
    server may have closed it (uvicorn's keep-alive timeout is 5 s).
    """

    IDLE_REOPEN = 2.0

    def __init__(self, host: str, port: int, api_key: str, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._conn: HTTPConnection | None = None
        self._last_used = 0.0

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """POST and read the whole answer: (status, body). Raises OSError / HTTPException if none came."""
        if self._conn is not None and time.monotonic() - self._last_used > self.IDLE_REOPEN:
            self.close()
        if self._conn is None:
            self._conn = HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._conn.request("POST", path, body=body, headers={**self.headers, **(headers or {})})
            response = self._conn.getresponse()
            content = response.read()
        except BaseException:
            self.close()
            raise
        self._last_used = time.monotonic()
        if response.will_close:
            self.close()
        return response.status, content

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Connections:
    """One Connection per thread that asks."""

    def __init__(self, server: Server, api_key: str, timeout: float) -> None:
        self._port, self._api_key, self._timeout = server.port, api_key, timeout
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()

    def mine(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Connection("127.0.0.1", self._port, self._api_key, self._timeout)
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()


# --- preparing milestones (untimed) -------------------------------------------------------


def major(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def call_api(conn: Connection, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        status, content = conn.post(path, json.dumps(body).encode())
    except (OSError, HTTPException) as error:
        raise BenchError(f"preparing: POST {path} got no answer: {type(error).__name__}: {error}") from None
    if status >= 300:
        raise BenchError(f"preparing: POST {path} answered {status}: {content[:500].decode(errors='replace')}")
    payload: dict[str, Any] = json.loads(content)
    return payload


def in_threads(threads: int, jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run the jobs on `threads` threads; results in the jobs' order; the first error is raised."""
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-prepare")
    try:
        return list(executor.map(lambda job: job(), jobs))
    finally:
        # On an error or Ctrl-C, do not wait for the jobs still queued.
        executor.shutdown(wait=False, cancel_futures=True)


def prepare(connections: Connections, run_id: str, count: int, contracts: int) -> list[str]:
    """Open `contracts` contracts (one client-freelancer pair each) and `count` submitted milestones.

    Milestone i belongs to contract i mod `contracts`, so consecutive approvals hit
    different pairs; amounts are random between 50.00 and 2,000.00 USD.
    """
    rng = random.Random(run_id)

    def open_contract(i: int) -> Callable[[], str]:
        body = {
            "client_id": f"cl_bench_{run_id}_{i}",
            "freelancer_id": f"fr_bench_{run_id}_{i}",
            "currency": CURRENCY,
            "title": f"bench contract {i}",
        }
        return lambda: str(call_api(connections.mine(), "/v1/contracts", body)["id"])

    contract_ids = in_threads(PREPARE_THREADS, [open_contract(i) for i in range(contracts)])

    def milestone(i: int) -> Callable[[], str]:
        amount = rng.randint(50_00, 2_000_00)

        def run() -> str:
            conn = connections.mine()
            made = call_api(
                conn,
                f"/v1/contracts/{contract_ids[i % contracts]}/milestones",
                {"title": f"bench milestone {i}", "amount": {"amount": major(amount), "currency": CURRENCY}},
            )
            milestone_id = str(made["id"])
            funded = call_api(conn, f"/v1/milestones/{milestone_id}/fund", {})
            if funded.get("status") != "succeeded":
                raise BenchError(f"preparing: funding {milestone_id} answered {funded}")
            submitted = call_api(conn, f"/v1/milestones/{milestone_id}/submit", {})
            if submitted.get("state") != "submitted":
                raise BenchError(f"preparing: submitting {milestone_id} left it {submitted.get('state')!r}")
            return milestone_id

        return run

    return in_threads(PREPARE_THREADS, [milestone(i) for i in range(count)])


# --- the open-loop load --------------------------------------------------------------------


@dataclass
class Outcome:
    """One approve request.

    Attributes:
        scheduled: when it was due to be sent (perf_counter seconds).
        sent: when a sender thread started it (later than scheduled if all were busy).
        done: when its answer was read (or its error raised).
        status: the HTTP status, or None if no answer came (connection error, timeout).
        error: the exception's name when no answer came.
        released: a 2xx whose milestone is in state released.
        body: the start of the body of a non-2xx answer, or the error's message.
    """

    scheduled: float
    sent: float
    done: float
    status: int | None
    error: str | None = None
    released: bool = False
    body: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def latency(self) -> float:
        return self.done - self.scheduled


@dataclass
class Phase:
    rate: float
    start: float
    outcomes: list[Outcome]

    @property
    def schedule_seconds(self) -> float:
        return len(self.outcomes) / self.rate

    @property
    def last_done(self) -> float:
        return max((o.done for o in self.outcomes), default=self.start)


def approve(conn: Connection, milestone_id: str, scheduled: float, key: str | None) -> Outcome:
    sent = time.perf_counter()
    headers = {"Idempotency-Key": key} if key else None
    try:
        status, content = conn.post(f"/v1/milestones/{milestone_id}/approve", b"{}", headers)
    except Exception as error:  # no answer: a timeout, a reset connection, ...
        return Outcome(scheduled, sent, time.perf_counter(), None, error=type(error).__name__, body=str(error)[:300])
    done = time.perf_counter()
    if 200 <= status < 300:
        return Outcome(scheduled, sent, done, status, released=b'"state":"released"' in content)
    return Outcome(scheduled, sent, done, status, body=content[:500].decode(errors="replace"))


def open_loop(
    connections: Connections, senders: int, milestones: Sequence[str], rate: float, key_prefix: str | None
) -> Phase:
    """Send one approve every 1/rate seconds, whether or not earlier ones have answered.

    Request i is due at start + i/rate; this thread hands it to `senders` threads
    (one keep-alive connection each) at that time without waiting for answers. A
    request that finds every sender busy waits for one; that wait, like any other
    lateness, counts in its latency, which runs from the due time (no coordinated
    omission).
    """
    due: queue.SimpleQueue[tuple[int, float] | None] = queue.SimpleQueue()
    outcomes: list[Outcome | None] = [None] * len(milestones)

    def sender() -> None:
        conn = connections.mine()
        while (job := due.get()) is not None:
            i, scheduled = job
            outcomes[i] = approve(conn, milestones[i], scheduled, f"{key_prefix}-{i}" if key_prefix else None)

    threads = [
        threading.Thread(target=sender, name=f"bench-sender-{n}", daemon=True)
        for n in range(min(senders, len(milestones)))
    ]
    for thread in threads:
        thread.start()
    clock = time.perf_counter
    start = clock() + 0.05
    for i in range(len(milestones)):
        scheduled = start + i / rate
        delay = scheduled - clock()
        if delay > 0:
            time.sleep(delay)
        due.put((i, scheduled))
    for _ in threads:
        due.put(None)
    for thread in threads:
        thread.join()
    return Phase(rate, start, [o for o in outcomes if o is not None])


# --- output ----------------------------------------------------------------------------------


LABEL_WIDTH = 34


def line(label: str, value: str) -> None:
    print(f"  {label:<{LABEL_WIDTH}} {value}", flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def status_counts(outcomes: Sequence[Outcome]) -> str:
    """Counts by HTTP status; requests without one by the client's exception (TimeoutError, ...)."""
    counts = Counter(str(o.status) if o.status is not None else f"no response ({o.error})" for o in outcomes)
    return ", ".join(f"{status}: {n:,}" for status, n in sorted(counts.items())) or "none"


def report_errors(outcomes: Sequence[Outcome], limit: int = 5) -> None:
    """A few distinct error answers, to read what went wrong."""
    failed = [o for o in outcomes if not o.ok]
    seen: set[str] = set()
    for outcome in failed:
        text = f"{outcome.error} {outcome.body}" if outcome.error else f"{outcome.status} {outcome.body}"
        signature = text[:120]
        if signature in seen:
            continue
        seen.add(signature)
        print(f"    e.g. {text}")
        if len(seen) >= limit:
            break


def server_log_findings(text: str) -> tuple[int, list[str]]:
    """Retried transactions and the non-access lines (warnings, errors, tracebacks) of a log slice."""
    retries = text.count("transaction retried")
    notable = [
        row
        for row in text.splitlines()
        if row.strip() and '" 200' not in row and "transaction retried" not in row and "HTTP/1.1" not in row
    ]
    return retries, notable


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="requests per second offered (default 200)")
    parser.add_argument("--seconds", type=float, help="measured seconds (default 20; 5 with --quick)")
    parser.add_argument(
        "--warmup", type=float, help="seconds of the same load before, unmeasured (default 2; 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="a 5-second smoke run")
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="sender threads, one keep-alive connection each: the most requests in flight (default 64)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="client socket timeout of each connect and read (default 30 s)"
    )
    parser.add_argument("--contracts", type=int, default=100, help="client-freelancer pairs (default 100)")
    parser.add_argument(
        "--workers",
        type=int,
        help="`ledger serve --workers N`: server processes (default: serve's, one per CPU core on PostgreSQL)",
    )
    parser.add_argument(
        "--no-idempotency-key", action="store_true", help="send the approvals without an Idempotency-Key header"
    )
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 20.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    counts = [args.contracts, args.connections] + ([] if args.workers is None else [args.workers])
    if min(args.rate, args.seconds, args.timeout) <= 0 or min(counts) < 1 or args.warmup < 0:
        parser.error(
            "--rate, --seconds, --timeout, --contracts, --connections and --workers must be positive,"
            " --warmup not negative"
        )
    return args


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def bench(args: argparse.Namespace, run_id: str, server: Server, api_key: str) -> None:
    warmup_count = math.ceil(args.rate * args.warmup)
    measured_count = math.ceil(args.rate * args.seconds)
    contracts = min(args.contracts, warmup_count + measured_count)
    connections = Connections(server, api_key, args.timeout)
    try:
        began = time.perf_counter()
        milestones = prepare(connections, run_id, warmup_count + measured_count, contracts)
        line(
            "prepared (untimed)",
            f"{len(milestones):,} milestones funded and submitted on {contracts} contracts "
            f"in {time.perf_counter() - began:.1f} s",
        )
        key_prefix = None if args.no_idempotency_key else f"bench-{run_id}-approve"
        if warmup_count:
            warm = open_loop(
                connections, args.connections, milestones[:warmup_count], args.rate, key_prefix and key_prefix + "-w"
            )
            line(f"warm-up ({args.warmup:g} s, unmeasured)", status_counts(warm.outcomes))
        log_start = server.log_size()
        cpu_before = CpuSnapshot.take(server.pid, server.database)
        phase = open_loop(connections, args.connections, milestones[warmup_count:], args.rate, key_prefix)
        cpu_after = CpuSnapshot.take(server.pid, server.database)
    finally:
        connections.close()

    outcomes = phase.outcomes
    ok = sorted(o.latency for o in outcomes if o.ok)
    lag = sorted(o.sent - o.scheduled for o in outcomes)
    window = phase.last_done - phase.start
    print(f"figures (POST /v1/milestones/{{id}}/approve, {args.seconds:g} s measured)")
    line(
        "offered rate",
        f"{args.rate:,.1f} requests/s ({len(outcomes):,} requests due over {phase.schedule_seconds:.1f} s)",
    )
    sent_span = max(o.sent for o in outcomes) - phase.start + 1 / args.rate  # = the schedule when on time
    line("sent", f"{len(outcomes) / sent_span:,.1f} requests/s")
    line(
        "achieved (2xx answered)",
        f"{len(ok) / window:,.1f} requests/s ({len(ok):,} in {window:.1f} s, first due send to last answer)",
    )
    errors = [o for o in outcomes if not o.ok]
    line("responses by status", status_counts(outcomes))
    line("errors by status", f"{len(errors):,} ({status_counts(errors)})" if errors else "0")
    report_errors(outcomes)
    released = sum(o.released for o in outcomes if o.ok)
    line("2xx leaving the milestone released", f"{released:,} of {len(ok):,}")
    if ok:
        p50, p90, p99, top = (percentile(ok, p) for p in (50, 90, 99, 100))
        line("latency of 2xx, ms", f"p50 {ms(p50)}  p90 {ms(p90)}  p99 {ms(p99)}  max {ms(top)}")
        if errors:
            line("", f"(the {len(ok):,} 2xx answers only; the {len(errors):,} errors are left out)")
    else:
        p99 = float("nan")
        line("latency of 2xx, ms", "no 2xx responses")
    line(
        "generator send lag, ms",
        f"p99 {ms(percentile(lag, 99))}  max {ms(lag[-1])} (late sends; counted in the latency)",
    )
    for n, part in enumerate(cpu_usage(cpu_before, cpu_after)):
        line("" if n else "cpu while measured, in cores", part)
    line("cpu per 2xx approval, ms", cpu_per_request(cpu_before, cpu_after, len(ok)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    verdict = "within" if p99 <= GOAL_P99_MS / 1000 else "above"
    comparable = args.rate == GOAL_RATE and cores == GOAL_CORES
    note = f"this run: p99 {ms(p99)} ms at {args.rate:g} requests/s on {cores} cores"
    note += f" - {verdict} the goal" if comparable else " - not the goal's rate and cores: compare with care"
    line("goal (read, never asserted)", f"p99 <= {GOAL_P99_MS:g} ms at {GOAL_RATE:g} requests/s on {GOAL_CORES} cores")
    line("", note)

    retries, notable = server_log_findings(server.log_text(log_start))
    line("transactions retried by the server", f"{retries:,} (from its log)")
    if notable:
        line("server log (not access lines)", f"{len(notable):,} lines, last ones:")
        for row in notable[-40:]:
            print(f"    | {row}")
    if any(o.status is not None and o.status >= 500 for o in outcomes):
        server.keep_log = True


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    run_id = uuid.uuid4().hex[:10]
    pg = Postgres(os.environ.get("LEDGER_BENCH_POSTGRES_URL") or DEFAULT_ADMIN_URL)

    print(f"ledger HTTP benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, run {run_id}")
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
        f"fsync={settings['fsync']}, shared_buffers={settings['shared_buffers']}, "
        f"max_connections={settings['max_connections']})",
    )
    line(
        "run",
        f"{args.rate:g} requests/s for {args.seconds:g} s after {args.warmup:g} s warm-up; "
        f"{args.contracts} contracts; {args.connections} connections; "
        f"{'serve default' if args.workers is None else args.workers} workers; "
        f"Idempotency-Key {'off' if args.no_idempotency_key else 'on'}; client timeout {args.timeout:g} s",
    )

    db_name = f"ledger_bench_http_{run_id}"
    env = {**os.environ, "LEDGER_DATABASE_URL": pg.sqlalchemy_url(db_name), "LEDGER_GATEWAY": "simulated"}
    server: Server | None = None
    created = False
    try:
        pg.create(db_name)
        created = True
        run_ledger(env, "db", "upgrade")
        api_key = run_ledger(env, "keys", "create", "--role", "marketplace").strip().splitlines()[-1]
        server = Server(env, free_port(), db_name, args.workers)
        server.wait_ready(SERVER_START_TIMEOUT)
        workers = server.worker_pids()
        processes = (
            f"supervisor pid {server.pid}, workers {', '.join(map(str, workers))}" if workers else f"pid {server.pid}"
        )
        line("server", f"`ledger serve` {processes} on {server.base_url}, database {db_name}")
        bench(args, run_id, server, api_key)

        print("sanity")
        audit = subprocess.run([ledger_command(), "audit"], env=env, capture_output=True, text=True, check=False)
        line("ledger audit after the load", "ok" if audit.returncode == 0 else f"exit {audit.returncode}")
        if audit.returncode != 0:
            print(audit.stdout + audit.stderr)
        line("load average at end", load_average())
        return 0
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: stopping the server and dropping the database", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
            if server.keep_log:
                print(f"server log kept (5xx answers): {server.log_path}", file=sys.stderr)
            else:
                server.log_path.unlink(missing_ok=True)
        if created:
            try:
                pg.drop(db_name)
            except psycopg.Error as error:
                print(f"could not drop database {db_name}: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
