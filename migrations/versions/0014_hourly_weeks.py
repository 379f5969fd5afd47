"""Hourly contracts' money: the weeks as they closed, and escrow subjects of three kinds.

`milestones` gains `kind`: 'milestone' for every existing row; 'week' for a closed
hourly week that has something to bill (its id is `<contract>:<monday>`, so its escrow
account is `liabilities:escrow:<contract>:<monday>`); 'bonus' for a bonus paid on an
hourly contract. Funding, release, refunds, chargebacks and invoices treat the three
alike. SQLite adds the column with its CHECK by ALTER TABLE ADD COLUMN (see 0013).

`hourly_weeks` keeps each week as it closed: the limit in force for it, its logged,
billable and over-limit minutes, its amount and the part of it that is protected
(tracked time within the limit, for a client whose payment method was verified before
the close), and the escrow subject that holds its money (none when nothing was billable).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from ledger.db.schema import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

KIND_CHECK = "kind IN ('milestone', 'week', 'bonus')"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE milestones ADD COLUMN kind VARCHAR(10) NOT NULL DEFAULT 'milestone'"
            f" CONSTRAINT ck_milestones_kind CHECK ({KIND_CHECK})"
        )
    else:
        op.add_column("milestones", sa.Column("kind", sa.String(length=10), server_default="milestone", nullable=False))
        op.create_check_constraint(op.f("ck_milestones_kind"), "milestones", KIND_CHECK)

    op.create_table(
        "hourly_weeks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=False),
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("limit_minutes", sa.Integer(), nullable=False),
        sa.Column("logged_minutes", sa.Integer(), nullable=False),
        sa.Column("billable_minutes", sa.Integer(), nullable=False),
        sa.Column("over_limit_minutes", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("protected_amount", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=False),
        sa.Column("milestone_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "billable_minutes >= 0 AND over_limit_minutes >= 0"
            " AND billable_minutes + over_limit_minutes = logged_minutes AND billable_minutes <= limit_minutes",
            name=op.f("ck_hourly_weeks_minutes"),
        ),
        sa.CheckConstraint(
            "amount >= 0 AND (milestone_id IS NULL) = (amount = 0)", name=op.f("ck_hourly_weeks_amount")
        ),
        sa.CheckConstraint(
            "protected_amount >= 0 AND protected_amount <= amount", name=op.f("ck_hourly_weeks_protected_amount")
        ),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_hourly_weeks_contract_id_contracts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["milestone_id"],
            ["milestones.id"],
            name=op.f("fk_hourly_weeks_milestone_id_milestones"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hourly_weeks")),
        sa.UniqueConstraint("contract_id", "week", name=op.f("uq_hourly_weeks_contract_id_week")),
    )


def downgrade() -> None:
    op.drop_table("hourly_weeks")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_milestones_kind"), "milestones", type_="check")
    op.drop_column("milestones", "kind")
