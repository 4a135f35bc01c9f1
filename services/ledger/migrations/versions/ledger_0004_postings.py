"""Postings: what makes a transaction post exactly once, the overdraft guarantee, the outbox.

Revision ID: ledger_0004
Revises: ledger_0003
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "ledger_0004"
down_revision = "ledger_0003"
branch_labels = None
depends_on = None

POSTING_TYPES = ("deposit", "withdrawal", "transfer", "payment", "capture", "refund")


def upgrade():
    # Balances learn what a posting needs under the row lock: the last entry's sequence
    # number, the overdraft limit (the accounts service's, as the latest posting carried
    # it) and whether the row is a currency's settlement account.
    op.add_column("balances", sa.Column(
        "last_seq", sa.BigInteger(), nullable=False, server_default="0"), schema="ledger")
    op.add_column("balances", sa.Column(
        "overdraft_limit", sa.BigInteger(), nullable=False, server_default="0"), schema="ledger")
    op.add_column("balances", sa.Column(
        "is_settlement", sa.Boolean(), nullable=False, server_default=sa.false()),
        schema="ledger")
    op.create_check_constraint("last_seq_not_negative", "balances", "last_seq >= 0",
                               schema="ledger")
    op.create_check_constraint("overdraft_limit_not_negative", "balances",
                               "overdraft_limit >= 0", schema="ledger")
    # The guarantee behind "no negative balance without an overdraft limit": the database
    # refuses it whatever the code above it does. Settlement accounts are where money
    # enters the books, so they go negative without limit.
    op.create_check_constraint(
        "balance_within_overdraft", "balances",
        "is_settlement OR balance - held >= -overdraft_limit", schema="ledger")

    # One row per posted transaction: its primary key is what makes a redelivered,
    # retried or raced posting move money once.
    op.create_table(
        "postings",
        sa.Column("transaction_id", postgresql.UUID(as_uuid=False), primary_key=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        # Resolved ids: a settlement account is stored by its id, never as null.
        sa.Column("debit_account_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("credit_account_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("type IN ({})".format(", ".join(
            "'{}'".format(kind) for kind in POSTING_TYPES)), name="posting_type"),
        sa.CheckConstraint("amount > 0", name="posting_amount_positive"),
        sa.CheckConstraint("debit_account_id <> credit_account_id", name="posting_two_accounts"),
        schema="ledger",
    )
    # Deleting a posting's row would let its transaction post a second time: postings
    # are history, like their entries (same refusal as ledger_0003's).
    op.execute("""
        CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON ledger.postings
            FOR EACH ROW EXECUTE FUNCTION ledger.refuse_entry_change();
        CREATE TRIGGER postings_not_truncated BEFORE TRUNCATE ON ledger.postings
            FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_entry_change();
    """)

    # The transactional outbox: written in the same savepoint as the entries, so the
    # Kafka mirror (a relay reading this table) can never miss or invent a posting.
    op.create_table(
        "outbox",
        # bigserial: the relay publishes in id order, which is commit order per account
        # because an account's entries are written under its row lock.
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("account_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("account_seq", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        # One message per entry.
        sa.UniqueConstraint("account_id", "account_seq", name="outbox_account_seq"),
        schema="ledger",
    )
    # What the relay scans: the unpublished rows, oldest first. Partial, so it stays
    # as small as the backlog however long the history grows.
    op.create_index("outbox_unpublished", "outbox", ["id"], schema="ledger",
                    postgresql_where=sa.text("published_at IS NULL"))


def downgrade():
    op.drop_table("outbox", schema="ledger")
    op.drop_table("postings", schema="ledger")
    for name in ("balance_within_overdraft", "overdraft_limit_not_negative",
                 "last_seq_not_negative"):
        op.drop_constraint(name, "balances", schema="ledger", type_="check")
    for column in ("is_settlement", "overdraft_limit", "last_seq"):
        op.drop_column("balances", column, schema="ledger")
