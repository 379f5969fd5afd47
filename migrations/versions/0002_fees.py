"""The service fee: schedules in force, lifetime billings per pair, fee events.

The classic 20/10/5 schedule is put in force from the beginning of time, so a new
installation charges the marketplace's model fee with no configuration.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from ledger.db.schema import UTCDateTime
from ledger.fees.schedule import CLASSIC

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def upgrade() -> None:
    schedules = op.create_table(
        "fee_schedules",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("effective_from", UTCDateTime(), nullable=False),
        sa.Column("definition", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fee_schedules"),
        sa.UniqueConstraint("effective_from", name="uq_fee_schedules_effective_from"),
    )
    op.create_table(
        "lifetime_billings",
        sa.Column("freelancer_id", sa.String(100), nullable=False),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("billed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("freelancer_id", "client_id", "currency", name="pk_lifetime_billings"),
        sa.CheckConstraint("billed >= 0", name="ck_lifetime_billings_billed_not_negative"),
    )
    op.create_table(
        "fee_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("freelancer_id", sa.String(100), nullable=False),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_before", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_after", sa.BigInteger(), nullable=False),
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fee_events"),
        sa.UniqueConstraint("idempotency_key", name="uq_fee_events_idempotency_key"),
        sa.ForeignKeyConstraint(
            ["schedule_id"], ["fee_schedules.id"], name="fk_fee_events_schedule_id_fee_schedules", ondelete="RESTRICT"
        ),
        sa.CheckConstraint("kind IN ('charge', 'refund')", name="ck_fee_events_kind"),
        sa.CheckConstraint(
            "amount >= 0 AND fee >= 0 AND lifetime_before >= 0 AND lifetime_after >= 0", name="ck_fee_events_amounts"
        ),
        sa.CheckConstraint(
            "(kind = 'charge' AND lifetime_after = lifetime_before + amount)"
            " OR (kind = 'refund' AND lifetime_after = lifetime_before - amount)",
            name="ck_fee_events_lifetime_moves_by_amount",
        ),
    )
    op.create_index("ix_fee_events_pair", "fee_events", ["freelancer_id", "client_id", "currency", "id"])
    if op.get_bind().dialect.name == "postgresql":
        for statement in (
            "CREATE TRIGGER fee_events_append_only BEFORE UPDATE OR DELETE ON fee_events"
            " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
            "CREATE TRIGGER fee_schedules_append_only BEFORE UPDATE OR DELETE ON fee_schedules"
            " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
        ):
            op.execute(statement)
    else:
        for table in ("fee_events", "fee_schedules"):
            for op_name in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_refuse_{op_name.lower()} BEFORE {op_name} ON {table} BEGIN"
                    f" SELECT RAISE(ABORT, 'ledger: {op_name} on {table} is refused: fee history is append-only'); END"
                )
    op.bulk_insert(
        schedules,
        [{"name": CLASSIC.name, "effective_from": BEGINNING, "definition": CLASSIC.to_data(), "created_at": BEGINNING}],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER fee_schedules_append_only ON fee_schedules")
        op.execute("DROP TRIGGER fee_events_append_only ON fee_events")
    else:
        for table in ("fee_events", "fee_schedules"):
            for op_name in ("update", "delete"):
                op.execute(f"DROP TRIGGER {table}_refuse_{op_name}")
    op.drop_table("fee_events")
    op.drop_table("lifetime_billings")
    op.drop_table("fee_schedules")
