"""`ledger simulate`: a seeded marketplace run through the service layer, on both databases.

A small market (3 clients, 3 freelancers, 2 months) is enough for every kind of money
movement to happen and for the audit to check it: fundings, releases in more than one
fee tier and under both shipped schedules, refunds before and after release,
chargebacks won and lost, payouts, billed hourly weeks, and injected provider faults.
The summary is a function of the seed and the parameters only: the same on a fresh
database, on SQLite and on PostgreSQL, and different for another seed (compared over
one month, which is enough for them to differ).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.bootstrap import Services, connect
from ledger.clock import FixedClock, SystemClock
from ledger.db.provider_books import DatabaseBooks
from ledger.gateway.simulated import SimulatedGateway
from ledger.service import Ledger
from ledger.simulation import START, SimulationNotPossible, SimulationSummary, simulate
from tests.conftest import empty_postgres

#: A seed whose two months have everything happen (chosen by running it; see the asserts).
SEED, OTHER_SEED = 3, 5
CLIENTS = FREELANCERS = 3
#: Months of the full run; for the runs compared with each other one is enough (and faster).
MONTHS, SHORT = 2, 1

Opener = Callable[[], Services]


def sqlite_copy(template: Path, directory: Path, name: str) -> str:
    path = directory / name
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def fresh_services(fresh_database_url: str, tmp_path: Path, sqlite_template: Path) -> Iterator[Opener]:
    """Opens services over an empty database of the parametrized kind, each time a fresh
    one (a new SQLite file; PostgreSQL emptied after the previous services are closed),
    over a FixedClock and the simulated gateway, as the CLI builds them."""
    opened: list[Services] = []

    def open_services() -> Services:
        url = fresh_database_url
        if url.startswith("sqlite"):
            url = sqlite_copy(sqlite_template, tmp_path, f"simulation-{len(opened)}.sqlite3")
        elif opened:
            opened[-1].close()
            empty_postgres(url)
        services = Services.over(connect(url, clock=FixedClock(START)), SimulatedGateway())
        opened.append(services)
        return services

    yield open_services
    for services in opened:
        services.close()


def run(services: Services, seed: int = SEED, months: int = SHORT) -> SimulationSummary:
    return simulate(services, seed=seed, clients=CLIENTS, freelancers=FREELANCERS, months=months)


def amounts_are_strings(value: Any) -> None:
    """No JSON number in the report is a float; every amount is a decimal string."""
    assert not isinstance(value, float)
    if isinstance(value, dict):
        for item in value.values():
            amounts_are_strings(item)
    elif isinstance(value, list):
        for item in value:
            amounts_are_strings(item)


def test_a_seeded_run_moves_money_of_every_kind_and_the_audit_passes(fresh_services: Opener) -> None:
    days: list[tuple[int, int]] = []
    summary = simulate(
        fresh_services(),
        seed=SEED,
        clients=CLIENTS,
        freelancers=FREELANCERS,
        months=MONTHS,
        progress=lambda done, total: days.append((done, total)),
    )
    assert (summary.audit_ok, summary.audit_failed) == (True, ())
    assert days[0] == (0, 59) and days[-1] == (59, 59)  # 2026-01-05 to 2026-03-05
    usd = summary.volume("USD")
    assert usd.funded > 0 and usd.released > 0 and usd.paid_out > 0 and usd.service_fees > 0
    assert usd.refunded_before_release > 0 and usd.refunded_after_release > 0 and usd.charged_back > 0
    assert summary.refunds_before_release > 0 and summary.refunds_after_release > 0
    assert summary.chargebacks_won > 0 and summary.chargebacks_lost > 0
    assert summary.hourly_weeks_billed > 0
    tiers = {(t.schedule, str(t.rate)) for t in summary.fee_tiers if t.currency == "USD" and t.billed}
    assert {("classic", "0.2"), ("classic", "0.1"), ("flat-10", "0.1")} <= tiers
    for volumes in summary.volumes:
        tiered = [t for t in summary.fee_tiers if t.currency == volumes.currency]
        assert sum(t.fee - t.fee_returned for t in tiered) == volumes.service_fees
    faults = dict(summary.faults)
    assert faults.get("funding_declined", 0) + faults.get("weekly_charge_declined", 0) > 0
    assert any(name.endswith(("_answer_lost", "_provider_down")) for name in faults)  # timeouts the retries settled
    assert sum(a.refused for a in summary.actions) > 0  # the provoked mistakes were refused, not fatal
    report = summary.to_json()
    amounts_are_strings(report)
    assert report["volumes"]["USD"]["funded"] == f"{usd.funded // 100}.{usd.funded % 100:02d}"
    assert summary.lines()[-1] == "audit: all invariants hold"


def test_the_same_seed_gives_the_same_summary_on_a_fresh_database_and_another_seed_another(
    fresh_services: Opener,
) -> None:
    first = run(fresh_services()).to_json()
    assert run(fresh_services()).to_json() == first
    other = run(fresh_services(), OTHER_SEED).to_json()
    assert other != first and other["audit"]["ok"]


def test_the_same_seed_gives_the_same_summary_on_sqlite_and_postgresql(
    tmp_path: Path, sqlite_template: Path, postgres_database: str
) -> None:
    """With the provider's books in the database, as `ledger simulate` keeps them."""
    reports = []
    empty_postgres(postgres_database)
    for url in (sqlite_copy(sqlite_template, tmp_path, "simulation.sqlite3"), postgres_database):
        services = Services.over(connect(url, clock=FixedClock(START)), SimulatedGateway(DatabaseBooks(url)))
        try:
            reports.append(run(services).to_json())
        finally:
            services.close()
    assert reports[0] == reports[1]
    assert reports[0]["audit"] == {"ok": True, "failed": []}


def test_a_run_is_refused_without_a_settable_clock_or_the_simulated_gateway_or_on_a_used_database(
    book: Ledger, fresh_database_url: str
) -> None:
    moving = connect(fresh_database_url, clock=SystemClock())
    try:
        with pytest.raises(SimulationNotPossible, match="FixedClock"):
            run(Services.over(moving, SimulatedGateway()))
    finally:
        moving.close()
    with pytest.raises(SimulationNotPossible, match="simulated gateway"):
        run(Services.over(book, None))
    services = Services.over(book, SimulatedGateway())
    services.escrow.contracts.open_contract(client_id="cl_001", freelancer_id="fr_001", currency="USD", title="x")
    with pytest.raises(SimulationNotPossible, match="empty database"):
        run(services)
    with pytest.raises(SimulationNotPossible, match="months"):
        simulate(services, seed=SEED, clients=3, freelancers=3, months=0)
