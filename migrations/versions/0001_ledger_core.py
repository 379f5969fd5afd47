"""The ledger core: accounts, entries, postings, stored balances, and the
database-side guards of the journal's invariants.

On both databases: posting amounts are positive (CHECK), a posting's currency is
its account's (composite foreign key), and entries and postings refuse UPDATE and
DELETE (triggers). On PostgreSQL also: TRUNCATE is refused, and every entry's
postings balance per currency, checked at commit by a deferred constraint trigger,
so no writer, however it reaches the database, can leave an unbalanced entry
behind. (An entry's postings are positive, so a balanced entry has none or at
least two; `ledger audit` reports an entry without postings.)

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from ledger.db.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")

POSTGRESQL_GUARDS = [
    """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger: % on % is refused: the journal is append-only; correct a mistake with a reversing entry',
            TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE FUNCTION ledger_check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad record;
    BEGIN
        SELECT currency,
               sum(CASE WHEN side = 'debit' THEN amount ELSE 0 END) AS debits,
               sum(CASE WHEN side = 'credit' THEN amount ELSE 0 END) AS credits
          INTO bad
          FROM postings
         WHERE entry_id = NEW.entry_id
         GROUP BY currency
        HAVING sum(CASE WHEN side = 'debit' THEN amount ELSE -amount END) <> 0
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ledger: entry % does not balance in %: debits %, credits %',
                NEW.entry_id, bad.currency, bad.debits, bad.credits
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE CONSTRAINT TRIGGER postings_balance_per_currency
        AFTER INSERT ON postings DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_balanced()
    """,
    "CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries"
    " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
    "CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries"
    " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()",
    "CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings"
    " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
    "CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings"
    " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()",
]

POSTGRESQL_GUARDS_DOWN = [
    "DROP TRIGGER postings_no_truncate ON postings",
    "DROP TRIGGER postings_append_only ON postings",
    "DROP TRIGGER entries_no_truncate ON entries",
    "DROP TRIGGER entries_append_only ON entries",
    "DROP TRIGGER postings_balance_per_currency ON postings",
    "DROP FUNCTION ledger_check_entry_balanced()",
    "DROP FUNCTION ledger_refuse_change()",
]


def sqlite_guards() -> list[str]:
    return [
        f"CREATE TRIGGER {table}_refuse_{op_name.lower()} BEFORE {op_name} ON {table} BEGIN"
        f" SELECT RAISE(ABORT, 'ledger: {op_name} on {table} is refused: the journal is append-only;"
        " correct a mistake with a reversing entry'); END"
        for table in ("entries", "postings")
        for op_name in ("UPDATE", "DELETE")
    ]


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("code", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("normal_side", sa.String(6), nullable=False),
        sa.Column("floor", sa.BigInteger(), nullable=True),
        sa.Column("slots", sa.SmallInteger(), nullable=False),
        sa.Column("metadata", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("code", "currency", name="uq_accounts_code_currency"),
        sa.UniqueConstraint("id", "currency", name="uq_accounts_id_currency"),
        sa.CheckConstraint("type IN ('asset', 'liability', 'equity', 'revenue', 'expense')", name="ck_accounts_type"),
        sa.CheckConstraint("normal_side IN ('debit', 'credit')", name="ck_accounts_normal_side"),
        sa.CheckConstraint("slots >= 1 AND (floor IS NULL OR slots = 1)", name="ck_accounts_slots"),
    )
    op.create_table(
        "entries",
        sa.Column("id", ID, primary_key=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("refs", JSON_DOCUMENT, nullable=False),
        sa.Column("metadata", JSON_DOCUMENT, nullable=False),
        sa.Column("reverses_entry_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_entries"),
        sa.UniqueConstraint("idempotency_key", name="uq_entries_idempotency_key"),
        sa.UniqueConstraint("reverses_entry_id", name="uq_entries_reverses_entry_id"),
        sa.ForeignKeyConstraint(
            ["reverses_entry_id"], ["entries.id"], name="fk_entries_reverses_entry_id_entries", ondelete="RESTRICT"
        ),
    )
    op.create_index("ix_entries_effective_at", "entries", ["effective_at"])
    op.create_table(
        "postings",
        sa.Column("id", ID, primary_key=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("side", sa.String(6), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_postings"),
        sa.ForeignKeyConstraint(["entry_id"], ["entries.id"], name="fk_postings_entry_id_entries", ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["account_id", "currency"],
            ["accounts.id", "accounts.currency"],
            name="fk_postings_account_id_currency_accounts",
            ondelete="RESTRICT",
        ),
        sa.CheckConstraint("amount > 0", name="ck_postings_amount_positive"),
        sa.CheckConstraint("side IN ('debit', 'credit')", name="ck_postings_side"),
    )
    op.create_index("ix_postings_entry_id", "postings", ["entry_id"])
    op.create_index("ix_postings_account_id_id", "postings", ["account_id", "id"])
    op.create_table(
        "balances",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "slot", name="pk_balances"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_balances_account_id_accounts", ondelete="RESTRICT"
        ),
    )
    guards = POSTGRESQL_GUARDS if op.get_bind().dialect.name == "postgresql" else sqlite_guards()
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_GUARDS_DOWN:
            op.execute(statement)
    op.drop_table("balances")
    op.drop_table("postings")
    op.drop_table("entries")
    op.drop_table("accounts")
