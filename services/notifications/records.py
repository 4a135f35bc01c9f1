"""The notifications tables and what may be done to them: webhooks, received events (the
dedupe record), deliveries with their lease, and the log of every attempt."""
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
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared import cursors
from shared.ids import rfc3339

EVENT_TYPES = ("transaction.completed", "transaction.failed", "payment.captured",
               "payment.refunded")
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


def _seconds(seconds):
    """An SQL interval of ``seconds`` (times are the database's clock, one for every process)."""
    return func.make_interval(0, 0, 0, 0, 0, 0, float(seconds))


def clip(message):
    if message is None:
        return None
    message = str(message)
    return message if len(message) <= MAX_ERROR_LENGTH else message[:MAX_ERROR_LENGTH - 1] + "…"


# --- Webhooks ------------------------------------------------------------------------------


def webhook_view(row):
    """A webhook as its owner sees it in lists: never the secret."""
    return {"id": row.id, "url": row.url, "events": list(row.events)}


def lock_owner(connection, owner_id):
    """Serializes webhook creation per owner (the per-user limit holds under concurrency)."""
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                       {"key": "notifications.webhooks:" + owner_id})


def count_live_webhooks(connection, owner_id):
    return connection.execute(
        select(func.count()).select_from(webhooks)
        .where(webhooks.c.owner_id == owner_id, webhooks.c.deleted_at.is_(None))
    ).scalar_one()


def insert_webhook(connection, owner_id, url, event_types, secret):
    """``secret``: as stored, sealed (secret_box.py)."""
    return connection.execute(
        insert(webhooks)
        .values(id=str(uuid.uuid4()), owner_id=owner_id, url=url, events=list(event_types),
                secret=secret)
        .returning(webhooks)
    ).one()


def page_of_webhooks(connection, owner_id, limit, after=None):
    """Up to ``limit`` of the owner's live webhooks, oldest first, after ``(created_at, id)``;
    and whether more follow."""
    query = select(webhooks).where(webhooks.c.owner_id == owner_id,
                                   webhooks.c.deleted_at.is_(None))
    if after is not None:
        created_at, webhook_id = after
        query = query.where(
            tuple_(webhooks.c.created_at, webhooks.c.id)
            > tuple_(literal(created_at, DateTime(timezone=True)), literal(webhook_id, ID)))
    rows = connection.execute(
        query.order_by(webhooks.c.created_at, webhooks.c.id).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def delete_webhook(connection, owner_id, webhook_id):
    """Soft-deletes the owner's live webhook and fails its pending deliveries; False when
    there is no such live webhook of that owner."""
    deleted = connection.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id, webhooks.c.owner_id == owner_id,
               webhooks.c.deleted_at.is_(None))
        .values(deleted_at=func.now())
        .returning(webhooks.c.id)
    ).one_or_none()
    if deleted is None:
        return False
    connection.execute(
        update(deliveries)
        .where(deliveries.c.webhook_id == webhook_id, deliveries.c.status == "pending")
        .values(status="failed", last_error="webhook deleted", locked_until=None,
                claim_token=None)
    )
    return True


# A secret stored before sealing existed (secret_box.py); the same expression as the partial
# index of notifications_0003, so finding them reads that index, empty once all are sealed.
CLEAR_SECRET = text("left(notifications.webhooks.secret, 6) = 'whsec_'")


