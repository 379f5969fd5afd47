"""The posting statement refuses a balance below its floor itself (PostgreSQL).

`ledger_refuse_below_floor` raises SQLSTATE `LF001` with the account and the lowest
balance it would reach as JSON in the error's DETAIL. The posting statement calls it
for every account it would take below its floor, so the statement fails as a whole
and can run as its own transaction (autocommit: one round trip, no BEGIN or COMMIT),
where a refusal read back by the client would come too late: the write would be
committed already. SQLite checks floors between its posting statements, as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

REFUSE_BELOW_FLOOR = """
CREATE FUNCTION ledger_refuse_below_floor(account_id bigint, lowest bigint, floor bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: account % would go to %, below its floor of %', account_id, lowest, floor
        USING ERRCODE = 'LF001',
              DETAIL = json_build_object('account_id', account_id, 'lowest', lowest, 'floor', floor)::text;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(REFUSE_BELOW_FLOOR)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_refuse_below_floor(bigint, bigint, bigint)")
