"""Hourly weeks past due, protected and disputed: who paused a contract, when a
client's payment method was verified, and disputes of a week's hours.

`contracts.paused_by` is 'request' when the marketplace paused it and 'past_due' when
the weekly charges failed on as many days as the policy allows (the pause is lifted
when the client's money comes in). Existing paused contracts were paused on request.
SQLite adds the column with its CHECK by ALTER TABLE ADD COLUMN (see 0013).
`parties.payment_method_verified_at` is set by the marketplace; the tracked time
within the limit of a week closed after it is protected. `week_disputes` holds a
client's dispute of a week's last billable minutes: the amount they cost, its state,
the freelancer's answer deadline, and what was released and refunded of it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from ledger.db.schema import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

CHECK = "paused_by IS NULL OR paused_by IN ('request', 'past_due', 'dispute')"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"ALTER TABLE contracts ADD COLUMN paused_by VARCHAR(10) CONSTRAINT ck_contracts_paused_by CHECK ({CHECK})"
        )
    else:
        op.add_column("contracts", sa.Column("paused_by", sa.String(length=10), nullable=True))
        op.create_check_constraint(op.f("ck_contracts_paused_by"), "contracts", CHECK)
    op.execute("UPDATE contracts SET paused_by = 'request' WHERE paused_at IS NOT NULL")
    op.add_column("parties", sa.Column("payment_method_verified_at", UTCDateTime(), nullable=True))
    op.create_table(
        "week_disputes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("answer_by", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("released", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "minutes > 0 AND amount > 0 AND released >= 0 AND refunded >= 0 AND released + refunded <= amount",
            name=op.f("ck_week_disputes_figures"),
        ),
        sa.CheckConstraint(
            "state IN ('open', 'contested', 'accepted', 'expired', 'resolved')", name=op.f("ck_week_disputes_state")
        ),
        sa.CheckConstraint(
            "(state IN ('open', 'contested')) = (closed_at IS NULL)"
            " AND (closed_at IS NULL OR released + refunded = amount)",
            name=op.f("ck_week_disputes_closed"),
        ),
        sa.ForeignKeyConstraint(
            ["id"], ["milestones.id"], name=op.f("fk_week_disputes_id_milestones"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_week_disputes_contract_id_contracts"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_week_disputes")),
    )


def downgrade() -> None:
    op.drop_table("week_disputes")
    op.drop_column("parties", "payment_method_verified_at")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_contracts_paused_by"), "contracts", type_="check")
    op.drop_column("contracts", "paused_by")
