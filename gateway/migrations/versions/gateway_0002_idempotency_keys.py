"""Idempotency keys: the first response to each (user, key), replayed to retries.

Revision ID: gateway_0002
Revises: gateway_0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "gateway_0002"
down_revision = "gateway_0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        # What the key was first used for (route, path, canonical body): another use is a 422.
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("response_headers", postgresql.JSONB(), nullable=True),
        # While the first request runs its gateway holds this lease; a gateway that
        # dies mid-request lets it lapse and a retry may take over.
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key"),
        sa.CheckConstraint("length(key) BETWEEN 1 AND 255", name="key_length"),
        sa.CheckConstraint("(status_code IS NULL) = (response_body IS NULL)",
                           name="response_complete"),
        schema="gateway",
    )
    op.create_index("idempotency_keys_expires_at", "idempotency_keys", ["expires_at"],
                    schema="gateway")


def downgrade():
    op.drop_table("idempotency_keys", schema="gateway")
