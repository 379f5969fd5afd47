"""Parties (who clients and freelancers are) and issued documents: invoices and
credit notes with gapless numbers per series and year.

Documents are append-only (triggers refuse UPDATE and DELETE); a series' last
number sits in `document_sequences`, locked while the next one is issued, so
numbers have no gaps and no duplicates even under concurrent releases.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from ledger.db.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_sequences",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("series_year", sa.Integer(), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "series_year", name=op.f("pk_document_sequences")),
    )
    op.create_table(
        "parties",
        sa.Column("party_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("legal_name", sa.String(length=200), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("tax_id", sa.String(length=64), nullable=True),
        sa.Column("provider_id", sa.String(length=255), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("party_id", name=op.f("pk_parties")),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("series_year", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("issuer_id", sa.String(length=64), nullable=False),
        sa.Column("recipient_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("corrects_id", sa.String(length=40), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("measured_account", sa.String(length=200), nullable=False),
        sa.Column("measured_side", sa.String(length=6), nullable=False),
        sa.Column("data", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.CheckConstraint("sequence >= 1", name=op.f("ck_documents_sequence_positive")),
        sa.CheckConstraint("total >= 0", name=op.f("ck_documents_total_not_negative")),
        sa.ForeignKeyConstraint(
            ["corrects_id"], ["documents.id"], name=op.f("fk_documents_corrects_id_documents"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name=op.f("fk_documents_entry_id_entries"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("kind", "series_year", "sequence", name=op.f("uq_documents_kind_series_year_sequence")),
        sa.UniqueConstraint("number", name=op.f("uq_documents_number")),
    )
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_documents_payment_id"), ["payment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_documents_recipient_id"), ["recipient_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER documents_append_only BEFORE UPDATE OR DELETE ON documents"
            " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        )
    else:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER documents_refuse_{op_name.lower()} BEFORE {op_name} ON documents BEGIN"
                f" SELECT RAISE(ABORT, 'ledger: {op_name} on documents is refused: issued documents never change'); END"
            )


def downgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_documents_recipient_id"))
        batch_op.drop_index(batch_op.f("ix_documents_payment_id"))

    op.drop_table("documents")
    op.drop_table("parties")
    op.drop_table("document_sequences")
