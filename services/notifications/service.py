"""Notifications: owns deliveries of e-mail and signed webhooks, with retries and a delivery log.

Batches of events from the transactions and payments services (``inbox.py``) become
delivery rows; a timer (``delivery.py``) sends what is due. Webhooks, the delivery log and
the audit trail of webhook changes (``audit_events``, shared/audit.py) are the RPCs below;
every RPC returns plain JSON-able dicts and raises ``shared.errors`` types.
"""
import logging
import secrets
from datetime import datetime, timezone
from urllib.parse import urlsplit

import eventlet
from nameko.events import SERVICE_POOL
from nameko.timer import timer
from sqlalchemy import exc as db_errors

from services.notifications import destinations, inbox, records, webhook_records
from services.notifications.delivery import DeliveryLoop
from services.notifications.metrics import DeliveryBacklog
from services.notifications.dependencies import (
    NotificationSettings,
    WebhookSecrets,
    poll_timer,
    service_calls,
)
from services.notifications.secret_box import CLEAR_PREFIX
from shared import audit, service, tracing
from shared.cursors import DEFAULT_PAGE_SIZE, page_request
from shared.db import Database
from shared.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from shared.event_outbox import BATCH_EVENT
from shared.ids import parse_id
from shared.queues import event_handler

log = logging.getLogger(__name__)
AUDIT_EVENTS = audit.table_of("notifications")

MAX_URL_LENGTH = 2048
SECRET_PREFIX = CLEAR_PREFIX  # what a reader of the table tells clear secrets apart by
# A transient database error while storing an event: wait this long, then give the event
# back to the broker (requeue), so a database outage slows the redelivery loop down.
REQUEUE_PAUSE_S = 1.0
# (shared.db turns a database out of reach into ServiceUnavailable.)
TRANSIENT_DB_ERRORS = (ServiceUnavailable, db_errors.OperationalError, db_errors.InterfaceError,
                       db_errors.DisconnectionError, db_errors.TimeoutError)
# A registration waits this long for DNS; a name that gives no address by then is accepted
# (every delivery checks it again, and sends nothing until it resolves to allowed addresses).
REGISTRATION_DNS_TIMEOUT_S = 2.0
# Secrets still in clear (stored before sealing) are sealed at start, then looked for again
# this often: a process of the previous version may still be writing some during an upgrade.
SEAL_INTERVAL_S = 300
SEAL_BATCH = 500


def _invalid(field, message):
    return ValidationFailed("{}: {}".format(field, message), errors={field: [message]})


def _owner(owner_id):
    owner = parse_id(owner_id)
    if owner is None:
        raise _invalid("owner_id", "must be a user id")
    return owner


