"""Payments, the operations on them (authorize, capture, void, refund), and the outbox of
payment events.

Revision ID: payments_0002
Revises: payments_0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "payments_0002"
down_revision = "payments_0001"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=False)


def upgrade():
    op.create_table(
        "payments",
        sa.Column("id", UUID, primary_key=True),
        # pending until the authorization is decided; then as API.md lists.
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("capture", sa.Boolean(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("captured_amount", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False, server_default="0"),
        # Refunds under way: counted against the captured amount before they are decided,
        # so two concurrent refunds can never add up to more than was captured.
        sa.Column("refund_reserved", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("payer_account_id", UUID, nullable=False),
        sa.Column("merchant_account_id", UUID, nullable=False),
        sa.Column("payer_owner_id", UUID, nullable=False),
        sa.Column("merchant_owner_id", UUID, nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        # The transaction of the authorization (or of the one-step charge).
        sa.Column("authorization_id", UUID, nullable=True),
        # The capture or void under way: at most one settles the hold.
        sa.Column("settling_operation_id", UUID, nullable=True),
        sa.Column("initiator_id", UUID, nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        # An authorization not captured by then is voided by the system.
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'authorized', 'captured', "
                           "'partially_refunded', 'refunded', 'voided', 'failed')",
                           name="known_status"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("captured_amount BETWEEN 0 AND amount", name="captured_within_amount"),
        sa.CheckConstraint("refunded_amount >= 0 AND refund_reserved >= 0 AND "
                           "refunded_amount + refund_reserved <= captured_amount",
                           name="refunds_within_captured"),
        sa.CheckConstraint("(status = 'failed') = (failure_reason IS NOT NULL)",
                           name="failed_with_reason"),
        sa.UniqueConstraint("initiator_id", "idempotency_key", name="one_per_idempotency_key"),
        schema="payments",
    )
    op.create_index("payments_expiring", "payments", ["expires_at"], schema="payments",
                    postgresql_where=sa.text("status = 'authorized'"))
    op.create_table(
        "operations",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.payments.id"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        # The transaction that moves (or holds) the money; a void has none: it releases
        # the hold at the ledger.
        sa.Column("transaction_id", UUID, nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        # Null: the system (an expired authorization).
        sa.Column("initiator_id", UUID, nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('authorize', 'capture', 'void', 'refund')",
                           name="known_kind"),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="known_status"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("(status = 'pending') = (finished_at IS NULL)",
                           name="finished_when_final"),
        sa.UniqueConstraint("payment_id", "kind", "idempotency_key",
                            name="one_operation_per_idempotency_key"),
        schema="payments",
    )
    op.create_index("operations_by_payment", "operations", ["payment_id", "created_at"],
                    schema="payments")
    op.create_index("operations_in_flight", "operations", ["created_at"], schema="payments",
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID, nullable=False, unique=True),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        schema="payments",
    )
    op.create_index("outbox_undispatched", "outbox", ["id"], schema="payments",
                    postgresql_where=sa.text("dispatched_at IS NULL"))


def downgrade():
    op.drop_table("outbox", schema="payments")
    op.drop_table("operations", schema="payments")
    op.drop_table("payments", schema="payments")
