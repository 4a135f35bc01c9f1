"""The audit trail of the notifications service's actions (webhooks created and deleted):
append-only records the database refuses to change (shared/audit.py,
shared/audit_schema.py).

Revision ID: notifications_0004
Revises: notifications_0003
"""
from shared.audit_schema import create_audit_events, drop_audit_events

revision = "notifications_0004"
down_revision = "notifications_0003"
branch_labels = None
depends_on = None


def upgrade():
    create_audit_events("notifications")


def downgrade():
    drop_audit_events("notifications")
