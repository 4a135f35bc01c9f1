"""Batches of transfers (POST /v1/transfers/batch), the account versions a transaction was
approved on, and the client's metadata of a transaction.

A batch is one request of many transfers under one Idempotency-Key; each item is an
ordinary transaction that points at its batch and its place in it, and carries no key
of its own (the batch's key makes the whole batch idempotent). The versions are what the
ledger checks under its lock before it posts (optimistic locking), kept with the
decision so that recovery posts on exactly what was approved.

Revision ID: transactions_0005
Revises: transactions_0004
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "transactions_0005"
down_revision = "transactions_0004"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=False)


def upgrade():
    op.create_table(
        "batches",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("initiator_id", UUID, nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        # All or nothing: one item failing fails every other with batch_aborted.
        sa.Column("atomic", sa.Boolean(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("item_count BETWEEN 1 AND 1000", name="batch_size"),
        sa.UniqueConstraint("initiator_id", "idempotency_key",
                            name="one_batch_per_idempotency_key"),
        schema="transactions",
    )
    for column in (sa.Column("batch_id", UUID, sa.ForeignKey("transactions.batches.id"),
                             nullable=True),
                   sa.Column("batch_index", sa.Integer(), nullable=True),
                   sa.Column("source_version", sa.Integer(), nullable=True),
                   sa.Column("destination_version", sa.Integer(), nullable=True),
                   sa.Column("metadata", postgresql.JSONB(), nullable=True)):
        op.add_column("transactions", column, schema="transactions")
    op.alter_column("transactions", "idempotency_key", nullable=True, schema="transactions")
    op.create_check_constraint(
        "keyed_or_in_a_batch", "transactions",
        "(batch_id IS NULL) = (idempotency_key IS NOT NULL) "
        "AND (batch_id IS NULL) = (batch_index IS NULL)", schema="transactions")
    op.create_index("transactions_of_batch", "transactions", ["batch_id", "batch_index"],
                    unique=True, schema="transactions",
                    postgresql_where=sa.text("batch_id IS NOT NULL"))


def downgrade():
    op.drop_index("transactions_of_batch", table_name="transactions", schema="transactions")
    op.drop_constraint("keyed_or_in_a_batch", "transactions", schema="transactions")
    op.alter_column("transactions", "idempotency_key", nullable=False, schema="transactions")
    for column in ("metadata", "destination_version", "source_version", "batch_index",
                   "batch_id"):
        op.drop_column("transactions", column, schema="transactions")
    op.drop_table("batches", schema="transactions")
