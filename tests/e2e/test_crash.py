"""A real `ledger serve` killed with SIGKILL, again and again, while clients approve milestones.

The server runs as its own process on PostgreSQL with the simulated provider, whose
books are committed on their own and survive the kills. Clients approve funded,
submitted milestones concurrently (all that is held, part of it, or more: a bonus),
each approval with its own Idempotency-Key, and retry the same key and body on
connection errors, 5xx and 409 `request-in-progress` until they get a final answer.
Meanwhile the server is killed at random moments and started again. The law: every
approval gets its final answer, no Idempotency-Key is left in progress, each
milestone's money moved exactly once (what was approved, bonuses included, as that
many payments), every payment order is final, and the provider's books equal the
ledger's provider account (`ledger audit`, `provider_matches_ledger` without notes).

Two leases decide how long a crash holds things up. An Idempotency-Key claimed by a
killed server is taken over by a retry after the request timeout plus the lease
margin: the server runs with a 2 s timeout and a 1 s margin. A payment order a killed
server was sending stays leased to it for `ledger.escrow.orders.LEASE` (5 minutes)
before `ledger tick` sends it again; the test stands in for those minutes passing by
ending the leases held by the processes it killed (and only those), then runs
`ledger tick`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import text

from ledger.api.keys import create_key
from ledger.bootstrap import connect
from ledger.db.provider_books import DatabaseBooks
from ledger.gateway.simulated import SimulatedGateway
from ledger.service import Ledger
from tests.conftest import CONCURRENCY_REPORT, postgres_admin

ROOT = Path(__file__).resolve().parents[2]
REQUEST_TIMEOUT_SECONDS = 2
LEASE_MARGIN = "1s"
KILLS = 12
#: The kills stop after this long even if fewer than KILLS were made (a loaded machine
#: starts each server more slowly; on a quiet one KILLS kills take about 16 s).
KILL_PHASE_SECONDS = 45.0
UPTIME_SECONDS = (0.3, 1.0)
#: Over how long the clients spread their approvals (about the time KILLS kills take).
TRAFFIC_SECONDS = 16.0
CLIENTS = 8
MILESTONES = 32
MILESTONE_AMOUNT = 100_00
#: Approvals of one milestone, in order: None approves all that is held; an amount
#: (minor units) approves that much, a bonus when it is more than is held.
PLANS: dict[str, list[int | None]] = {
    "full": [None],
    "partial": [30_00, 20_00],
    "bonus": [115_00],
    "partial then bonus": [40_00, 75_00],
    "partial then full": [25_00, None],
}
#: What each plan leaves: released in total, payments, the milestone's state, what it holds.
EXPECTED: dict[str, tuple[int, int, str, int]] = {
    "full": (100_00, 1, "released", 0),
    "partial": (50_00, 2, "submitted", 50_00),
    "bonus": (115_00, 2, "released", 0),
    "partial then bonus": (115_00, 3, "released", 0),
    "partial then full": (100_00, 2, "released", 0),
}


def usd(minor: int) -> dict[str, str]:
    return {"amount": f"{minor // 100}.{minor % 100:02d}", "currency": "USD"}


# --- the server process -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ledger_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


#: `ledger serve` as the console script runs it (`ledger.cli.main`), its imports made
#: ahead: it waits for a line on stdin before it starts, so a restart after a kill
#: takes the app's start-up, not the interpreter's.
STANDBY = (
    "import sys, uvicorn, ledger.cli, ledger.api.app, ledger.gateway.simulated, ledger.db.provider_books; "
    "sys.stdin.readline(); sys.exit(ledger.cli.main(sys.argv[1:]))"
)


class Server:
    """`ledger serve` on one port, started, killed with SIGKILL and started again; the
    next process waits, imported, while the current one serves."""

    def __init__(self, env: dict[str, str], port: int, log: IO[bytes]) -> None:
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        #: `hostname:pid` of each killed server: the owner name its dispatcher leased orders under.
        self.killed: list[str] = []
        self.standby = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        address = ["--host", "127.0.0.1", "--port", str(self.port)]
        # One process: the test kills it and names the leases it held by its pid.
        command = [sys.executable, "-c", STANDBY, "serve", *address, "--workers", "1"]
        return subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT
        )

    def start(self) -> None:
        process = self.process = self.standby
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
        self.standby = self._spawn()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"ledger serve exited with {process.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        pytest.fail(f"ledger serve did not answer within 20 s; see {self.log.name}")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.killed.append(f"{socket.gethostname()}:{self.process.pid}")

    def stop(self) -> None:
        for process in (self.process, self.standby):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def crash_database() -> Iterator[str]:
    """A fresh PostgreSQL database of its own, migrated by `ledger db upgrade`; dropped at the end."""
    admin = postgres_admin()
    name = f"ledger_crash_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- the clients ----------------------------------------------------------------------------------


@dataclass
class Traffic:
    """What the clients sent and why they sent it again (shared by the client threads)."""

    sent: int = 0
    down: int = 0  # no connection: the server was down
    cut: int = 0  # the connection broke: the server was killed mid-request
    server_errors: int = 0  # 5xx, such as 503 request-timed-out
    in_progress: int = 0  # 409 request-in-progress: the key's claim is held
    in_flight: int = 0  # requests sent and not answered yet
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def retries(self) -> int:
        return self.down + self.cut + self.server_errors + self.in_progress

    def count(self, what: str, by: int = 1) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + by)


def until_answered(
    http: httpx.Client, path: str, body: object, key: str, traffic: Traffic, deadline: float
) -> httpx.Response:
    """POST with `key` until the answer is final: the same key and body every time."""
    while time.monotonic() < deadline:
        traffic.count("sent")
        traffic.count("in_flight")
        try:
            if body is None:
                response = http.post(path, headers={"Idempotency-Key": key})
            else:
                response = http.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.ConnectError:
            traffic.count("down")
        except httpx.TransportError:
            traffic.count("cut")
        else:
            if response.status_code >= 500:
                traffic.count("server_errors")
            elif response.status_code == 409 and response.json().get("type", "").endswith(":request-in-progress"):
                traffic.count("in_progress")
            else:
                return response
        finally:
            traffic.count("in_flight", -1)
        time.sleep(random.uniform(0.05, 0.15))
    raise AssertionError(f"no final answer to POST {path} with Idempotency-Key {key} in time")


def run_clients(
    work: list[tuple[str, object, str]], client: httpx.Client, traffic: Traffic, deadline: float
) -> list[tuple[str, httpx.Response]]:
    """Send each (path, body, key) until answered, CLIENTS at a time; the answers in order."""
    answers: list[tuple[str, httpx.Response] | None] = [None] * len(work)
    queue = list(enumerate(work))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                index, (path, body, key) = queue.pop(0)
            answers[index] = (path, until_answered(client, path, body, key, traffic, deadline))

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [answer for answer in answers if answer is not None]


def final(answer: tuple[str, httpx.Response], status: int = 200) -> Any:
    path, response = answer
    assert response.status_code == status, f"POST {path}: {response.status_code} {response.text}"
    return response.json()


def bonuses(plan: str) -> int:
    """How many of the plan's approvals ask for more than is held then."""
    held, count = MILESTONE_AMOUNT, 0
    for amount in PLANS[plan]:
        if amount is not None and amount > held:
            count += 1
        held = 0 if amount is None or amount >= held else held - amount
    return count


