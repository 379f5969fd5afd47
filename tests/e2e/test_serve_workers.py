"""`ledger serve --workers 2` on PostgreSQL: two server processes behind one port.

The server runs as a subprocess (uvicorn's supervisor and its two workers) on a fresh
database migrated with `ledger db upgrade`, with the simulated provider and a key
from `ledger keys create`. Which worker answers a connection is read from /proc
(the worker holding the connection's socket), not from the API. Milestones are
funded and approved concurrently through both workers, each request sent twice at
once with one Idempotency-Key, on a connection to each worker. The law: both copies
get the one answer, each milestone is funded and released once, and `ledger audit`
passes. SIGTERM to the supervisor stops it and both workers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from typing import IO, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.conftest import postgres_admin

pytestmark = pytest.mark.postgresql_only

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
MILESTONES = 6
#: Pairs of connections (one to each worker) sending the same request at once.
PAIRS = 3
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ledger_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


# --- processes and sockets, from /proc ------------------------------------------------------------


def worker_pids(parent: int) -> list[int]:
    """The uvicorn workers of `parent`: its children started by multiprocessing's spawn
    (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return sorted(found)


def _hex_address(port: int) -> str:
    return f"0100007F:{port:04X}"  # 127.0.0.1, as /proc/net/tcp writes it


def serving_pid(client_port: int, server_port: int, pids: list[int]) -> int | None:
    """The process among `pids` holding the server's end of the connection from `client_port`."""
    inode = None
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        established = fields[3] == "01"
        if established and fields[1] == _hex_address(server_port) and fields[2] == _hex_address(client_port):
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


# --- the client -------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection, and the worker that accepted it."""

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.conn = HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        self.worker: int | None = None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = None) -> Any:
        headers = {**self.headers, **({"Idempotency-Key": key} if key else {})}
        self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def text(self, path: str) -> str:
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        assert response.status == 200, response.status
        return response.read().decode()

    def find_worker(self, pids: list[int]) -> int | None:
        self.request("GET", "/health/live")  # accepted and answered: the connection is a worker's now
        client_port = self.conn.sock.getsockname()[1]
        self.worker = serving_pid(client_port, self.port, pids)
        return self.worker

    def close(self) -> None:
        self.conn.close()


def settled(client: Client, method: str, path: str, body: dict[str, Any], key: str) -> tuple[int, Any]:
    """Send until the answer is final: a 409 request-in-progress means the other copy runs."""
    deadline = time.monotonic() + 30
    while True:
        status, answer = client.request(method, path, body, key)
        in_progress = status == 409 and "request-in-progress" in str(answer.get("type", ""))
        if not in_progress or time.monotonic() > deadline:
            return status, answer
        time.sleep(0.05)


