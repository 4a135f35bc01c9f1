"""The gateway schema; it will hold idempotency records (the gateway owns nothing else durable).

Revision ID: gateway_0001
Revises:
"""
revision = "gateway_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    # shared/migrations/env.py creates the schema (the version table lives in it).
    pass


def downgrade():
    pass
