"""Hourly weeks past due and protected: who paused a contract, and when a client's
payment method was verified.

`contracts.paused_by` is 'request' when the marketplace paused it and 'past_due' when
the weekly charges failed on as many days as the policy allows (the pause is lifted
when the client's money comes in). Existing paused contracts were paused on request.
SQLite adds the column with its CHECK by ALTER TABLE ADD COLUMN (see 0013).
`parties.payment_method_verified_at` is set by the marketplace; the tracked time
within the limit of a week closed after it is protected.

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

CHECK = "paused_by IS NULL OR paused_by IN ('request', 'past_due')"


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


def downgrade() -> None:
    op.drop_column("parties", "payment_method_verified_at")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_contracts_paused_by"), "contracts", type_="check")
    op.drop_column("contracts", "paused_by")
