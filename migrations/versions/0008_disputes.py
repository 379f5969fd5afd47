"""Chargebacks: disputes opened by clients' banks against our payments; refund orders a
lost chargeback settled instead (`charged_back`); and what of a payout's transfer the
provider has reversed.

An open dispute freezes the milestone its payment funded; the money the provider
withdraws sits in `assets:psp:disputed` until the dispute is won (reinstated) or
lost (`expenses:chargebacks`, then recovered as the chargeback policy says, docs/architecture.md "Chargebacks").

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from ledger.db.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("milestone_id", sa.String(length=40), nullable=False),
        sa.Column("charge_reference", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("withdrawn", sa.BigInteger(), nullable=False),
        sa.Column("reinstated", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("recovered_from_escrow", sa.BigInteger(), nullable=False),
        sa.Column("recovered_from_freelancer", sa.BigInteger(), nullable=False),
        sa.Column("recovered_from_refunds", sa.BigInteger(), nullable=False),
        sa.Column("fee_returned", sa.BigInteger(), nullable=False),
        sa.Column("unrecovered", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_disputes_amount_positive")),
        sa.CheckConstraint(
            "withdrawn >= 0 AND reinstated >= 0 AND reinstated <= withdrawn", name=op.f("ck_disputes_funds")
        ),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('won', 'lost', 'warning_closed')", name=op.f("ck_disputes_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["milestone_id"], ["milestones.id"], name=op.f("fk_disputes_milestone_id_milestones"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
    )
    op.create_index(op.f("ix_disputes_milestone_id"), "disputes", ["milestone_id"], unique=False)
    with op.batch_alter_table("payouts") as batch_op:
        batch_op.add_column(sa.Column("amount_reversed", sa.BigInteger(), server_default="0", nullable=False))
    with op.batch_alter_table("refund_orders") as batch_op:
        batch_op.drop_constraint(op.f("ck_refund_orders_state"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_refund_orders_state"), "state IN ('pending', 'succeeded', 'failed', 'charged_back')"
        )


def downgrade() -> None:
    with op.batch_alter_table("refund_orders") as batch_op:
        batch_op.drop_constraint(op.f("ck_refund_orders_state"), type_="check")
        batch_op.create_check_constraint(op.f("ck_refund_orders_state"), "state IN ('pending', 'succeeded', 'failed')")
    with op.batch_alter_table("payouts") as batch_op:
        batch_op.drop_column("amount_reversed")
    op.drop_index(op.f("ix_disputes_milestone_id"), table_name="disputes")
    op.drop_table("disputes")