@dataclass
class ApprovalClient:
    """Approves its milestones, one approval after another, paced across the kill phase:
    its k-th approval is sent no earlier than a random moment in the k-th of its `interval`s
    after `start` (later when retries held it up)."""

    http: httpx.Client
    milestones: list[tuple[str, str]]  # (milestone id, plan)
    traffic: Traffic
    start: float
    interval: float
    deadline: float
    answers: list[tuple[str, int, httpx.Response]] = field(default_factory=list)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            steps = [(m, step, amount) for m, plan in self.milestones for step, amount in enumerate(PLANS[plan])]
            for k, (milestone_id, step, amount) in enumerate(steps):
                time.sleep(max(0.0, self.start + (k + random.random()) * self.interval - time.monotonic()))
                body = None if amount is None else {"amount": usd(amount)}
                path = f"/v1/milestones/{milestone_id}/approve"
                key = f"approve-{milestone_id}-{step}"
                answer = until_answered(self.http, path, body, key, self.traffic, self.deadline)
                self.answers.append((milestone_id, step, answer))
        except BaseException as error:  # reported by the test
            self.error = error


# --- the test ---------------------------------------------------------------------------------------


def test_a_server_killed_mid_traffic_moves_each_approval_s_money_once(crash_database: str, tmp_path: Path) -> None:
    started = time.monotonic()
    url = crash_database
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LEDGER_DATABASE_URL": url,
        "LEDGER_GATEWAY": "simulated",
        "LEDGER_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_SECONDS),
        "LEDGER_IDEMPOTENCY_LEASE_MARGIN": LEASE_MARGIN,
    }
    log = (tmp_path / "serve.log").open("ab")
    server = Server(env, free_port(), log)  # its first process imports while the database is migrated
    http = httpx.Client(base_url=server.url, timeout=10, limits=httpx.Limits(max_connections=CLIENTS * 2))
    traffic = Traffic()
    try:
        upgraded = ledger_cli(["db", "upgrade"], env)
        assert upgraded.returncode == 0, upgraded.stderr
        book = connect(url)
        _, api_key = book.transaction(lambda uow: create_key(uow, "marketplace"))
        http.headers["Authorization"] = f"Bearer {api_key}"
        server.start()
        # Funded, submitted milestones, two per contract, before any kill.
        setup_deadline = time.monotonic() + 30
        contracts = [
            final(answer, 201)["id"]
            for answer in run_clients(
                [
                    (
                        "/v1/contracts",
                        {
                            "client_id": f"cl_{i % 4}",
                            "freelancer_id": f"fr_{i % 3}",
                            "currency": "USD",
                            "title": "Work",
                        },
                        f"contract-{i}",
                    )
                    for i in range(MILESTONES // 2)
                ],
                http,
                traffic,
                setup_deadline,
            )
        ]
        milestone_ids = [
            final(answer, 201)["id"]
            for answer in run_clients(
                [
                    (
                        f"/v1/contracts/{contracts[i // 2]}/milestones",
                        {"title": f"Part {i % 2}", "amount": usd(MILESTONE_AMOUNT)},
                        f"milestone-{i}",
                    )
                    for i in range(MILESTONES)
                ],
                http,
                traffic,
                setup_deadline,
            )
        ]
        for answer in run_clients(
            [(f"/v1/milestones/{m}/fund", None, f"fund-{m}") for m in milestone_ids], http, traffic, setup_deadline
        ):
            assert final(answer)["milestone"]["state"] == "funded"
        for answer in run_clients(
            [(f"/v1/milestones/{m}/submit", None, f"submit-{m}") for m in milestone_ids], http, traffic, setup_deadline
        ):
            assert final(answer)["state"] == "submitted"
        setup_requests, setup_done = traffic.sent, time.monotonic()
        traffic = Traffic()

        # Approvals from CLIENTS threads while the server is killed and started again.
        plans = list(PLANS)
        assigned = [(m, plans[i % len(plans)]) for i, m in enumerate(milestone_ids)]
        steps_per_client = sum(len(PLANS[plan]) for _, plan in assigned) / CLIENTS
        clients = [
            ApprovalClient(
                http,
                assigned[i::CLIENTS],
                traffic,
                start=time.monotonic(),
                interval=TRAFFIC_SECONDS / steps_per_client,
                deadline=time.monotonic() + KILL_PHASE_SECONDS + 30,
            )
            for i in range(CLIENTS)
        ]
        threads = [threading.Thread(target=client.run, daemon=True) for client in clients]
        for thread in threads:
            thread.start()
        kills_until = time.monotonic() + KILL_PHASE_SECONDS
        while len(server.killed) < KILLS and time.monotonic() < kills_until:
            time.sleep(random.uniform(*UPTIME_SECONDS))
            # Kill while a request is being served (waiting at most a second for one), so
            # kills cut requests rather than land between them.
            busy_until = time.monotonic() + 1.0
            while traffic.in_flight == 0 and time.monotonic() < busy_until:
                time.sleep(0.001)
            server.kill()
            server.start()

        # The last start stays up. Orders the killed servers were sending are due again
        # once their leases end; `ledger tick` sends them (and advances no clock).
        kills_done = time.monotonic()
        cut_short = end_dispatch_leases(book, server.killed)
        ticked = ledger_cli(["tick"], env)
        assert ticked.returncode == 0, ticked.stderr
        for thread, client in zip(threads, clients, strict=True):
            thread.join(timeout=max(1.0, client.deadline - time.monotonic()))
            assert not thread.is_alive(), "a client got no final answer in time"
            assert client.error is None, repr(client.error)
    finally:
        http.close()
        server.stop()
        log.close()

    # Every approval got its final answer: 200.
    answers = [answer for client in clients for answer in client.answers]
    assert len(answers) == sum(len(PLANS[plan]) for _, plan in assigned)
    for milestone_id, step, response in answers:
        assert response.status_code == 200, f"{milestone_id} approval {step}: {response.status_code} {response.text}"

    # No Idempotency-Key is left in progress; every payment order is final.
    def read(uow: Any) -> dict[str, Any]:
        connection = uow.connection
        return {
            "taken over": connection.execute(
                text("SELECT count(*) FROM idempotent_requests WHERE claimed_at > created_at")
            ).scalar_one(),
            "in progress": connection.execute(
                text("SELECT key, claimed_at FROM idempotent_requests WHERE status IS NULL")
            ).all(),
            "open orders": connection.execute(
                text(
                    "SELECT id, kind, state FROM payment_orders WHERE state NOT IN ('succeeded', 'failed', 'cancelled')"
                )
            ).all(),
            "payments": connection.execute(
                text("SELECT milestone_id, kind, gross FROM payments ORDER BY released_at, id")
            ).all(),
            "milestones": {
                m: (found.state.value, found.held) for m in milestone_ids for found in [uow.escrow.milestone(m)]
            },
        }

    found = book.transaction(read, read_only=True)
    assert found["in progress"] == []
    assert found["open orders"] == []

    # Each milestone's money moved once: what was approved, bonuses included, as that many payments.
    released: dict[str, list[int]] = {m: [] for m in milestone_ids}
    for row in found["payments"]:
        released[row.milestone_id].append(row.gross)
    for milestone_id, plan in assigned:
        total, count, state, held = EXPECTED[plan]
        assert (sum(released[milestone_id]), len(released[milestone_id])) == (total, count), (milestone_id, plan)
        assert found["milestones"][milestone_id] == (state, held), (milestone_id, plan)

    # The provider charged each funding and each bonus once, and its books equal the ledger's.
    provider = SimulatedGateway(DatabaseBooks(url))
    charges: dict[str, int] = {}
    for record in provider.records():
        if record.kind == "charge" and record.status == "succeeded":
            charges[record.metadata["milestone"]] = charges.get(record.metadata["milestone"], 0) + 1
    for milestone_id, plan in assigned:
        assert charges.get(milestone_id) == 1 + bonuses(plan), (milestone_id, plan)
    moved = sum(m.amount for m in provider.movements() if m.currency == "USD")
    assert moved == book.balance("assets:psp:simulated", "USD")
    audited = ledger_cli(["audit", "--json"], env)
    report = json.loads(audited.stdout)
    assert audited.returncode == 0 and report["ok"], audited.stdout
    [provider_check] = [check for check in report["checks"] if check["name"] == "provider_matches_ledger"]
    assert provider_check["ok"] and not provider_check.get("notes"), provider_check
    book.close()

    assert len(server.killed) >= 10
    assert traffic.cut + found["taken over"] > 0, "no kill hit a request"
    CONCURRENCY_REPORT.append(
        f"ledger serve killed {len(server.killed)} times under {CLIENTS} clients approving {MILESTONES} milestones: "
        f"{len(answers)} approvals, {traffic.sent} requests sent, {traffic.retries} retries "
        f"({traffic.down} server down, {traffic.cut} cut by a kill, {traffic.server_errors} 5xx, "
        f"{traffic.in_progress} in progress), {found['taken over']} keys taken over after their lease, "
        f"{cut_short} dispatch leases of killed servers ended; {setup_requests} setup requests; "
        f"{time.monotonic() - started:.1f} s (setup {setup_done - started:.1f} s, "
        f"kills {kills_done - setup_done:.1f} s, recovery and checks {time.monotonic() - kills_done:.1f} s)"
    )


def end_dispatch_leases(book: Ledger, owners: list[str]) -> int:
    """End the leases on payment orders held by the killed servers' dispatchers (they are
    dead), as their 5 minutes running out would; return how many there were."""
    if not owners:
        return 0
    now = datetime.now(UTC)

    def end(uow: Any) -> int:
        result = uow.connection.execute(
            text(
                "UPDATE payment_orders SET lease_until = :past"
                " WHERE lease_owner = ANY(:owners) AND lease_until > :now"
                " AND state NOT IN ('succeeded', 'failed', 'cancelled')"
            ),
            {"past": now - timedelta(seconds=1), "now": now, "owners": owners},
        )
        count: int = result.rowcount
        return count

    return book.transaction(end)