def health_checks_counted(exposition: str) -> float:
    """`ledger_http_requests_total` of GET /health/live answered 200, from a scrape."""
    counted = [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "ledger_http_requests_total"
        and sample.labels == {"method": "GET", "route": "/health/live", "status": "200"}
    ]
    return sum(counted)


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def workers_database() -> Iterator[str]:
    """A fresh PostgreSQL database of its own (migrated by the test); dropped at the end."""
    admin = postgres_admin()
    name = f"ledger_workers_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_server(env: dict[str, str], port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    # Its own session, so that the finally below can end the supervisor and its workers together.
    address = ["--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "serve", *address, "--workers", str(WORKERS)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until(condition: Callable[[], bool], what: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"ledger serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} within {START_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


# --- the test ---------------------------------------------------------------------------------------


def test_two_workers_serve_concurrent_writes_once_each_and_stop_on_sigterm(
    workers_database: str, tmp_path: Path
) -> None:
    env = {**os.environ, "LEDGER_DATABASE_URL": workers_database, "LEDGER_GATEWAY": "simulated"}
    upgraded = ledger_cli(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr

    port = free_port()
    log_path = tmp_path / "serve.log"
    clients: list[Client] = []
    with log_path.open("wb") as log:
        server = start_server(env, port, log)
    try:
        created = ledger_cli(["keys", "create", "--role", "marketplace"], env)  # while the workers start
        assert created.returncode == 0, created.stderr
        api_key = created.stdout.strip().splitlines()[-1]
        wait_until(
            lambda: log_path.read_text().count("Application startup complete.") == WORKERS,
            f"{WORKERS} workers did not start",
            server,
            log_path,
        )
        pids = worker_pids(server.pid)
        assert len(pids) == WORKERS, pids

        # Connections until each worker holds PAIRS of them (the kernel picks the worker).
        by_worker: dict[int, list[Client]] = {pid: [] for pid in pids}
        for _ in range(100):
            if all(len(held) >= PAIRS for held in by_worker.values()):
                break
            client = Client(port, api_key)
            clients.append(client)
            worker = client.find_worker(pids)
            assert worker in by_worker, f"connection from port {client.conn.sock.getsockname()[1]} held by none"
            by_worker[worker].append(client)
        assert all(len(held) >= PAIRS for held in by_worker.values()), {p: len(c) for p, c in by_worker.items()}
        first, second = (by_worker[pid] for pid in pids)
        pairs = list(zip(first[:PAIRS], second[:PAIRS], strict=True))

        setup = first[0]
        status, contract = setup.request(
            "POST",
            "/v1/contracts",
            {"client_id": "cl_workers", "freelancer_id": "fr_workers", "currency": "USD", "title": "two workers"},
            key="contract",
        )
        assert status == 201, contract
        milestones = []
        for i in range(MILESTONES):
            status, made = setup.request(
                "POST",
                f"/v1/contracts/{contract['id']}/milestones",
                {"title": f"milestone {i}", "amount": {"amount": f"{100 + i}.00", "currency": "USD"}},
                key=f"milestone-{i}",
            )
            assert status == 201, made
            milestones.append(made["id"])

        def twice_at_once(action: str) -> None:
            """Each milestone's `action` sent at once on a connection to each worker, one key."""
            pair_locks = [threading.Lock() for _ in pairs]

            def send(i: int) -> None:
                path, key = f"/v1/milestones/{milestones[i]}/{action}", f"{action}-{milestones[i]}"
                with pair_locks[i % PAIRS]:
                    one, other = pairs[i % PAIRS]
                    together = threading.Barrier(2)

                    def copy(client: Client) -> tuple[int, Any]:
                        together.wait()
                        return settled(client, "POST", path, {}, key)

                    with ThreadPoolExecutor(2) as both:
                        answers = list(both.map(copy, (one, other)))
                assert answers[0] == answers[1], answers
                assert answers[0][0] == 200, answers[0]

            with ThreadPoolExecutor(PAIRS) as pool:
                list(pool.map(send, range(MILESTONES)))

        twice_at_once("fund")
        for i, milestone in enumerate(milestones):
            status, submitted = pairs[i % PAIRS][i % 2].request(
                "POST", f"/v1/milestones/{milestone}/submit", {}, key=f"submit-{milestone}"
            )
            assert status == 200 and submitted["state"] == "submitted", submitted
        twice_at_once("approve")

        for milestone in milestones:
            status, read = setup.request("GET", f"/v1/milestones/{milestone}")
            assert status == 200 and read["state"] == "released", read
        # Each connection was placed with one GET /health/live, spread over both
        # workers: a scrape of either counts them all (prometheus_client's multiprocess
        # mode, which `serve --workers` sets up).
        for scraped in (first[0], second[0]):
            assert health_checks_counted(scraped.text("/metrics")) == len(clients)
        engine = create_engine(workers_database)
        try:
            with engine.connect() as connection:
                rows = connection.execute(text("SELECT kind, count(*) FROM entries GROUP BY kind"))
                kinds = {str(kind): int(count) for kind, count in rows}
                payments = connection.execute(text("SELECT count(*) FROM payments")).scalar_one()
        finally:
            engine.dispose()
        assert kinds.get("escrow.fund") == MILESTONES and kinds.get("escrow.release") == MILESTONES, kinds
        assert payments == MILESTONES
        audit = ledger_cli(["audit"], env)
        assert audit.returncode == 0, audit.stdout + audit.stderr

        for client in clients:
            client.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, log_path.read_text()[-3000:]
        assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()], "a worker outlived its supervisor"
    finally:
        for client in clients:
            client.close()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
