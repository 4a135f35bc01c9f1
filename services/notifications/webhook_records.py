"""A user's webhooks in the notifications tables (records.py): created under a per-owner
lock, listed, soft-deleted with their pending deliveries, their secrets sealed in place,
and the live ones an event's users subscribe with."""
import uuid

from sqlalchemy import DateTime, bindparam, func, insert, literal, select, text, tuple_, update

from services.notifications.records import ID, deliveries, webhooks


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
    """Soft-deletes the owner's live webhook and fails its pending deliveries; the deleted
    row (``id``, ``url``), or None when there is no such live webhook of that owner."""
    deleted = connection.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id, webhooks.c.owner_id == owner_id,
               webhooks.c.deleted_at.is_(None))
        .values(deleted_at=func.now())
        .returning(webhooks.c.id, webhooks.c.url)
    ).one_or_none()
    if deleted is None:
        return None
    connection.execute(
        update(deliveries)
        .where(deliveries.c.webhook_id == webhook_id, deliveries.c.status == "pending")
        .values(status="failed", last_error="webhook deleted", locked_until=None,
                claim_token=None)
    )
    return deleted


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
