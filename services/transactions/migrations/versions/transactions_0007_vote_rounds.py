"""The signed vote rounds: a validator signs all its votes of a round at once, so what
verifies a stored vote is the round it came in (shared/votes.py ``verify_recorded_vote``).

One row per validator answer that counted: the validator, the key it named, its signature
and the SHA-256 of each vote's line, in order (32 bytes a vote). A stored vote names its
round (``round_id`` in ``transactions.votes``).

Revision ID: transactions_0007
Revises: transactions_0006
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "transactions_0007"
down_revision = "transactions_0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "vote_rounds",
        sa.Column("id", postgresql.UUID(as_uuid=False), primary_key=True),
        sa.Column("validator_id", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("leaves", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema="transactions",
    )


def downgrade():
    op.drop_table("vote_rounds", schema="transactions")
