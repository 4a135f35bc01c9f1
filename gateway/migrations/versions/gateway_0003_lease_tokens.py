"""Fenced idempotency leases: each holder of a key's lease has a token of its own.

A request that runs past its lease may find a retry has taken the key over; its late
answer must then neither overwrite the retry's nor release the key under it. Every claim
and take-over writes a new token, and storing or releasing applies only with the current
one.

Revision ID: gateway_0003
Revises: gateway_0002
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "gateway_0003"
down_revision = "gateway_0002"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("idempotency_keys", sa.Column("lease_token", postgresql.UUID(as_uuid=False),
                                                nullable=True), schema="gateway")


def downgrade():
    op.drop_column("idempotency_keys", "lease_token", schema="gateway")
