"""Transactions and the steps of their state machine.

Revision ID: transactions_0002
Revises: transactions_0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "transactions_0002"
down_revision = "transactions_0001"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=False)


def upgrade():
    op.create_table(
        "transactions",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        # What the vote round decided: approve, reject, no_quorum; or timeout when
        # recovery gave up on an undecided transaction. Null while undecided.
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("initiator_id", UUID, nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("source_account_id", UUID, nullable=True),
        sa.Column("destination_account_id", UUID, nullable=True),
        # Owners at the time of the request: who may see the transaction.
        sa.Column("source_owner_id", UUID, nullable=True),
        sa.Column("destination_owner_id", UUID, nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        # The counted votes, signatures included, so an approval can be audited.
        sa.Column("votes", postgresql.JSONB(), nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("type IN ('deposit', 'withdrawal', 'transfer', 'payment', "
                           "'capture', 'refund')", name="known_type"),
        sa.CheckConstraint("status IN ('pending', 'completed', 'failed')", name="known_status"),
        sa.CheckConstraint("decision IN ('approve', 'reject', 'no_quorum', 'timeout')",
                           name="known_decision"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("(status = 'pending') = (completed_at IS NULL)",
                           name="completed_when_final"),
        sa.CheckConstraint("(status = 'failed') = (failure_reason IS NOT NULL)",
                           name="failed_with_reason"),
        sa.CheckConstraint("status <> 'completed' OR decision = 'approve'",
                           name="completed_only_if_approved"),
        sa.UniqueConstraint("initiator_id", "idempotency_key", name="one_per_idempotency_key"),
        schema="transactions",
    )
    op.create_index("transactions_in_flight", "transactions", ["created_at"],
                    schema="transactions", postgresql_where=sa.text("status = 'pending'"))
    for column in ("source_owner_id", "destination_owner_id", "source_account_id",
                   "destination_account_id"):
        op.create_index("transactions_by_{}".format(column), "transactions",
                        [column, sa.text("created_at DESC"), sa.text("id DESC")],
                        schema="transactions")
    op.create_table(
        "transaction_steps",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("transaction_id", UUID, sa.ForeignKey("transactions.transactions.id"),
                  nullable=False),
        # received, decided, posted, failed, recovered
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("detail", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema="transactions",
    )
    op.create_index("transaction_steps_by_transaction", "transaction_steps",
                    ["transaction_id", "id"], schema="transactions")


def downgrade():
    op.drop_table("transaction_steps", schema="transactions")
    op.drop_table("transactions", schema="transactions")
