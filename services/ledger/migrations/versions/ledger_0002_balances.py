"""Balances: one row per account the ledger has seen, kept by the postings that move money.

Revision ID: ledger_0002
Revises: ledger_0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "ledger_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "balances",
        # An accounts service account id (or a settlement account's). No foreign key:
        # the accounts table belongs to the accounts service.
        sa.Column("account_id", postgresql.UUID(as_uuid=False), primary_key=True),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        # Posted money in minor units. May be negative: overdrafts, settlement accounts.
        sa.Column("balance", sa.BigInteger(), nullable=False, server_default="0"),
        # Authorized, uncaptured money.
        sa.Column("held", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("held >= 0", name="held_not_negative"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso_4217"),
        schema="ledger",
    )


def downgrade():
    op.drop_table("balances", schema="ledger")
