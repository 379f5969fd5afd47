"""Hourly contracts' time: a contract's type and hourly terms, the history of its rates
and weekly limits, and the time segments logged on it.

`contracts` gains `type` ('fixed' for every existing contract), the hourly terms in
force (`hourly_rate` in minor units per hour, `weekly_limit_hours`),
`manual_time_allowed` and `paused_at`. SQLite adds the columns with their CHECKs by
ALTER TABLE ADD COLUMN: recreating `contracts` in batch mode would drop a table that
milestones and payments reference while foreign keys are enforced. Each CHECK sits on
one column there, the one naming the others on `type`, so that the downgrade can drop
`type` first and then the columns it named.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from ledger.db.schema import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TYPE_CHECK = "type IN ('fixed', 'hourly')"
TERMS_CHECK = "(type = 'hourly') = (hourly_rate IS NOT NULL AND weekly_limit_hours IS NOT NULL)"
RATE_CHECK = "hourly_rate IS NULL OR hourly_rate > 0"
LIMIT_CHECK = "weekly_limit_hours IS NULL OR (weekly_limit_hours >= 0 AND weekly_limit_hours <= 168)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for column in (
            f"hourly_rate BIGINT CONSTRAINT ck_contracts_hourly_rate_positive CHECK ({RATE_CHECK})",
            f"weekly_limit_hours INTEGER CONSTRAINT ck_contracts_weekly_limit_hours CHECK ({LIMIT_CHECK})",
            "manual_time_allowed BOOLEAN NOT NULL DEFAULT 0",
            "paused_at DATETIME",
            f"type VARCHAR(10) NOT NULL DEFAULT 'fixed' CONSTRAINT ck_contracts_type CHECK ({TYPE_CHECK})"
            f" CONSTRAINT ck_contracts_hourly_terms CHECK ({TERMS_CHECK})",
        ):
            op.execute(f"ALTER TABLE contracts ADD COLUMN {column}")
    else:
        op.add_column("contracts", sa.Column("type", sa.String(length=10), server_default="fixed", nullable=False))
        op.add_column("contracts", sa.Column("hourly_rate", sa.BigInteger(), nullable=True))
        op.add_column("contracts", sa.Column("weekly_limit_hours", sa.Integer(), nullable=True))
        op.add_column(
            "contracts", sa.Column("manual_time_allowed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        op.add_column("contracts", sa.Column("paused_at", UTCDateTime(), nullable=True))
        op.create_check_constraint(op.f("ck_contracts_type"), "contracts", TYPE_CHECK)
        op.create_check_constraint(op.f("ck_contracts_hourly_terms"), "contracts", TERMS_CHECK)
        op.create_check_constraint(op.f("ck_contracts_hourly_rate_positive"), "contracts", RATE_CHECK)
        op.create_check_constraint(op.f("ck_contracts_weekly_limit_hours"), "contracts", LIMIT_CHECK)

    op.create_table(
        "contract_term_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=False),
        sa.Column("term", sa.String(length=20), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("term IN ('rate', 'weekly_limit')", name=op.f("ck_contract_term_changes_term")),
        sa.CheckConstraint(
            "(term = 'rate' AND value > 0) OR (term = 'weekly_limit' AND value >= 0)",
            name=op.f("ck_contract_term_changes_value"),
        ),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
            name=op.f("fk_contract_term_changes_contract_id_contracts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contract_term_changes")),
    )
    op.create_index(
        op.f("ix_contract_term_changes_contract_id"), "contract_term_changes", ["contract_id"], unique=False
    )
    op.create_table(
        "time_segments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_time_segments_end_after_start")),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_time_segments_contract_id_contracts"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_time_segments")),
    )
    op.create_index("ix_time_segments_contract_start", "time_segments", ["contract_id", "start_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_time_segments_contract_start", table_name="time_segments")
    op.drop_table("time_segments")
    op.drop_index(op.f("ix_contract_term_changes_contract_id"), table_name="contract_term_changes")
    op.drop_table("contract_term_changes")
    if op.get_bind().dialect.name == "postgresql":
        for name in ("type", "hourly_terms", "hourly_rate_positive", "weekly_limit_hours"):
            op.drop_constraint(op.f(f"ck_contracts_{name}"), "contracts", type_="check")
    # `type` first: on SQLite its CHECK names the hourly terms' columns.
    for column in ("type", "paused_at", "manual_time_allowed", "weekly_limit_hours", "hourly_rate"):
        op.drop_column("contracts", column)
