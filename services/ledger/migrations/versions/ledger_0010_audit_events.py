"""The audit trail of the ledger service's actions (account freezes and unfreezes): append-
only records the database refuses to change (shared/audit.py, shared/audit_schema.py).

Revision ID: ledger_0010
Revises: ledger_0009
"""
from shared.audit_schema import create_audit_events, drop_audit_events

revision = "ledger_0010"
down_revision = "ledger_0009"
branch_labels = None
depends_on = None


def upgrade():
    create_audit_events("ledger")


def downgrade():
    drop_audit_events("ledger")
