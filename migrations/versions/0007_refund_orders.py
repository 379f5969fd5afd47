"""Refund orders: refunds to clients go through the payment provider.

A refund's journal entry moves the money to `liabilities:refunds:in_transit`; the
order moves it on to the PSP account once the provider reports success.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from ledger.db.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refund_orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("milestone_id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("psp_account", sa.String(length=200), nullable=False),
        sa.Column("charge_reference", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("gateway_reference", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refund_orders_amount_positive")),
        sa.CheckConstraint("state IN ('pending', 'succeeded', 'failed')", name=op.f("ck_refund_orders_state")),
        sa.ForeignKeyConstraint(
            ["milestone_id"],
            ["milestones.id"],
            name=op.f("fk_refund_orders_milestone_id_milestones"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_orders")),
    )
    op.create_index(op.f("ix_refund_orders_state"), "refund_orders", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_refund_orders_state"), table_name="refund_orders")
    op.drop_table("refund_orders")
