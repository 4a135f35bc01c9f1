"""Accounts join the ledger: an account's state (owner, currency, status, overdraft limit,
version) lives beside its money, so a posting checks that state under the same row lock
that guards the balance (services/ledger/accounts.py).

A database from before keeps its accounts: the accounts service's table moves into this
schema as it is, and the schema it leaves is dropped.

Revision ID: ledger_0007
Revises: ledger_0006
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "ledger_0007"
down_revision = "ledger_0006"
branch_labels = None
depends_on = None


def upgrade():
    moved = op.get_bind().execute(sa.text(
        "SELECT to_regclass('accounts.accounts') IS NOT NULL")).scalar_one()
    if moved:
        op.execute("ALTER TABLE accounts.accounts SET SCHEMA ledger")
    else:
        op.create_table(
            "accounts",
            sa.Column("id", postgresql.UUID(as_uuid=False), primary_key=True),
            # An auth user's id. No foreign key: auth's tables belong to auth.
            sa.Column("owner_id", postgresql.UUID(as_uuid=False), nullable=False),
            sa.Column("name", sa.Text(), nullable=True),
            sa.Column("currency", sa.CHAR(3), nullable=False),
            sa.Column("status", sa.Text(), nullable=False, server_default="active"),
            sa.Column("overdraft_limit", sa.BigInteger(), nullable=False, server_default="0"),
            # Optimistic locking: every change is `SET version = version + 1 WHERE version
            # = :seen`, and postings carry the version their validators judged.
            sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                      server_default=sa.func.now()),
            sa.CheckConstraint("status IN ('active', 'frozen', 'closed')", name="known_status"),
            sa.CheckConstraint("overdraft_limit >= 0", name="overdraft_limit_not_negative"),
            sa.CheckConstraint("version >= 1", name="version_positive"),
            sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso_4217"),
            schema="ledger",
        )
        # An owner's accounts, oldest first: the list RPC's keyset pagination walks it.
        op.create_index("accounts_owner_created_id", "accounts",
                        ["owner_id", "created_at", "id"], schema="ledger")
    # Every account has its balances row from the start: the row whose lock guards it.
    op.execute("""
        INSERT INTO ledger.balances (account_id, currency, is_settlement)
        SELECT id, currency, false FROM ledger.accounts
        ON CONFLICT (account_id) DO NOTHING
    """)
    op.execute("DROP SCHEMA IF EXISTS accounts CASCADE")


def downgrade():
    op.execute("CREATE SCHEMA IF NOT EXISTS accounts")
    op.execute("ALTER TABLE ledger.accounts SET SCHEMA accounts")
