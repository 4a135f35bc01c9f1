"""A payment's metadata (API.md v1.1), and the indexes that list a user's payments, newest
first, whether the user pays or is paid.

Revision ID: payments_0003
Revises: payments_0002
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "payments_0003"
down_revision = "payments_0002"
branch_labels = None
depends_on = None


def upgrade():
    # The client's string-to-string object; the gateway bounds it (50 keys, 40 and 500
    # characters) before it gets here.
    op.add_column("payments", sa.Column("metadata", postgresql.JSONB(), nullable=False,
                                        server_default=sa.text("'{}'::jsonb")),
                  schema="payments")
    op.create_check_constraint("metadata_is_object", "payments",
                               "jsonb_typeof(metadata) = 'object'", schema="payments")
    for side in ("payer", "merchant"):
        op.create_index("payments_by_{}_owner".format(side), "payments",
                        ["{}_owner_id".format(side), "created_at", "id"], schema="payments")
    op.create_index("payments_by_created", "payments", ["created_at", "id"], schema="payments")


def downgrade():
    op.drop_index("payments_by_created", "payments", schema="payments")
    for side in ("payer", "merchant"):
        op.drop_index("payments_by_{}_owner".format(side), "payments", schema="payments")
    op.drop_constraint("metadata_is_object", "payments", schema="payments")
    op.drop_column("payments", "metadata", schema="payments")
