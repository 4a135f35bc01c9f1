"""Each Kafka mirror message carries the W3C traceparent of the posting that wrote it
(shared/tracing.py): the relay sends it as the message's ``traceparent`` header, so a
consumer of the mirror can join the trace. NULL for rows from before, and for postings
made outside any trace.

Revision ID: ledger_0008
Revises: ledger_0007
"""
import sqlalchemy as sa
from alembic import op

revision = "ledger_0008"
down_revision = "ledger_0007"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: adding it rewrites nothing (PostgreSQL keeps it in the catalog).
    op.add_column("outbox", sa.Column("traceparent", sa.Text, nullable=True), schema="ledger")


def downgrade():
    op.drop_column("outbox", "traceparent", schema="ledger")
