"""The delivery loop's hold on the deliveries table (records.py): due deliveries leased
to one sender, each attempt logged and its outcome applied while the lease holds, and the
ones that can no longer be sent abandoned."""
from sqlalchemy import func, insert, or_, select, update

from services.notifications.records import (
    MAX_ERROR_LENGTH, deliveries, delivery_attempts, events, webhooks,
)


def _seconds(seconds):
    """An SQL interval of ``seconds`` (times are the database's clock, one for every process)."""
    return func.make_interval(0, 0, 0, 0, 0, 0, float(seconds))


def clip(message):
    if message is None:
        return None
    message = str(message)
    return message if len(message) <= MAX_ERROR_LENGTH else message[:MAX_ERROR_LENGTH - 1] + "…"


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
