"""The outbox of transaction events (completed, failed), written in the commit that
finishes the transaction and relayed to Nameko events, so none is lost.

Revision ID: transactions_0003
Revises: transactions_0002
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "transactions_0003"
down_revision = "transactions_0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("event_id", postgresql.UUID(as_uuid=False), nullable=False, unique=True),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        schema="transactions",
    )
    op.create_index("outbox_undispatched", "outbox", ["id"], schema="transactions",
                    postgresql_where=sa.text("dispatched_at IS NULL"))


def downgrade():
    op.drop_table("outbox", schema="transactions")
