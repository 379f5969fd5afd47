"""Hourly weeks below the provider's minimum charge, and disputes of weeks never charged.

`hourly_weeks.carried_in` is what earlier weeks of the contract, each below the
provider's minimum charge, added to this week's charge; `carried_to` names the week
whose charge took a carried week's amount (NULL while it waits). A carried week has an
amount and no escrow subject, so the amount constraint changes: a week without a
subject has nothing to bill or is carried. `week_disputes.cancelled` is the part of
`refunded` the client was never charged (the week's charge had not succeeded when the
dispute closed): the receivable is cancelled instead of a refund sent.
`hourly_weeks.reviewed_at` is when the week's review end was applied (its release, or
the advance of its protected part); NULL while it waits for a charge in flight. Weeks
whose review-end timer has fired get its time.

SQLite cannot change a CHECK constraint in place: `hourly_weeks` is rebuilt by
Alembic's batch mode, which copies its rows.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from ledger.db.schema import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

OLD_AMOUNT = "amount >= 0 AND (milestone_id IS NULL) = (amount = 0)"
NEW_AMOUNT = (
    "amount >= 0 AND carried_in >= 0 AND (milestone_id IS NULL OR amount + carried_in > 0)"
    " AND (milestone_id IS NOT NULL OR carried_in = 0)"
    " AND (carried_to IS NULL OR (milestone_id IS NULL AND amount > 0))"
)
CANCELLED = "cancelled >= 0 AND cancelled <= refunded"


def upgrade() -> None:
    with op.batch_alter_table("hourly_weeks", recreate="always") as batch:
        batch.add_column(sa.Column("carried_in", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("carried_to", sa.Date(), nullable=True))
        batch.add_column(sa.Column("reviewed_at", UTCDateTime(), nullable=True))
        batch.drop_constraint(op.f("ck_hourly_weeks_amount"), type_="check")
        batch.create_check_constraint(op.f("ck_hourly_weeks_amount"), NEW_AMOUNT)
    # Weeks whose review-end timer has fired were reviewed then.
    op.execute(
        "UPDATE hourly_weeks SET reviewed_at = (SELECT min(t.done_at) FROM timers t"
        " WHERE t.kind = 'week_review_end' AND t.subject_id = hourly_weeks.id AND t.done_at IS NOT NULL)"
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE week_disputes ADD COLUMN cancelled BIGINT NOT NULL DEFAULT 0"
            f" CONSTRAINT ck_week_disputes_cancelled CHECK ({CANCELLED})"
        )
    else:
        op.add_column("week_disputes", sa.Column("cancelled", sa.BigInteger(), nullable=False, server_default="0"))
        op.create_check_constraint(op.f("ck_week_disputes_cancelled"), "week_disputes", CANCELLED)


def downgrade() -> None:
    with op.batch_alter_table("week_disputes", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_week_disputes_cancelled"), type_="check")
        batch.drop_column("cancelled")
    with op.batch_alter_table("hourly_weeks", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_hourly_weeks_amount"), type_="check")
        batch.create_check_constraint(op.f("ck_hourly_weeks_amount"), OLD_AMOUNT)
        batch.drop_column("reviewed_at")
        batch.drop_column("carried_to")
        batch.drop_column("carried_in")
