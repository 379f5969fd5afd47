"""What one HTTP approval costs the server: SQL statements and CPU.

    .venv/bin/python -m bench.approval_cost             # PostgreSQL, 50 approvals
    .venv/bin/python -m bench.approval_cost --sqlite    # the same on a SQLite file
    .venv/bin/python -m bench.approval_cost --list      # and the statements of one approval

In process: the API app (`ledger.api.app.create_app`, simulated gateway) behind
Litestar's TestClient, over a fresh database (PostgreSQL: a scratch database made
on the server of LEDGER_BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/postgres, dropped at the end; SQLite: a
temporary file). It prepares funded, submitted milestones, each on a contract of
its own client-freelancer pair, untimed; approves a few of them to warm up; then
approves the others one at a time, POST /v1/milestones/{id}/approve with `{}` and
an Idempotency-Key, counting the statements that reach the database and the CPU
the server spends. It prints the figures and asserts nothing; see bench/README.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestar.testing import TestClient
from sqlalchemy import Connection, Engine, event

from bench.posting import Postgres
from ledger.api.app import create_app
from ledger.api.keys import create_key
from ledger.bootstrap import Services, connect
from ledger.db.unit_of_work import Database
from ledger.gateway.simulated import SimulatedGateway
from ledger.service import Ledger

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
KINDS = ("BEGIN", "COMMIT", "ROLLBACK", "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "other")
# The goal the figures are read against (never asserted; see README.md).
GOAL_STATEMENTS = 12
GOAL_CPU_MS = 6.0


def kind_of(statement: str) -> str:
    word = statement.split(None, 1)[0].upper() if statement.strip() else ""
    return word if word in KINDS else "other"


@dataclass
class Transaction:
    """The statements of one transaction as the database saw them.

    Attributes:
        autocommit: run on an autocommit connection: no BEGIN or COMMIT is sent.
        statements: in order, BEGIN and COMMIT included when they were sent.
    """

    autocommit: bool
    statements: list[str] = field(default_factory=list)
    closed: bool = False


class StatementLog:
    """Counts what the ledger's engine sends, grouped by transaction, while `on`.

    PostgreSQL: a BEGIN is counted on the engine's `begin` event and a COMMIT on
    its `commit` event, unless the connection is in autocommit (psycopg then sends
    neither). SQLite: the ledger's own `begin` listener sends `BEGIN IMMEDIATE` as
    a statement, which is counted as such; a COMMIT is counted on `commit` after
    one (sqlite3 sends none when no transaction was begun).
    """

    def __init__(self, engine: Engine) -> None:
        self.on = False
        self.transactions: list[Transaction] = []
        self._sqlite = engine.dialect.name == "sqlite"
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)
        event.listen(engine, "before_cursor_execute", self._execute)

    def _is_autocommit(self, conn: Connection) -> bool:
        if self._sqlite:
            return False
        return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"

    def _begin(self, conn: Connection) -> None:
        if not self.on:
            return
        if self._sqlite:
            return  # the BEGIN statement that follows opens the transaction (see _execute)
        autocommit = self._is_autocommit(conn)
        self.transactions.append(Transaction(autocommit))
        if not autocommit:
            self.transactions[-1].statements.append("BEGIN")

    def _end(self, conn: Connection, what: str) -> None:
        if not self.on or not self.transactions:
            return
        current = self.transactions[-1]
        if current.closed:
            return
        current.closed = True
        if not current.autocommit:  # sqlite3 sends COMMIT only inside a transaction it began
            current.statements.append(what)

    def _commit(self, conn: Connection) -> None:
        self._end(conn, "COMMIT")

    def _rollback(self, conn: Connection) -> None:
        self._end(conn, "ROLLBACK")

    def _execute(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if not self.on:
            return
        begins = self._sqlite and kind_of(statement) == "BEGIN"
        if not self.transactions or self.transactions[-1].closed or begins:
            autocommit = not begins if self._sqlite else self._is_autocommit(conn)
            self.transactions.append(Transaction(autocommit))
        self.transactions[-1].statements.append(" ".join(statement.split()))

    def take(self) -> list[Transaction]:
        taken, self.transactions = self.transactions, []
        return taken


class ServerCpu:
    """CPU the server spends on a request: the process's CPU time less the calling
    thread's (the TestClient runs the app in threads of its own: the event loop's
    portal and the worker threads of sync handlers)."""

    def __init__(self) -> None:
        self.caller = threading.get_ident()

    @staticmethod
    def now() -> tuple[float, float]:
        return time.process_time(), time.thread_time()

    @staticmethod
    def spent(before: tuple[float, float], after: tuple[float, float]) -> float:
        return (after[0] - before[0]) - (after[1] - before[1])


@dataclass
class Approval:
    transactions: list[Transaction]
    server_cpu: float
    wall: float


def prepare(client: TestClient[Any], headers: dict[str, str], run: str, count: int) -> list[str]:
    """Funded, submitted milestones, each on a contract between a pair of its own."""
    ids = []
    for i in range(count):
        contract = client.post(
            "/v1/contracts",
            json={"client_id": f"c-{run}-{i}", "freelancer_id": f"f-{run}-{i}", "currency": "USD", "title": "t"},
            headers=headers,
        )
        contract.raise_for_status()
        milestone = client.post(
            f"/v1/contracts/{contract.json()['id']}/milestones",
            json={"title": "work", "amount": {"amount": "100.00", "currency": "USD"}},
            headers=headers,
        )
        milestone.raise_for_status()
        milestone_id = milestone.json()["id"]
        for step in ("fund", "submit"):
            client.post(f"/v1/milestones/{milestone_id}/{step}", json={}, headers=headers).raise_for_status()
        ids.append(milestone_id)
    return ids


def measure(book: Ledger, approvals: int, warmup: int) -> list[Approval]:
    if not isinstance(book.database, Database):
        raise SystemExit("the benchmark counts the statements of a SQL database")
    log = StatementLog(book.database.engine)
    cpu = ServerCpu()
    run = uuid.uuid4().hex[:6]
    _, key = book.transaction(lambda uow: create_key(uow, "marketplace"))
    headers = {"Authorization": f"Bearer {key}"}
    measured: list[Approval] = []
    with TestClient(create_app(Services.over(book, SimulatedGateway()))) as client:
        ids = prepare(client, headers, run, warmup + approvals)
        for i, milestone_id in enumerate(ids):
            log.take()
            log.on = True
            wall, before = time.perf_counter(), cpu.now()
            answer = client.post(
                f"/v1/milestones/{milestone_id}/approve",
                json={},
                headers={**headers, "Idempotency-Key": f"bench-{run}-{i}"},
            )
            after, wall = cpu.now(), time.perf_counter() - wall
            log.on = False
            if answer.status_code != 200 or answer.json().get("state") != "released":
                print(f"approval {i} answered {answer.status_code}: {answer.text[:300]}", file=sys.stderr)
            if i >= warmup:
                measured.append(Approval(log.take(), cpu.spent(before, after), wall))
    return measured


def report(label: str, results: Sequence[Approval], *, listing: bool) -> None:
    n = len(results)
    if not n:
        print(f"{label}: nothing measured")
        return
    total = sum(len(t.statements) for r in results for t in r.transactions) / n
    transactions = sum(len(r.transactions) for r in results) / n
    cpu = sorted(r.server_cpu for r in results)
    wall = sorted(r.wall for r in results)
    print(f"{label}: {n} approvals")
    print(f"  statements per approval: {total:.1f} in {transactions:.1f} transactions (goal <= {GOAL_STATEMENTS})")
    kinds: Counter[str] = Counter(kind_of(s) for r in results for t in r.transactions for s in t.statements)
    print("  by kind: " + ", ".join(f"{k} {kinds[k] / n:.1f}" for k in KINDS if kinds[k]))
    shapes = Counter(len(r.transactions) for r in results)
    common = shapes.most_common(1)[0][0]
    typical = [r for r in results if len(r.transactions) == common]
    print(f"  by transaction (the {len(typical)} approvals with {common} transactions):")
    for position in range(common):
        group = [r.transactions[position] for r in typical]
        count = sum(len(t.statements) for t in group) / len(group)
        k: Counter[str] = Counter(kind_of(s) for t in group for s in t.statements)
        first = next((s for s in group[0].statements if kind_of(s) not in ("BEGIN",)), "")
        mode = "autocommit" if group[0].autocommit else "transaction"
        detail = ", ".join(f"{name} {k[name] / len(group):.1f}" for name in KINDS if k[name])
        print(f"    {position + 1}. {mode:<11} {count:5.1f}  ({detail})  {first[:70]}")
    median = cpu[n // 2] * 1000
    print(
        f"  server cpu per approval: median {median:.2f} ms, mean {sum(cpu) / n * 1000:.2f} ms, "
        f"p90 {cpu[int(n * 0.9)] * 1000:.2f} ms (goal <= {GOAL_CPU_MS:g} ms)"
    )
    print(f"  wall time per approval: median {wall[n // 2] * 1000:.2f} ms")
    if listing:
        print("  the statements of one approval:")
        for number, transaction in enumerate(typical[-1].transactions, 1):
            mode = " (autocommit)" if transaction.autocommit else ""
            print(f"    transaction {number}{mode}:")
            for statement in transaction.statements:
                print(f"      {statement[:160]}")


def run_postgresql(args: argparse.Namespace) -> None:
    server = Postgres(os.environ.get("LEDGER_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL))
    name = f"ledger_bench_approval_{uuid.uuid4().hex[:8]}"
    server.create(name)
    try:
        book = connect(server.sqlalchemy_url(name), migrate=True)
        try:
            report("PostgreSQL", measure(book, args.approvals, args.warmup), listing=args.list)
        finally:
            book.close()
    finally:
        server.drop(name)


def run_sqlite(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as directory:
        book = connect(f"sqlite:///{Path(directory) / 'ledger.db'}", migrate=True)
        try:
            report("SQLite", measure(book, args.approvals, args.warmup), listing=args.list)
        finally:
            book.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--approvals", type=int, default=50, help="approvals measured (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="approvals first, unmeasured (default 5)")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--list", action="store_true", help="print the statements of one approval")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    (run_sqlite if args.sqlite else run_postgresql)(args)


if __name__ == "__main__":
    main()
