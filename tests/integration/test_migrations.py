"""The schema is made only by the migrations, and the migrations make what the code expects."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ledger.bootstrap import connect
from ledger.db.engine import current_revision, head_revision, make_engine, upgrade
from ledger.db.schema import Base
from ledger.errors import DatabaseNotMigrated


def test_the_migrated_schema_matches_the_models(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_an_unmigrated_database_is_refused_with_a_one_line_error(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/empty.sqlite3"
    with pytest.raises(DatabaseNotMigrated, match=r"is empty \(no migrations applied\).*ledger db upgrade"):
        connect(url)
    engine = make_engine(url)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()
    connect(url).close()


def test_migrations_go_down_to_nothing_and_up_again(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/roundtrip.sqlite3")
    upgrade(engine)
    upgrade_then_down(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def upgrade_then_down(engine: object) -> None:
    from alembic import command

    from ledger.db.engine import alembic_config

    config = alembic_config()
    with engine.begin() as connection:  # type: ignore[attr-defined]
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert current_revision(engine) is None  # type: ignore[arg-type]


def test_upgrading_moves_refunds_and_payouts_in_flight_into_payment_orders(tmp_path: object) -> None:
    """Revision 0011: each pending refund order and each payout in transit gets a payment order
    with the key it was sent with before (its own id), so the dispatcher sends it once."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path}/in_flight.sqlite3")
    upgrade(engine, "0010")
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).replace(tzinfo=None)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO contracts (id, client_id, freelancer_id, currency, title, created_at)"
                " VALUES ('ct_1', 'cl_1', 'fr_1', 'USD', 't', :at)"
            ),
            {"at": at},
        )
        connection.execute(
            text(
                "INSERT INTO milestones (id, contract_id, title, amount, state, funding_reference, created_at,"
                " updated_at) VALUES ('ms_1', 'ct_1', 'm', 100000, 'refunded', 'pi_1', :at, :at)"
            ),
            {"at": at},
        )
        for order_id, state, reference in (("rfo_1", "pending", None), ("rfo_2", "succeeded", "re_2")):
            connection.execute(
                text(
                    "INSERT INTO refund_orders (id, milestone_id, currency, amount, psp_account, charge_reference,"
                    " state, gateway_reference, created_at) VALUES (:id, 'ms_1', 'USD', 100000,"
                    " 'assets:psp:simulated', 'pi_1', :state, :reference, :at)"
                ),
                {"id": order_id, "state": state, "reference": reference, "at": at},
            )
        for payout_id, state in (("po_1", "in_transit"), ("po_2", "paid")):
            connection.execute(
                text(
                    "INSERT INTO payouts (id, freelancer_id, currency, amount, state, created_at)"
                    " VALUES (:id, 'fr_1', 'USD', 5000, :state, :at)"
                ),
                {"id": payout_id, "state": state, "at": at},
            )
    upgrade(engine)
    with engine.connect() as connection:
        moved = connection.execute(
            text(
                "SELECT kind, state, amount, provider_key, refund_order_id, payout_id, target_reference"
                " FROM payment_orders ORDER BY kind"
            )
        ).all()
    engine.dispose()
    assert [tuple(row) for row in moved] == [
        ("payout", "pending", 5000, "po_1", None, "po_1", None),
        ("refund", "pending", 100000, "rfo_1", "rfo_1", None, "pi_1"),
    ]
