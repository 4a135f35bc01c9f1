"""Refresh tokens, grouped in families (one login, one family), stored as SHA-256 hashes.

Revision ID: auth_0002
Revises: auth_0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "auth_0002"
down_revision = "auth_0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "refresh_families",
        sa.Column("id", postgresql.UUID(as_uuid=False), primary_key=True),
        sa.Column(
            "user_id",
            postgresql.UUID(as_uuid=False),
            sa.ForeignKey("auth.users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        # Absolute: rotation never moves it (see services/auth/refresh_tokens.py).
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(revoked_at IS NULL) = (revoked_reason IS NULL)", name="revocation_has_reason"
        ),
        schema="auth",
    )
    op.create_index(
        "refresh_families_user_id", "refresh_families", ["user_id"], schema="auth"
    )
    op.create_table(
        "refresh_tokens",
        # Hex SHA-256 of the token: a copy of the table holds nothing a client could present.
        sa.Column("token_hash", sa.Text(), primary_key=True),
        sa.Column(
            "family_id",
            postgresql.UUID(as_uuid=False),
            sa.ForeignKey("auth.refresh_families.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "issued_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True),
        schema="auth",
    )
    op.create_index(
        "refresh_tokens_family_id", "refresh_tokens", ["family_id"], schema="auth"
    )


def downgrade():
    op.drop_table("refresh_tokens", schema="auth")
    op.drop_table("refresh_families", schema="auth")
