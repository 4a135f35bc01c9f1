"""Webhooks, the events received (the dedupe record), deliveries and every attempt at them.

Revision ID: notifications_0002
Revises: notifications_0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "notifications_0002"
down_revision = "notifications_0001"
branch_labels = None
depends_on = None

SCHEMA = "notifications"
UUID = postgresql.UUID(as_uuid=False)


def _now():
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                     server_default=sa.func.now())


def upgrade():
    op.create_table(
        "webhooks",
        sa.Column("id", UUID, primary_key=True),
        # An auth user's id. No foreign key: auth's tables belong to auth.
        sa.Column("owner_id", UUID, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        # The HMAC key of the X-Signature header: kept, since every delivery is signed with it.
        sa.Column("secret", sa.Text(), nullable=False),
        _now(),
        # Deleted webhooks stay, so the deliveries made to them keep their history.
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("cardinality(events) >= 1", name="has_events"),
        sa.CheckConstraint(
            "events <@ ARRAY['transaction.completed', 'transaction.failed', "
            "'payment.captured', 'payment.refunded']::text[]", name="known_events"),
        schema=SCHEMA,
    )
    # An owner's live webhooks, oldest first: listing, and the fan-out of each event.
    op.create_index("webhooks_owner_created_id", "webhooks", ["owner_id", "created_at", "id"],
                    schema=SCHEMA, postgresql_where=sa.text("deleted_at IS NULL"))

    op.create_table(
        "events",
        # The event's own id: the primary key is the dedupe record. A redelivered event
        # conflicts here and creates no second set of deliveries.
        sa.Column("id", UUID, primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        # What a webhook receives: {id, type, created_at, data}.
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.Column("user_ids", postgresql.ARRAY(UUID), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )

    op.create_table(
        "deliveries",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("event_id", UUID, sa.ForeignKey("notifications.events.id"), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        # The user the delivery is for (who sees it in GET /v1/notifications).
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("webhook_id", UUID, sa.ForeignKey("notifications.webhooks.id"),
                  nullable=True),
        # The webhook's URL, or the e-mail address once resolved (null until then).
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        # Every attempt recorded; the give-up limit counts only the recipient's failures
        # (a lookup deferred because auth was down is no failure of the recipient).
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        # The lease of the process sending it now: when that process dies the lease runs
        # out and the delivery is due again. The token tells the holder's write-back apart.
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_token", UUID, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _now(),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("channel IN ('email', 'webhook')", name="known_channel"),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="known_status"),
        sa.CheckConstraint("(channel = 'webhook') = (webhook_id IS NOT NULL)",
                           name="webhook_iff_webhook_channel"),
        sa.CheckConstraint("attempts >= 0 AND failures >= 0 AND failures <= attempts",
                           name="attempt_counts"),
        schema=SCHEMA,
    )
    # Belt and braces behind the event dedupe: one delivery per event, user and target.
    op.create_index("deliveries_one_webhook_delivery", "deliveries",
                    ["event_id", "user_id", "webhook_id"], unique=True, schema=SCHEMA,
                    postgresql_where=sa.text("channel = 'webhook'"))
    op.create_index("deliveries_one_email_delivery", "deliveries", ["event_id", "user_id"],
                    unique=True, schema=SCHEMA, postgresql_where=sa.text("channel = 'email'"))
    # The delivery loop's scan: pending ones by due time.
    op.create_index("deliveries_due", "deliveries", ["next_attempt_at"], schema=SCHEMA,
                    postgresql_where=sa.text("status = 'pending'"))
    # A user's deliveries, newest first.
    op.create_index("deliveries_user_created_id", "deliveries",
                    ["user_id", sa.text("created_at DESC"), sa.text("id DESC")], schema=SCHEMA)
    op.create_index("deliveries_webhook_pending", "deliveries", ["webhook_id"], schema=SCHEMA,
                    postgresql_where=sa.text("status = 'pending'"))

    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("delivery_id", UUID, sa.ForeignKey("notifications.deliveries.id"),
                  nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        # succeeded: 2xx / accepted by the SMTP server; failed: the recipient's side did
        # not take it (retried); deferred: our own dependency (auth) did not answer.
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("outcome IN ('succeeded', 'failed', 'deferred')",
                           name="known_outcome"),
        schema=SCHEMA,
    )
    op.create_index("delivery_attempts_delivery", "delivery_attempts",
                    ["delivery_id", "attempt"], schema=SCHEMA)


def downgrade():
    op.drop_table("delivery_attempts", schema=SCHEMA)
    op.drop_table("deliveries", schema=SCHEMA)
    op.drop_table("events", schema=SCHEMA)
    op.drop_table("webhooks", schema=SCHEMA)
