"""Entries: the immutable lines of every posting, one per account touched.

Revision ID: ledger_0003
Revises: ledger_0002
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "ledger_0003"
down_revision = "ledger_0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "entries",
        sa.Column("id", postgresql.UUID(as_uuid=False), primary_key=True),
        sa.Column("transaction_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("account_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        # Signed, in minor units: negative leaves the account, positive enters it.
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        # 1, 2, 3… per account: the order of the account's history, and what lets a
        # consumer of the Kafka mirror see a gap or a duplicate.
        sa.Column("account_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("amount <> 0", name="amount_not_zero"),
        sa.CheckConstraint("account_seq >= 1", name="account_seq_positive"),
        sa.UniqueConstraint("account_id", "account_seq", name="entries_account_seq"),
        schema="ledger",
    )
    op.create_index("entries_transaction_id", "entries", ["transaction_id"], schema="ledger")
    # Posted entries are history: corrections are new reversing postings, never edits.
    op.execute("""
        CREATE FUNCTION ledger.refuse_entry_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger entries are immutable (% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END $$;
        CREATE TRIGGER entries_immutable BEFORE UPDATE OR DELETE ON ledger.entries
            FOR EACH ROW EXECUTE FUNCTION ledger.refuse_entry_change();
        CREATE TRIGGER entries_not_truncated BEFORE TRUNCATE ON ledger.entries
            FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_entry_change();
    """)


def downgrade():
    op.drop_table("entries", schema="ledger")
    op.execute("DROP FUNCTION ledger.refuse_entry_change()")