def clear_secrets(connection, limit):
    """Up to ``limit`` ``(id, secret)`` of webhooks whose secret is in clear, locked for this
    transaction (another process sealing at the same time skips them)."""
    return connection.execute(
        select(webhooks.c.id, webhooks.c.secret).where(CLEAR_SECRET).limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def replace_secrets(connection, sealed):
    """``sealed``: ``{webhook_id: stored secret}``."""
    if sealed:
        connection.execute(
            update(webhooks).where(webhooks.c.id == bindparam("webhook_id"))
            .values(secret=bindparam("sealed")),
            [{"webhook_id": key, "sealed": value} for key, value in sealed.items()])


def subscriptions(connection, user_ids):
    """``{owner_id: [webhook rows (id, owner_id, url, events)]}``: the live webhooks of
    ``user_ids``, oldest first, in one query."""
    if not user_ids:
        return {}
    found = {}
    for row in connection.execute(
        select(webhooks.c.id, webhooks.c.owner_id, webhooks.c.url, webhooks.c.events)
        .where(webhooks.c.owner_id.in_(list(user_ids)), webhooks.c.deleted_at.is_(None))
        .order_by(webhooks.c.owner_id, webhooks.c.created_at, webhooks.c.id)
    ):
        found.setdefault(row.owner_id, []).append(row)
    return found


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


# --- The delivery loop -----------------------------------------------------------------------


def claim_due(connection, limit, lease_s, token):
    """Leases up to ``limit`` due deliveries to the caller (``token``) for ``lease_s``.

    Due: pending, its next attempt time reached, and no live lease on it. ``SKIP LOCKED``
    lets several processes claim at once without waiting for each other or taking the same
    row; a lease that ran out (its holder died) makes the delivery due again. Returns what
    a send needs: the delivery, its event's body and, for webhooks, the URL and secret."""
    due = (
        select(deliveries.c.id)
        .where(deliveries.c.status == "pending",
               deliveries.c.next_attempt_at <= func.clock_timestamp(),
               or_(deliveries.c.locked_until.is_(None),
                   deliveries.c.locked_until <= func.clock_timestamp()))
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = connection.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(due))
        .values(claim_token=token,
                locked_until=func.clock_timestamp() + _seconds(lease_s))
        .returning(deliveries.c.id)
    ).scalars().all()
    if not claimed:
        return []
    return connection.execute(
        select(deliveries, events.c.body, webhooks.c.url.label("webhook_url"),
               webhooks.c.secret.label("webhook_secret"),
               webhooks.c.deleted_at.label("webhook_deleted_at"))
        .join(events, events.c.id == deliveries.c.event_id)
        .outerjoin(webhooks, webhooks.c.id == deliveries.c.webhook_id)
        .where(deliveries.c.id.in_(claimed))
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
    ).all()


def finish_attempt(connection, delivery, token, attempt):
    """Records one attempt and applies its outcome to the delivery, if the caller still holds
    the lease (else another process has taken the delivery over: only the attempt is logged).

    ``attempt``: dict of started_at, finished_at, outcome, status_code, error, and for the
    delivery: status, retry_in_s (the backoff when still pending), target (resolved address
    or None). Returns True when the delivery was updated."""
    values = dict(
        attempts=deliveries.c.attempts + 1,
        failures=deliveries.c.failures + (1 if attempt["outcome"] == "failed" else 0),
        status=attempt["status"],
        locked_until=None,
        claim_token=None,
        last_error=clip(attempt.get("error")),
    )
    if attempt["status"] == "delivered":
        values["delivered_at"] = attempt["finished_at"]
    if attempt["status"] == "pending":
        values["next_attempt_at"] = func.clock_timestamp() + _seconds(attempt["retry_in_s"])
    if attempt.get("target"):
        values["target"] = attempt["target"]
    updated = connection.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery.id, deliveries.c.claim_token == token)
        .values(**values)
        .returning(deliveries.c.attempts)
    ).one_or_none()
    connection.execute(insert(delivery_attempts).values(
        delivery_id=delivery.id,
        attempt=updated.attempts if updated is not None else delivery.attempts + 1,
        started_at=attempt["started_at"],
        finished_at=attempt["finished_at"],
        outcome=attempt["outcome"],
        status_code=attempt.get("status_code"),
        error=clip(attempt.get("error")),
    ))
    return updated is not None


def abandon(connection, delivery, token, reason):
    """Fails a claimed delivery that can no longer be sent (its webhook was deleted) without
    an attempt."""
    connection.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery.id, deliveries.c.claim_token == token)
        .values(status="failed", last_error=reason, locked_until=None, claim_token=None)
    )


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
