"""Payment orders: every provider call is a row, sent by a dispatcher.

Creates `payment_orders`, `request_keys` and `worker_heartbeats`, adds the charge a
payment's money came in by (`payments.charge_reference`), and moves what is in
flight into orders, so nothing is lost: each pending refund order and each payout
in transit gets a payment order carrying the idempotency key it was sent with
before (its own id), so a re-send is still answered from the provider's memory.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import secrets

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ledger.db.schema import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "payment_orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("provider_key", sa.String(length=255), nullable=False),
        sa.Column("milestone_id", sa.String(length=40), nullable=True),
        sa.Column("payout_id", sa.String(length=40), nullable=True),
        sa.Column("refund_order_id", sa.String(length=40), nullable=True),
        sa.Column("target_reference", sa.String(length=255), nullable=True),
        sa.Column("provider_reference", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("origin", sa.String(length=80), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("first_sent_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(length=80), nullable=True),
        sa.Column("details", _json(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_payment_orders_amount_not_negative")),
        sa.CheckConstraint(
            "kind IN ('fund', 'bonus', 'cancel', 'refund', 'payout', 'processing_fee')",
            name=op.f("ck_payment_orders_kind"),
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'sent', 'requires_action', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_payment_orders_state"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_payment_orders_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_orders")),
        sa.UniqueConstraint("provider_key", name=op.f("uq_payment_orders_provider_key")),
    )
    op.create_index("ix_payment_orders_due", "payment_orders", ["state", "next_attempt_at"], unique=False)
    for column in ("milestone_id", "payout_id", "refund_order_id"):
        op.create_index(op.f(f"ix_payment_orders_{column}"), "payment_orders", [column], unique=False)
    op.create_table(
        "request_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("operation", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("result", _json(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_request_keys")),
    )
    op.create_table(
        "worker_heartbeats",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("beat_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_heartbeats")),
    )
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("charge_reference", sa.String(length=255), nullable=True))
    _move_in_flight_work()


def _move_in_flight_work() -> None:
    bind = op.get_bind()
    meta = sa.MetaData()
    orders = sa.Table("payment_orders", meta, autoload_with=bind)
    refund_orders = sa.Table("refund_orders", meta, autoload_with=bind)
    payouts = sa.Table("payouts", meta, autoload_with=bind)
    payments = sa.Table("payments", meta, autoload_with=bind)
    milestones = sa.Table("milestones", meta, autoload_with=bind)
    # A payment's money came in by its milestone's funding charge (bonuses booked before
    # this revision named no charge of their own; they keep the milestone's).
    bind.execute(
        payments.update().values(
            charge_reference=sa.select(milestones.c.funding_reference)
            .where(milestones.c.id == payments.c.milestone_id)
            .scalar_subquery()
        )
    )
    rows = []
    for order in bind.execute(sa.select(refund_orders).where(refund_orders.c.state == "pending")):
        rows.append(
            {
                "id": f"ord_{secrets.token_hex(8)}",
                "kind": "refund",
                # Acknowledged by the provider (it gave a reference): the dispatcher asks how it stands.
                "state": "sent" if order.gateway_reference else "pending",
                "amount": order.amount,
                "currency": order.currency,
                "provider_key": order.id,
                "milestone_id": order.milestone_id,
                "refund_order_id": order.id,
                "target_reference": order.charge_reference,
                "provider_reference": order.gateway_reference,
                "attempts": 0,
                "next_attempt_at": order.created_at,
                "first_sent_at": order.created_at,
                "details": {"psp_account": order.psp_account},
                "created_at": order.created_at,
                "updated_at": order.created_at,
            }
        )
    for payout in bind.execute(sa.select(payouts).where(payouts.c.state == "in_transit")):
        rows.append(
            {
                "id": f"ord_{secrets.token_hex(8)}",
                "kind": "payout",
                "state": "sent" if payout.gateway_reference else "pending",
                "amount": payout.amount,
                "currency": payout.currency,
                "provider_key": payout.id,
                "payout_id": payout.id,
                "provider_reference": payout.gateway_reference,
                "attempts": 0,
                "next_attempt_at": payout.created_at,
                "first_sent_at": payout.created_at,
                "details": {"party": payout.freelancer_id},
                "created_at": payout.created_at,
                "updated_at": payout.created_at,
            }
        )
    # One shape for every row (an executemany takes the columns of its first row).
    blank = dict.fromkeys(("milestone_id", "payout_id", "refund_order_id", "target_reference", "provider_reference"))
    if rows:
        bind.execute(orders.insert(), [{**blank, **row} for row in rows])


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("charge_reference")
    op.drop_table("worker_heartbeats")
    op.drop_table("request_keys")
    for column in ("milestone_id", "payout_id", "refund_order_id"):
        op.drop_index(op.f(f"ix_payment_orders_{column}"), table_name="payment_orders")
    op.drop_index("ix_payment_orders_due", table_name="payment_orders")
    op.drop_table("payment_orders")
