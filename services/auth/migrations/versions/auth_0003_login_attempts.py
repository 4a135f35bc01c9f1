"""The login brake's counts: failed logins per (e-mail address, client), see
services/auth/login_brake.py.

Revision ID: auth_0003
Revises: auth_0002
"""
import sqlalchemy as sa
from alembic import op

revision = "auth_0003"
down_revision = "auth_0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "login_attempts",
        # Hex SHA-256 of the normalized address: a copy of the table names no one. No
        # foreign key: unknown addresses are braked too.
        sa.Column("email_hash", sa.Text(), primary_key=True),
        # The client's IP address (an IPv6 client's /64).
        sa.Column("client", sa.Text(), primary_key=True),
        # Attempts since the last success, each counted before its password was checked.
        sa.Column("failures", sa.Integer(), nullable=False),
        # Until when the pair's next attempt is answered 429 without a check.
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("failures >= 0", name="failures_not_negative"),
        schema="auth",
    )
    # The purge of pairs quiet for long.
    op.create_index("login_attempts_last_attempt_at", "login_attempts", ["last_attempt_at"],
                    schema="auth")


def downgrade():
    op.drop_table("login_attempts", schema="auth")
