"""Events in: each becomes its deliveries, once.

The event's id is the dedupe key: the event row (primary key) and every delivery it makes
commit in one database transaction, so an event redelivered by the broker (at least once)
finds its row and makes nothing more, and an event whose transaction did not commit is
still unacknowledged and comes back.
"""
import logging

from services.notifications import records, webhook_records
from shared.ids import parse_id, rfc3339

log = logging.getLogger(__name__)

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
    """Stores one event and its deliveries: the number of deliveries made (0 for an event
    received before). Raises ``MalformedEvent`` for what can never be stored."""
    event = envelope(event_type, payload, received_at)
    return accept_many(db, settings, source, [event])


def read_batch(payload, received_at):
    """The well-formed events of a batch message (shared/event_outbox.py), each as
    ``envelope`` gives it; malformed ones are logged and left out (no retry mends them)."""
    items = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise MalformedEvent("the batch has no list of events")
    events = []
    for item in items:
        try:
            event_type = item.get("type") if isinstance(item, dict) else None
            if event_type not in records.EVENT_TYPES:
                raise MalformedEvent("unknown event type {!r}".format(event_type))
            events.append(envelope(event_type, item, received_at))
        except MalformedEvent as error:
            log.error("event dropped: %s: %r", error, item)
    return events


def accept_many(db, settings, source, events):
    """Stores the events that make deliveries, with their deliveries, in one database
    transaction: the number of deliveries made. An event that makes none leaves nothing
    behind (there is nothing to deliver twice); one that makes some is stored under its
    id, so a copy of it received again makes nothing more."""
    if not events:
        return 0
    with db.transaction() as connection:
        hooks = webhook_records.subscriptions(connection, {
            user for _, body, users in events for user in users})
        planned = []
        for event_id, body, user_ids in events:
            rows = [
                {"event_id": event_id, "event_type": body["type"], "user_id": hook.owner_id,
                 "channel": "webhook", "webhook_id": hook.id, "target": hook.url}
                for user in user_ids for hook in hooks.get(user, ())
                if body["type"] in hook.events
            ]
            if settings.email_enabled:
                rows.extend(
                    {"event_id": event_id, "event_type": body["type"], "user_id": user,
                     "channel": "email", "webhook_id": None, "target": None}
                    for user in user_ids)
            if rows:
                planned.append(((event_id, body, user_ids), rows))
        if not planned:
            return 0
        new = records.record_events(connection, source, [event for event, _ in planned])
        rows = [row for (event_id, _, _), event_rows in planned if event_id in new
                for row in event_rows]
        records.insert_deliveries(connection, rows)
    if len(new) < len(planned):
        log.info("%d of %d events received again: nothing more to deliver",
                 len(planned) - len(new), len(planned))
    return len(rows)
