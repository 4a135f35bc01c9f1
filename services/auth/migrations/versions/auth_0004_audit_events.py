"""The audit trail of the auth service's actions (users made and roles granted at the
command line): append-only records the database refuses to change (shared/audit.py,
shared/audit_schema.py).

Revision ID: auth_0004
Revises: auth_0003
"""
from shared.audit_schema import create_audit_events, drop_audit_events

revision = "auth_0004"
down_revision = "auth_0003"
branch_labels = None
depends_on = None


def upgrade():
    create_audit_events("auth")


def downgrade():
    drop_audit_events("auth")
