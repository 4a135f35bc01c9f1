"""Accounts: owner, currency, status, overdraft limit and the version that guards them.

Revision ID: accounts_0002
Revises: accounts_0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "accounts_0002"
down_revision = "accounts_0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "accounts",
        sa.Column("id", postgresql.UUID(as_uuid=False), primary_key=True),
        # An auth user's id. No foreign key: auth's tables belong to auth.
        sa.Column("owner_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="active"),
        sa.Column("overdraft_limit", sa.BigInteger(), nullable=False, server_default="0"),
        # Optimistic locking: every change is `... SET version = version + 1 WHERE version = :seen`.
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("status IN ('active', 'frozen', 'closed')", name="known_status"),
        sa.CheckConstraint("overdraft_limit >= 0", name="overdraft_limit_not_negative"),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso_4217"),
        schema="accounts",
    )
    # An owner's accounts, oldest first: the list RPC's keyset pagination walks this index.
    op.create_index(
        "accounts_owner_created_id",
        "accounts",
        ["owner_id", "created_at", "id"],
        schema="accounts",
    )


def downgrade():
    op.drop_index("accounts_owner_created_id", table_name="accounts", schema="accounts")
    op.drop_table("accounts", schema="accounts")
