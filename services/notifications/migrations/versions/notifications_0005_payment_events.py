"""Webhooks may subscribe to the payment events of API.md v1.1: payment.authorized,
payment.voided, payment.expired and payment.failed.

Revision ID: notifications_0005
Revises: notifications_0004
"""
from alembic import op

revision = "notifications_0005"
down_revision = "notifications_0004"
branch_labels = None
depends_on = None

SCHEMA = "notifications"
BEFORE = ("transaction.completed", "transaction.failed", "payment.captured", "payment.refunded")
NOW = BEFORE + ("payment.authorized", "payment.voided", "payment.expired", "payment.failed")


def _known(event_types):
    op.drop_constraint("known_events", "webhooks", schema=SCHEMA)
    op.create_check_constraint(
        "known_events", "webhooks",
        "events <@ ARRAY[{}]::text[]".format(", ".join("'{}'".format(t) for t in event_types)),
        schema=SCHEMA)


def upgrade():
    _known(NOW)


def downgrade():
    _known(BEFORE)
