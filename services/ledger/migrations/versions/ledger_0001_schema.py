"""The ledger schema; its tables arrive with the features that need them.

Revision ID: ledger_0001
Revises:
"""
revision = "ledger_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    # shared/migrations/env.py creates the schema (the version table lives in it).
    pass


def downgrade():
    pass
