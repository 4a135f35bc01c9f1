"""The ``audit_events`` table of a service's schema, for that service's migration
(shared/audit.py reads and writes it). Its layout is history once migrated: change it with
new functions here and new migrations, never by editing these."""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


def create_audit_events(schema):
    op.create_table(
        "audit_events",
        sa.Column("id", postgresql.UUID(as_uuid=False), primary_key=True),
        # clock_timestamp(): the moment the action wrote it, not its transaction's start.
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("clock_timestamp()")),
        sa.Column("actor_type", sa.Text(), nullable=False),
        # A user id, an operator's login name (actor_type cli), or "unnamed".
        sa.Column("actor_id", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=False,
                  server_default=sa.text("'{}'::jsonb")),
        # The X-Request-ID of the HTTP request, or the command line's own id.
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.CheckConstraint("actor_type IN ('user', 'cli', 'service')", name="actor_type"),
        schema=schema,
    )
    # The list's order, newest first (keyset pagination walks it backwards).
    op.create_index("audit_events_occurred", "audit_events", ["occurred_at", "id"],
                    schema=schema)
    # A record is history: the database refuses to change or remove one, as it refuses
    # for ledger entries.
    op.execute("""
        CREATE FUNCTION "{schema}".refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit events are immutable (% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END $$;
        CREATE TRIGGER audit_events_immutable BEFORE UPDATE OR DELETE ON "{schema}".audit_events
            FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse_audit_change();
        CREATE TRIGGER audit_events_not_truncated BEFORE TRUNCATE ON "{schema}".audit_events
            FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".refuse_audit_change();
    """.format(schema=schema))


def drop_audit_events(schema):
    op.drop_table("audit_events", schema=schema)
    op.execute('DROP FUNCTION "{}".refuse_audit_change()'.format(schema))
