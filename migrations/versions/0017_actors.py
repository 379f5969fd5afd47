"""Who did what: the actor of every entry, payment order and state change; stored audits.

`entries.actor` and `payment_orders.actor` name who wrote the row (`ledger.actors`):
an API key's id, `cli`, `worker`, `simulate`, `demo` or `system`. Rows written before
this revision get `unrecorded`: the column is added with that default, which fills
them without an UPDATE (entries are immutable: their triggers refuse one), and on
PostgreSQL the default is then dropped so every new row names its actor. SQLite cannot
drop a column's default in place; the code always names the actor.

`state_changes` is the history of states (milestones, contracts, payouts, refund
orders, chargebacks, week disputes, payment orders) with their actor; it starts empty.
`audit_runs` holds the audits the worker runs on its schedule, for `/metrics`.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ledger.db.schema import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in ("entries", "payment_orders"):
        op.add_column(table, sa.Column("actor", sa.String(64), nullable=False, server_default="unrecorded"))
        if postgres:
            op.alter_column(table, "actor", server_default=None)
    op.create_table(
        "state_changes",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(20), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "subject IN ('milestone', 'contract', 'payout', 'refund_order', 'dispute', 'week_dispute',"
            " 'payment_order')",
            name=op.f("ck_state_changes_subject"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_changes")),
    )
    op.create_index("ix_state_changes_subject", "state_changes", ["subject", "subject_id", "id"])
    op.create_table(
        "audit_runs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("failed_checks", JSON, nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_runs")),
    )


def downgrade() -> None:
    op.drop_table("audit_runs")
    op.drop_index("ix_state_changes_subject", table_name="state_changes")
    op.drop_table("state_changes")
    with op.batch_alter_table("payment_orders") as batch:
        batch.drop_column("actor")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column("entries", "actor")
    else:
        # A batch rebuild of `entries` would drop its immutability triggers; SQLite
        # 3.35+ drops a plain column in place.
        op.execute("ALTER TABLE entries DROP COLUMN actor")
