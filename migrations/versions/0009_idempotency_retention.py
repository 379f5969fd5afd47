"""Idempotency-Key leases and retention: each recorded request has the time it was last
claimed, so that a claim left in progress by a server that died can be taken over by a
retry, and old records can be pruned (`ledger idempotency prune`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from ledger.db.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotent_requests") as batch_op:
        batch_op.add_column(sa.Column("claimed_at", UTCDateTime(), nullable=True))
    op.execute("UPDATE idempotent_requests SET claimed_at = created_at")
    with op.batch_alter_table("idempotent_requests") as batch_op:
        batch_op.alter_column("claimed_at", existing_type=UTCDateTime(), nullable=False)
    op.create_index(op.f("ix_idempotent_requests_claimed_at"), "idempotent_requests", ["claimed_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotent_requests_claimed_at"), table_name="idempotent_requests")
    with op.batch_alter_table("idempotent_requests") as batch_op:
        batch_op.drop_column("claimed_at")
