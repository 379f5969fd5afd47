"""The simulated payment provider's own books: the charges, refunds, transfers and
disputes it holds, written on its own connection (a rolled-back ledger transaction
does not erase them) and compared with the ledger by the audit (invariant 10).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ledger.db.schema import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_books",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("answered", sa.String(length=20), nullable=False),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("party", sa.String(length=255), nullable=True),
        sa.Column("charge_reference", sa.String(length=255), nullable=True),
        sa.Column("order_id", sa.String(length=255), nullable=True),
        sa.Column("metadata", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("reinstated", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "amount > 0 AND fee >= 0 AND reinstated >= 0 AND reinstated <= amount",
            name=op.f("ck_provider_books_amounts"),
        ),
        sa.CheckConstraint("kind IN ('charge', 'refund', 'transfer', 'dispute')", name=op.f("ck_provider_books_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_books")),
        sa.UniqueConstraint("provider", "idempotency_key", name=op.f("uq_provider_books_provider_idempotency_key")),
    )
    op.create_index(op.f("ix_provider_books_charge_reference"), "provider_books", ["charge_reference"], unique=False)
    op.create_index("ix_provider_books_order", "provider_books", ["provider", "kind", "order_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_provider_books_order", table_name="provider_books")
    op.drop_index(op.f("ix_provider_books_charge_reference"), table_name="provider_books")
    op.drop_table("provider_books")
