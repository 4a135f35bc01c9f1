"""The notifications tables (webhooks, received events, deliveries with their lease, and the
log of every attempt); the events received (the dedupe record) and the deliveries they make;
a user's deliveries with their attempts, as the API shows them.

A user's webhooks are kept by webhook_records.py; the delivery loop leases and settles
deliveries through delivery_leases.py."""
import uuid

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared import cursors
from shared.ids import rfc3339

EVENT_TYPES = ("transaction.completed", "transaction.failed", "payment.authorized",
               "payment.captured", "payment.refunded", "payment.voided", "payment.expired",
               "payment.failed")
STATUSES = ("pending", "delivered", "failed")
MAX_ERROR_LENGTH = 500

metadata = MetaData(schema="notifications")
ID = UUID(as_uuid=False)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", ID, primary_key=True),
    Column("owner_id", ID, nullable=False),
    Column("url", Text, nullable=False),
    Column("events", ARRAY(Text), nullable=False),
    Column("secret", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("source", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("body", JSONB, nullable=False),
    Column("user_ids", ARRAY(ID), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("event_id", ID, ForeignKey(events.c.id), nullable=False),
    Column("event_type", Text, nullable=False),
    Column("user_id", ID, nullable=False),
    Column("channel", Text, nullable=False),
    Column("webhook_id", ID, ForeignKey(webhooks.c.id), nullable=True),
    Column("target", Text, nullable=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False,
           server_default=func.now()),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("claim_token", ID, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", ID, ForeignKey(deliveries.c.id), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("outcome", Text, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
)


def _time(moment):
    return rfc3339(moment) if moment is not None else None


# --- Events and the deliveries they make ---------------------------------------------------


def record_events(connection, source, received):
    """Stores each ``(event_id, body, user_ids)`` once: the ids of those that are new (the
    primary key decides, so two concurrent deliveries of one event agree)."""
    if not received:
        return set()
    return set(connection.execute(
        pg_insert(events)
        .values([{"id": event_id, "source": source, "type": body["type"], "body": body,
                  "user_ids": list(user_ids)} for event_id, body, user_ids in received])
        .on_conflict_do_nothing(index_elements=[events.c.id])
        .returning(events.c.id)).scalars())


def insert_deliveries(connection, rows):
    """``rows``: dicts of event_id, event_type, user_id, channel, webhook_id, target."""
    if not rows:
        return []
    return connection.execute(
        insert(deliveries).returning(deliveries.c.id, sort_by_parameter_order=True),
        [dict(row, id=str(uuid.uuid4())) for row in rows],
    ).scalars().all()


# --- A user's deliveries ---------------------------------------------------------------------


def page_of_deliveries(connection, user_id, limit, before=None):
    """Up to ``limit`` of the user's deliveries, newest first, before ``(created_at, id)``;
    and whether more follow."""
    query = select(deliveries).where(deliveries.c.user_id == user_id)
    if before is not None:
        created_at, delivery_id = before
        query = query.where(
            tuple_(deliveries.c.created_at, deliveries.c.id)
            < tuple_(literal(created_at, DateTime(timezone=True)), literal(delivery_id, ID)))
    rows = connection.execute(
        query.order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc()).limit(limit + 1)
    ).all()
    return rows[:limit], len(rows) > limit


def attempts_of(connection, delivery_ids):
    """``{delivery_id: [attempt rows, first to last]}``."""
    if not delivery_ids:
        return {}
    rows = connection.execute(
        select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id.in_(list(delivery_ids)))
        .order_by(delivery_attempts.c.delivery_id, delivery_attempts.c.attempt,
                  delivery_attempts.c.id)
    ).all()
    found = {}
    for row in rows:
        found.setdefault(row.delivery_id, []).append(row)
    return found


def attempt_view(row):
    return {
        "attempt": row.attempt,
        "started_at": rfc3339(row.started_at),
        "finished_at": rfc3339(row.finished_at),
        "outcome": row.outcome,
        "status_code": row.status_code,
        "error": row.error,
    }


def delivery_view(row, attempt_rows=()):
    return {
        "id": row.id,
        "channel": row.channel,
        "event_type": row.event_type,
        "event_id": row.event_id,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": rfc3339(row.created_at),
        "webhook_id": row.webhook_id,
        "target": row.target,
        "last_error": row.last_error,
        "next_attempt_at": _time(row.next_attempt_at) if row.status == "pending" else None,
        "delivered_at": _time(row.delivered_at),
        "history": [attempt_view(attempt) for attempt in attempt_rows],
    }


# --- Cursors ---------------------------------------------------------------------------------


def encode_cursor(row):
    return cursors.encode_time_and_id(row.created_at, row.id)


decode_cursor = cursors.decode_time_and_id