def _url(url, allowed_networks):
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL_LENGTH:
        raise _invalid("url", "must be an http or https URL of at most {} characters".format(
            MAX_URL_LENGTH))
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise _invalid("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise _invalid("url", "is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _invalid("url", "must be an http or https URL with a host")
    try:
        destinations.target(url, allowed_networks, REGISTRATION_DNS_TIMEOUT_S)
    except destinations.Refused as refused:
        raise _invalid("url", str(refused)) from None
    except destinations.Unresolved:
        pass
    return url


def _event_types(event_types):
    if not isinstance(event_types, (list, tuple)) or not event_types:
        raise _invalid("events", "must be a non-empty list of event types")
    unknown = [kind for kind in event_types if kind not in records.EVENT_TYPES]
    if unknown:
        raise _invalid("events", "unknown event types {}; known: {}".format(
            ", ".join(map(repr, unknown)), ", ".join(records.EVENT_TYPES)))
    return list(dict.fromkeys(event_types))


def _page(rows, more, view):
    return {"items": [view(row) for row in rows],
            "next_cursor": records.encode_cursor(rows[-1]) if more else None}


class NotificationsService(audit.AuditRpcs, service.ServiceBase):
    name = "notifications"
    db = Database(schema="notifications")
    # Calls to other services; so the entrypoint decorator is spelt ``service.rpc`` here.
    rpc = service_calls()
    settings = NotificationSettings()
    secret_box = WebhookSecrets()
    delivery_backlog = DeliveryBacklog()  # read when Prometheus scrapes

    # --- Webhooks -------------------------------------------------------------------------

    @service.rpc
    def create_webhook(self, owner_id, url, events, request_id=None):
        """``{id, url, events, secret}``; the secret (the HMAC key of ``X-Signature``) is
        shown here only. Recorded in the audit trail (done by the owner, under the HTTP
        request ``request_id``) in the same transaction; the secret never is."""
        owner, event_types = _owner(owner_id), _event_types(events)
        url = _url(url, self.settings.webhook_allowed_networks)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        sealed = self.secret_box.seal(secret)  # only this answer ever shows it in clear
        with self.db.transaction() as connection:
            webhook_records.lock_owner(connection, owner)
            limit = self.settings.max_webhooks_per_user
            if webhook_records.count_live_webhooks(connection, owner) >= limit:
                raise Conflict("at most {} webhooks per user".format(limit),
                               code="webhook_limit_reached")
            row = webhook_records.insert_webhook(connection, owner, url, event_types, sealed)
            audit.record(connection, AUDIT_EVENTS, audit.Actor.of(owner, request_id),
                         audit.WEBHOOK_CREATED, "webhook", row.id,
                         {"owner_id": owner, "url": row.url, "events": list(row.events)})
        return dict(webhook_records.webhook_view(row), secret=secret)

    @service.rpc
    def list_webhooks(self, owner_id, limit=DEFAULT_PAGE_SIZE, cursor=None):
        """``{items: [{id, url, events}], next_cursor}``, oldest first; never the secret."""
        owner = _owner(owner_id)
        limit, after = page_request(limit, cursor, records.decode_cursor)
        with self.db.connection() as connection:
            rows, more = webhook_records.page_of_webhooks(connection, owner, limit, after)
        return _page(rows, more, webhook_records.webhook_view)

    @service.rpc
    def delete_webhook(self, owner_id, webhook_id, request_id=None):
        """Deletes the owner's webhook (its pending deliveries fail with "webhook deleted");
        NotFound for an unknown id, another user's webhook, or one already deleted.
        Recorded in the audit trail like a creation."""
        owner, webhook = parse_id(owner_id), parse_id(webhook_id)
        if owner is None or webhook is None:
            raise NotFound("webhook not found")
        with self.db.transaction() as connection:
            deleted = webhook_records.delete_webhook(connection, owner, webhook)
            if deleted is None:
                raise NotFound("webhook not found")
            audit.record(connection, AUDIT_EVENTS, audit.Actor.of(owner, request_id),
                         audit.WEBHOOK_DELETED, "webhook", deleted.id,
                         {"owner_id": owner, "url": deleted.url})
        return None

    # --- The delivery log ------------------------------------------------------------------

    @service.rpc
    def list_deliveries(self, owner_id, limit=DEFAULT_PAGE_SIZE, cursor=None):
        """``{items, next_cursor}``: the owner's deliveries, newest first, each ``{id, channel,
        event_type, event_id, status, attempts, created_at, webhook_id, target, last_error,
        next_attempt_at, delivered_at, history: [{attempt, started_at, finished_at, outcome,
        status_code, error}]}``."""
        owner = _owner(owner_id)
        limit, before = page_request(limit, cursor, records.decode_cursor)
        with self.db.connection() as connection:
            rows, more = records.page_of_deliveries(connection, owner, limit, before)
            history = records.attempts_of(connection, [row.id for row in rows])
        return _page(rows, more, lambda row: records.delivery_view(row, history.get(row.id, ())))

    # --- Events in ---------------------------------------------------------------------------

    @event_handler("transactions", BATCH_EVENT, handler_type=SERVICE_POOL,
                   requeue_on_error=True)
    def on_transaction_events(self, payload):
        self._accept("transactions", payload)

    @event_handler("payments", BATCH_EVENT, handler_type=SERVICE_POOL, requeue_on_error=True)
    def on_payment_events(self, payload):
        self._accept("payments", payload)

    def _accept(self, source, payload):
        """A batch of events (shared/event_outbox.py) becomes its deliveries in one database
        transaction. Only a transient database error raises (the batch goes back to the
        broker and comes again); a batch that can never be stored is logged and
        acknowledged, so it cannot loop forever."""
        traceparents = [item.get(tracing.TRACEPARENT_KEY) for item in
                        (payload.get("events") if isinstance(payload, dict) else None) or ()
                        if isinstance(item, dict)]
        try:
            received = inbox.read_batch(payload, datetime.now(timezone.utc))
            # The batch's lines join the trace of the work that wrote its events (one
            # trace) or name them all (shared/tracing.py).
            with tracing.batch_span(traceparents, "notifications accept " + source):
                made = inbox.accept_many(self.db, self.settings, source, received)
                log.info("%s: %d events accepted, %d deliveries made", source, len(received),
                         made, extra={"fields": {"trace_ids": tracing.trace_ids(traceparents)}})
            return made
        except TRANSIENT_DB_ERRORS:
            log.warning("%s events not stored (database unavailable); requeued", source,
                        exc_info=True)
            eventlet.sleep(REQUEUE_PAUSE_S)
            raise
        except inbox.MalformedEvent as error:
            log.error("%s events dropped: %s: %r", source, error, payload)
        except Exception:  # noqa: BLE001 - e.g. data PostgreSQL cannot store: never a loop
            log.exception("%s events dropped: they cannot be stored", source)
        return None

    # --- Deliveries out ----------------------------------------------------------------------

    @poll_timer()
    def deliver_due(self):
        """Sends what is due; returns how many deliveries this tick took on."""
        return DeliveryLoop(self.db, self.rpc, self.settings, self.secret_box).tick()

    @timer(interval=SEAL_INTERVAL_S, eager=True)
    def seal_clear_secrets(self):
        """Seals the webhook secrets stored in clear before sealing existed (secret_box.py);
        returns how many."""
        sealed = 0
        while True:
            with self.db.transaction() as connection:
                rows = webhook_records.clear_secrets(connection, SEAL_BATCH)
                webhook_records.replace_secrets(connection, {
                    row.id: self.secret_box.seal(row.secret) for row in rows})
            sealed += len(rows)
            if len(rows) < SEAL_BATCH:
                break
        if sealed:
            log.info("sealed %d webhook secrets stored in clear", sealed)
        return sealed
