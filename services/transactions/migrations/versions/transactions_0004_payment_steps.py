"""Payment steps: an authorization that holds instead of moving money, and a capture
that names the authorization whose hold it settles.

Revision ID: transactions_0004
Revises: transactions_0003
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "transactions_0004"
down_revision = "transactions_0003"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("transactions", sa.Column("hold", sa.Boolean(), nullable=False,
                                            server_default=sa.false()), schema="transactions")
    op.add_column("transactions", sa.Column("authorization_id", postgresql.UUID(as_uuid=False),
                                            nullable=True), schema="transactions")
    op.create_check_constraint("hold_only_for_payments", "transactions",
                               "NOT hold OR type = 'payment'", schema="transactions")
    op.create_check_constraint("capture_names_its_authorization", "transactions",
                               "(type = 'capture') = (authorization_id IS NOT NULL)",
                               schema="transactions")


def downgrade():
    op.drop_constraint("capture_names_its_authorization", "transactions", schema="transactions")
    op.drop_constraint("hold_only_for_payments", "transactions", schema="transactions")
    op.drop_column("transactions", "authorization_id", schema="transactions")
    op.drop_column("transactions", "hold", schema="transactions")
