"""Webhook secrets sealed at rest (services/notifications/secret_box.py).

Nothing is rewritten here: a migration does not have the key, and must not (only the
notifications service reads it). Secrets stored before stay readable (their ``whsec_``
prefix tells them from sealed ones) and the service seals them when it runs; this index
finds those still in clear, and is empty once they are all sealed.

Revision ID: notifications_0003
Revises: notifications_0002
"""
import sqlalchemy as sa
from alembic import op

revision = "notifications_0003"
down_revision = "notifications_0002"
branch_labels = None
depends_on = None

SCHEMA = "notifications"


def upgrade():
    op.create_index("webhooks_clear_secret", "webhooks", ["id"], schema=SCHEMA,
                    postgresql_where=sa.text("left(secret, 6) = 'whsec_'"))
    op.execute("COMMENT ON COLUMN notifications.webhooks.secret IS 'The HMAC key of the "
               "deliveries, sealed with Fernet (secret_box.py); whsec_... only before that'")


def downgrade():
    op.execute("COMMENT ON COLUMN notifications.webhooks.secret IS NULL")
    op.drop_index("webhooks_clear_secret", table_name="webhooks", schema=SCHEMA)
