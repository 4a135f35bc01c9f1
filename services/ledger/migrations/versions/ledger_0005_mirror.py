"""The Kafka mirror's checkpoints: what the relay knows the broker acknowledged, per
partition of the topic, so it can tell when the broker lost what it had acknowledged.

Revision ID: ledger_0005
Revises: ledger_0004
"""
import sqlalchemy as sa
from alembic import op

revision = "ledger_0005"
down_revision = "ledger_0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "mirror_partitions",
        sa.Column("topic", sa.Text(), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True),
        # The lowest offset the broker acknowledged to the newest relay round that wrote
        # to this partition: however the broker counts its end offset, a partition that
        # still holds that round ends after this offset (services/ledger/mirror_relay/).
        sa.Column("round_first_offset", sa.BigInteger(), nullable=False),
        # The highest offset ever acknowledged: a later acknowledgement at or below it
        # means the partition's log started again.
        sa.Column("last_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("round_first_offset >= 0 AND last_offset >= round_first_offset",
                           name="mirror_offsets_ordered"),
        schema="ledger",
    )


def downgrade():
    op.drop_table("mirror_partitions", schema="ledger")
