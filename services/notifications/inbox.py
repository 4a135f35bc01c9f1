"""Events in: each becomes its deliveries, once.

The event's id is the dedupe key: the event row (primary key) and every delivery it makes
commit in one database transaction, so an event redelivered by the broker (at least once)
finds its row and makes nothing more, and an event whose transaction did not commit is
still unacknowledged and comes back.
"""
import logging

from services.notifications import records
from shared.ids import parse_id, rfc3339

log = logging.getLogger("paysys.notifications")

MAX_USERS_PER_EVENT = 100


class MalformedEvent(ValueError):
    """An event no retry can make acceptable: logged and dropped (acknowledged)."""


def envelope(event_type, payload, received_at):
    """``(event_id, body, user_ids)`` of a payload ``{id, type, created_at, data, user_ids}``.

    ``body`` is what webhooks receive: ``{id, type, created_at, data}``, with the type the
    event was published under and ``created_at`` as the publisher wrote it."""
    if not isinstance(payload, dict):
        raise MalformedEvent("the payload is not an object")
    event_id = parse_id(payload.get("id"))
    if event_id is None:
        raise MalformedEvent("the event has no id")
    if payload.get("type") not in (None, event_type):
        log.warning("event %s published as %s says it is %s; %s it is", event_id, event_type,
                    payload.get("type"), event_type)
    created_at = payload.get("created_at")
    if not isinstance(created_at, str) or not created_at:
        created_at = rfc3339(received_at)
    raw_users = payload.get("user_ids") or []
    if not isinstance(raw_users, (list, tuple)):
        raise MalformedEvent("user_ids is not a list")
    user_ids = list(dict.fromkeys(
        user for user in map(parse_id, raw_users) if user is not None))[:MAX_USERS_PER_EVENT]
    body = {"id": event_id, "type": event_type, "created_at": created_at,
            "data": payload.get("data")}
    return event_id, body, user_ids


def accept(db, settings, source, event_type, payload, received_at):
    """Stores the event and its deliveries; the number of deliveries made, 0 for an event
    received before. Raises ``MalformedEvent`` for what can never be stored."""
    event_id, body, user_ids = envelope(event_type, payload, received_at)
    with db.transaction() as connection:
        if not records.record_event(connection, event_id, source, event_type, body, user_ids):
            log.info("event %s (%s) received again: nothing more to deliver", event_id,
                     event_type)
            return 0
        rows = [
            {"event_id": event_id, "event_type": event_type, "user_id": hook.owner_id,
             "channel": "webhook", "webhook_id": hook.id, "target": hook.url}
            for hook in records.subscribed_webhooks(connection, user_ids, event_type)
        ]
        if settings.email_enabled:
            rows.extend(
                {"event_id": event_id, "event_type": event_type, "user_id": user,
                 "channel": "email", "webhook_id": None, "target": None}
                for user in user_ids
            )
        records.insert_deliveries(connection, rows)
    log.info("event %s (%s): %d deliveries for %d users", event_id, event_type, len(rows),
             len(user_ids))
    return len(rows)
