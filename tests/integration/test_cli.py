"""The `ledger` command: one-line errors and non-zero exits; reads for operators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import text

from ledger import AccountSpec, AccountType, EntryRequest, FixedClock, credit, debit
from ledger.api.idempotency import claim_lease
from ledger.bootstrap import connect
from ledger.cli import APP_FACTORY, cpu_cores, main
from ledger.db.unit_of_work import UnitOfWork
from ledger.invoices import statements
from ledger.money import format_amount


def ledger_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_fresh_directory_needs_db_upgrade_first(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    refused = ledger_cli(["audit"], tmp_path, env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "run `ledger db upgrade`" in refused.stderr
    assert ledger_cli(["db", "upgrade"], tmp_path, env).returncode == 0
    assert (tmp_path / "ledger.sqlite3").exists()  # the embedded default
    audited = ledger_cli(["audit"], tmp_path, env)
    assert audited.returncode == 0, audited.stderr
    assert "all invariants hold" in audited.stdout
    current = ledger_cli(["db", "current"], tmp_path, env)
    assert "up to date" in current.stdout


def test_bad_input_gets_one_line_and_exit_2(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", fresh_database_url)
    for args, message in [
        (["balance", "assets:nope", "USD"], "no account assets:nope in USD"),
        (["balance", "assets:nope", "ZZZ"], "unknown currency"),
        (["balance", "a", "USD", "--as-of", "2026-01-01T00:00:00"], "no UTC offset"),
        (["frobnicate"], "invalid choice"),
        (["serve", "--workers", "0"], "--workers must be a whole number"),
        (["serve", "--workers", "-2"], "--workers must be a whole number"),
        (["serve", "--workers", "two"], "--workers must be a whole number"),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("ledger: error: ") and message in err and err.count("\n") == 1


def test_serve_runs_a_process_per_core_on_postgresql_and_one_on_sqlite(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append((app, options)))
    # Not the app itself: building a Litestar app sets up the process's logging.
    one_process_app = object()
    monkeypatch.setattr("ledger.cli.create_app", lambda services: one_process_app)
    monkeypatch.setenv("LEDGER_DATABASE_URL", fresh_database_url)
    sqlite = fresh_database_url.startswith("sqlite")
    if sqlite:
        # Refused: one writer at a time; other processes would answer SQLITE_BUSY.
        assert main(["serve", "--workers", "2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ledger: error: --workers 2 needs PostgreSQL") and err.count("\n") == 1
        assert not served
    assert main(["serve", "--workers", "1"]) == 0
    app, options = served.pop()
    assert app is one_process_app and "workers" not in options  # one process, over the services built here
    assert main(["serve"]) == 0
    app, options = served.pop()
    if sqlite or cpu_cores() == 1:
        assert app is one_process_app and "workers" not in options
    else:
        assert (app, options["factory"], options["workers"]) == (APP_FACTORY, True, cpu_cores())
    if not sqlite:
        assert main(["serve", "--workers", "3", "--port", "8123"]) == 0
        app, options = served.pop()
        assert (app, options["factory"], options["workers"], options["port"]) == (APP_FACTORY, True, 3, 8123)


def funded_escrow(url: str, amount: int, clock: FixedClock | None = None) -> None:
    """One escrow funding of `amount` USD cents, posted at the clock's time."""
    book = connect(url, clock=clock)
    book.open_account(AccountSpec("assets:psp:stripe", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("liabilities:escrow:ms_1", AccountType.LIABILITY, "USD", floor=0))
    book.post(
        EntryRequest(
            "k",
            "escrow.fund",
            (debit("assets:psp:stripe", amount, "USD"), credit("liabilities:escrow:ms_1", amount, "USD")),
        )
    )
    book.close()


def test_balance_and_journal_read_the_ledger(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    funded_escrow(fresh_database_url, 123456)
    monkeypatch.setenv("LEDGER_DATABASE_URL", fresh_database_url)
    assert main(["balance", "liabilities:escrow:ms_1", "usd"]) == 0
    assert capsys.readouterr().out == "1234.56 USD\n"
    assert main(["balance", "liabilities:escrow:ms_1", "USD", "--as-of", "2000-01-01T00:00:00Z"]) == 0
    assert capsys.readouterr().out == "0.00 USD\n"
    assert main(["journal"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["kind"] == "escrow.fund"
    assert line["actor"] == "system"  # posted through the library, naming no actor
    assert line["postings"][0] == {
        "account": "assets:psp:stripe",
        "side": "debit",
        "amount": "1234.56",
        "currency": "USD",
    }


def test_statement_streams_csv_and_refuses_a_pdf_above_its_line_limit(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    book = connect(fresh_database_url)
    book.open_account(AccountSpec("assets:psp:stripe", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("liabilities:escrow:ms_1", AccountType.LIABILITY, "USD", floor=0))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    book.post_batch(
        [
            EntryRequest(
                f"k{n}",
                "escrow.fund",
                (debit("assets:psp:stripe", 100 + n, "USD"), credit("liabilities:escrow:ms_1", 100 + n, "USD")),
                effective_at=start + timedelta(hours=n),
            )
            for n in range(1_500)
        ]
    )
    book.close()
    monkeypatch.setenv("LEDGER_DATABASE_URL", fresh_database_url)
    monkeypatch.setattr(statements, "CHUNK_CHARS", 1024)  # many chunks
    monkeypatch.setattr(statements, "MAX_PDF_LINES", 1_000)
    period = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-04-01T00:00:00Z"]

    assert main(["statement", "liabilities:escrow:ms_1", "USD", *period]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == ",".join(statements.CSV_COLUMNS)
    assert len(rows) == 1 + 1_500
    assert rows[-1].endswith(f",USD,{format_amount(sum(100 + n for n in range(1_500)), 'USD')}")

    pdf = tmp_path / "statement.pdf"
    assert main(["statement", "liabilities:escrow:ms_1", "USD", *period, "--pdf", str(pdf)]) == 2
    err = capsys.readouterr().err
    assert "1,500 lines, more than the PDF limit of 1,000; ask for format=csv" in err and not pdf.exists()


def test_idempotency_prune_removes_keys_older_than_the_retention_and_says_how_many(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    book = connect(fresh_database_url)
    lease = claim_lease(30)
    for key, age, finished in [
        ("finished 8 days ago", timedelta(days=8), True),
        ("finished 2 days ago", timedelta(days=2), True),
        ("abandoned 9 days ago", timedelta(days=9), False),
        ("in progress for 10 s", timedelta(seconds=10), False),
    ]:

        def record(uow: UnitOfWork, key: str = key, at: datetime = now - age, finished: bool = finished) -> None:
            uow.api.claim_request(key, "key_1", "POST", "/v1/contracts", "h", now=at, lease=lease)
            if finished:
                uow.api.finish_request(key, "key_1", at, 201, "application/json", "{}")

        book.transaction(record)
    monkeypatch.setenv("LEDGER_DATABASE_URL", fresh_database_url)

    assert main(["idempotency", "prune", "--now", "2026-03-01T12:00:00Z"]) == 0
    assert capsys.readouterr().out == (
        "removed 2 idempotency keys last used before 2026-02-22T12:00:00+00:00 (1 finished, 1 abandoned in progress)\n"
    )
    assert main(["idempotency", "prune", "--now", "2026-03-01T12:00:00Z"]) == 0
    assert capsys.readouterr().out.startswith("removed 0 idempotency keys")

    monkeypatch.setenv("LEDGER_IDEMPOTENCY_RETENTION", "1d")
    assert main(["idempotency", "prune", "--now", "2026-03-01T12:00:00Z"]) == 0
    assert "(1 finished, 0 abandoned in progress)" in capsys.readouterr().out
    assert main(["idempotency", "prune", "--now", "2026-03-01T12:00:00Z", "--older-than", "1s"]) == 0
    assert capsys.readouterr().out.startswith("removed 0 idempotency keys")  # the young claim holds its lease
    remaining = book.transaction(lambda uow: uow.connection.execute(text("SELECT key FROM idempotent_requests")).all())
    assert [row.key for row in remaining] == ["in progress for 10 s"]
    book.close()


def test_idempotency_prune_refuses_bad_input_with_one_line_and_exit_2(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", fresh_database_url)
    for args, message in [
        (["idempotency", "prune", "--older-than", "soon"], "is not a duration"),
        (["idempotency", "prune", "--older-than", "0d"], "is not a duration"),
        (["idempotency", "prune", "--now", "2026-03-01T12:00:00"], "no UTC offset"),
        (["idempotency"], "required"),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("ledger: error: ") and message in err and err.count("\n") == 1
    monkeypatch.setenv("LEDGER_IDEMPOTENCY_RETENTION", "a week")
    assert main(["idempotency", "prune"]) == 2
    assert "LEDGER_IDEMPOTENCY_RETENTION" in capsys.readouterr().err


def test_the_demo_on_the_simulated_provider_passes_the_audit_against_the_provider_books(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"} | {"LEDGER_GATEWAY": "simulated"}
    assert ledger_cli(["db", "upgrade"], tmp_path, env).returncode == 0
    assert ledger_cli(["demo", "--if-empty"], tmp_path, env).returncode == 0
    audited = ledger_cli(["audit", "--json"], tmp_path, env)
    assert audited.returncode == 0, audited.stdout
    [books] = [c for c in json.loads(audited.stdout)["checks"] if c["name"] == "provider_matches_ledger"]
    assert books["ok"] and "notes" not in books  # it applied, and everything the provider moved is booked
    journal = [
        json.loads(line) for line in ledger_cli(["journal"], tmp_path, env).stdout.splitlines() if line[0] == "{"
    ]
    moments = {entry["kind"]: entry["effective_at"] for entry in journal}
    # The demo's clock moved: the payout comes after the money became available, by now.
    assert moments["escrow.available"] <= moments["payout.request"] <= datetime.now(UTC).isoformat()
    assert [e["effective_at"] for e in journal] == sorted(e["effective_at"] for e in journal)
    worker = ledger_cli(["worker", "--rounds", "1", "--interval", "0.1"], tmp_path, env)
    assert worker.returncode == 0, worker.stderr
    logged = [json.loads(line) for line in worker.stderr.splitlines()]  # JSON lines by default
    messages = {(line["logger"], line["message"]) for line in logged}
    assert ("ledger.worker", "audit: all invariants hold") in messages  # none was stored: due at once
    assert any(line["message"].startswith("worker round: ") for line in logged)
    listed = json.loads(ledger_cli(["orders", "list", "--json"], tmp_path, env).stdout)
    assert {o["state"] for o in listed["orders"]} == {"succeeded"}
    assert [w["summary"] for w in listed["workers"]] == ["nothing due; audit: all invariants hold"]
    text_env = env | {"LEDGER_LOG_FORMAT": "text"}
    again = ledger_cli(["worker", "--rounds", "1", "--interval", "0.1"], tmp_path, text_env)
    assert again.returncode == 0, again.stderr
    assert " INFO ledger.worker worker round: " in again.stderr and not again.stderr.startswith("{")
    assert "audit:" not in again.stderr  # the last run is within LEDGER_AUDIT_INTERVAL
    listed = json.loads(ledger_cli(["orders", "list", "--json"], tmp_path, env).stdout)
    assert [w["summary"] for w in listed["workers"]] == ["nothing due", "nothing due; audit: all invariants hold"]
    refused = ledger_cli(["orders", "list", "--state", "bogus"], tmp_path, env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1


def test_simulate_prints_the_same_summary_for_a_seed_and_refuses_a_database_with_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    args = ["simulate", "--seed", "3", "--clients", "2", "--freelancers", "2", "--months", "1"]
    summaries = []
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        assert ledger_cli(["db", "upgrade"], tmp_path / run, env).returncode == 0
        simulated = ledger_cli([*args, "--json"], tmp_path / run, env)
        assert simulated.returncode == 0, simulated.stderr
        assert simulated.stderr == ""  # no terminal: no progress bar
        summaries.append(json.loads(simulated.stdout))
    assert summaries[0] == summaries[1]
    assert summaries[0]["audit"]["ok"] is True
    journal = [json.loads(line) for line in ledger_cli(["journal"], tmp_path / "first", env).stdout.splitlines()]
    assert journal and {entry["actor"] for entry in journal if "actor" in entry} == {"simulate"}
    again = ledger_cli(args, tmp_path / "first", env)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "only runs on an empty database" in again.stderr
    refused = ledger_cli(["simulate", "--months", "0"], tmp_path / "second", env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr


def test_dates_mean_midnight_utc_and_an_account_in_one_currency_needs_none(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    funded_escrow(fresh_database_url, 5000, FixedClock(datetime(2026, 1, 31, 12, tzinfo=UTC)))
    monkeypatch.setenv("LEDGER_DATABASE_URL", fresh_database_url)
    # Posted at 2026-01-31 12:00: a period ending 2026-01-31 (00:00) stops before it.
    assert main(["balance", "liabilities:escrow:ms_1", "--as-of", "2026-01-31"]) == 0
    assert capsys.readouterr().out == "0.00 USD\n"
    assert main(["balance", "liabilities:escrow:ms_1", "--as-of", "2026-02-01"]) == 0
    assert capsys.readouterr().out == "50.00 USD\n"
    assert main(["statement", "liabilities:escrow:ms_1", "--from", "2026-01-01", "--to", "2026-01-31"]) == 0
    printed = capsys.readouterr()
    assert len(printed.out.splitlines()) == 1  # the header only
    assert "[2026-01-01T00:00:00Z, 2026-01-31T00:00:00Z)" in printed.err
    assert main(["report", "trial-balance"]) == 0  # as of now
    assert "TOTAL,,USD,50.00,50.00" in capsys.readouterr().out


def test_the_fee_quote_prices_a_hypothetical_lifetime_and_prints_json(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(fresh_database_url).close()
    monkeypatch.setenv("LEDGER_DATABASE_URL", fresh_database_url)
    args = ["fees", "quote", "--amount", "1000.00", "--currency", "USD", "--lifetime", "250.00"]
    assert main([*args, "--at", "2020-01-01", "--json"]) == 0
    quote = json.loads(capsys.readouterr().out)
    # 250.00 of the first 500.00 at 20%, then 750.00 at 10%: 50.00 + 75.00.
    assert quote == {
        "fee": "125.00",
        "net": "875.00",
        "currency": "USD",
        "blended_rate": "0.1250",
        "lifetime_before": "250.00",
        "lifetime_after": "1250.00",
        "schedule": "classic",
        "tiers": [
            {"amount": "250.00", "rate": "0.20", "fee": "50.00"},
            {"amount": "750.00", "rate": "0.10", "fee": "75.00"},
        ],
    }
    assert main(args) == 0
    assert "fee 125.00 USD, net 875.00 USD" in capsys.readouterr().out
    for bad, message in [
        ([*args, "--freelancer", "fr_1", "--client", "cl_1"], "not both"),
        (["fees", "quote", "--amount", "10.00", "--currency", "USD"], "give --lifetime"),
        ([*args, "--at", "2020-01-01T00:00:00"], "no UTC offset"),
    ]:
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("ledger: error: ") and message in err and err.count("\n") == 1


def on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run the command with stderr on a pseudo-terminal; its exit code, stdout and what the terminal showed."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", *args], env=env, stdout=subprocess.PIPE, stderr=follower, text=True
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the command has exited and closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out, _ = process.communicate(timeout=60)
    os.close(leader)
    return process.returncode, out, shown.decode(errors="replace")


def test_long_commands_draw_progress_on_a_terminal_and_stay_quiet_otherwise(
    fresh_database_url: str, tmp_path: Path
) -> None:
    funded_escrow(fresh_database_url, 5000)
    env = os.environ | {"LEDGER_DATABASE_URL": fresh_database_url, "COLUMNS": "100"}
    code, out, shown = on_a_terminal(["audit"], env)
    assert code == 0 and "ok    actors_recorded" in out, out
    assert "audit: checks" in shown and "/" in shown  # the bar, with done/total checks
    export = str(tmp_path / "journal.beancount")
    code, out, shown = on_a_terminal(["export", "beancount", "-o", export], env)
    assert code == 0 and "export: entries" in shown
    quiet = ledger_cli(["audit"], tmp_path, env)
    assert quiet.returncode == 0 and quiet.stderr == ""  # stderr is a pipe: no bar
