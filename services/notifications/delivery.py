"""The delivery loop: claims due deliveries under a lease and sends them, records every
attempt, and schedules retries with exponential backoff and full jitter.

Everything the loop knows is in PostgreSQL, so a process that stops (or dies) mid-backlog
loses nothing: what it had not claimed is still due, and what it had claimed becomes due
again when its lease runs out. Several processes share the work (``FOR UPDATE SKIP
LOCKED``). A send is at least once: a process that dies after the receiver got a POST but
before recording it sends it again; receivers deduplicate by the event ``id`` (also in the
``X-Event-Id`` header), and e-mails carry a Message-ID per delivery.
"""
import logging
import random
import time
import uuid
from datetime import datetime, timezone

import eventlet
from cryptography.fernet import InvalidToken
from greenlet import GreenletExit

from services.notifications import delivery_leases, messages, metrics
from services.notifications.senders import Outcome, post_webhook, send_email
from shared.errors import NotFound

log = logging.getLogger(__name__)

# Full jitter draws from [0, 1); the tests replace it to make the backoff predictable.
jitter_fraction = random.random
POOL_FULL_WAIT_S = 0.02


def backoff_s(attempt, base_s, cap_s):
    """The wait after attempt number ``attempt`` (1, 2, …): uniform in
    ``[0, min(cap, base * 2^(attempt-1)))`` ("full jitter": retries of many deliveries that
    failed together spread out instead of arriving together again)."""
    ceiling = min(cap_s, base_s * 2 ** min(max(attempt - 1, 0), 60))
    return jitter_fraction() * ceiling


def now():
    return datetime.now(timezone.utc)


class DeliveryLoop:
    """One tick of the loop, run by the service's timer (one tick at a time per process)."""

    def __init__(self, db, rpc, settings, secret_box):
        self.db = db
        self.rpc = rpc
        self.settings = settings
        self.secret_box = secret_box

    def tick(self):
        """Keeps up to ``concurrency`` sends in flight, claiming more as slots free up, until
        nothing is due or the tick's budget is spent; then waits for the sends in flight.
        Returns how many deliveries it claimed."""
        settings = self.settings
        pool = eventlet.GreenPool(settings.concurrency)
        claimed = 0
        stop_at = time.monotonic() + settings.tick_budget_s
        try:
            while time.monotonic() < stop_at:
                free = pool.free()
                if free == 0:
                    eventlet.sleep(POOL_FULL_WAIT_S)
                    continue
                token = str(uuid.uuid4())
                with self.db.transaction() as connection:
                    rows = delivery_leases.claim_due(connection, free, settings.lease_s, token)
                if not rows:
                    break
                claimed += len(rows)
                for row in rows:
                    pool.spawn_n(self.deliver, row, token)
                eventlet.sleep(0)
            pool.waitall()  # a graceful stop waits for the tick, so for these sends too
        except GreenletExit:
            # The container is being killed: the sends die with the tick, as they would with
            # the process; their leases run out and another tick sends them again.
            for send in list(pool.coroutines_running):
                eventlet.kill(send)
            raise
        except BaseException:
            pool.waitall()  # e.g. the database went away: the sends in flight still finish
            raise
        return claimed

    def deliver(self, row, token):
        """One attempt at one claimed delivery, and its record. Never raises: a delivery whose
        outcome could not be recorded stays claimed until its lease runs out, then is retried."""
        try:
            if row.channel == "webhook" and row.webhook_deleted_at is not None:
                with self.db.transaction() as connection:
                    delivery_leases.abandon(connection, row, token, "webhook deleted")
                return
            started_at = now()
            target = None
            try:
                if row.channel == "webhook":
                    outcome = self.send_webhook(row)
                else:
                    outcome, target = self.send_email(row)
            except Exception as error:  # noqa: BLE001 - a bug must not stop the other sends
                log.exception("delivery %s: the send failed unexpectedly", row.id)
                outcome = Outcome.failed("internal error: {}".format(type(error).__name__))
            finished_at = now()
            attempt = self.settle(row, outcome)
            attempt.update(started_at=started_at, finished_at=finished_at, target=target)
            with self.db.transaction() as connection:
                current = delivery_leases.finish_attempt(connection, row, token, attempt)
            metrics.count_attempt(row.channel, outcome.outcome)
            if not current:
                log.warning("delivery %s: its lease ran out during the attempt; another "
                            "process has it now", row.id)
            log.info("delivery %s (%s) attempt %d: %s -> %s%s", row.id, row.channel,
                     row.attempts + 1, outcome.outcome, attempt["status"],
                     " ({})".format(outcome.error) if outcome.error else "",
                     extra={"fields": {"delivery_id": row.id, "event_id": row.event_id,
                                       "status_code": outcome.status_code}})
        except Exception:  # noqa: BLE001 - e.g. the database went away; the lease retries it
            log.exception("delivery %s: could not complete the attempt", row.id)

    def settle(self, row, outcome):
        """What an attempt's outcome does to the delivery: its new status and backoff."""
        settings = self.settings
        attempt = {"outcome": outcome.outcome, "status_code": outcome.status_code,
                   "error": outcome.error}
        if outcome.outcome == "succeeded":
            attempt["status"] = "delivered"
        elif outcome.outcome == "failed" and (
                outcome.permanent or row.failures + 1 >= settings.max_attempts):
            attempt["status"] = "failed"
        else:
            attempt["status"] = "pending"
            attempt["retry_in_s"] = backoff_s(row.attempts + 1, settings.retry_base_s,
                                              settings.retry_cap_s)
        return attempt

    # --- Channels ---------------------------------------------------------------------------

    def send_webhook(self, row):
        try:
            secret = self.secret_box.open(row.webhook_secret)
        except InvalidToken:
            # Our key file, not the receiver: retried, and heals once the right key is back.
            return Outcome.deferred("the webhook's secret does not open with this key file")
        body = row.body
        raw_body = messages.webhook_body(body)
        settings = self.settings
        return post_webhook(row.webhook_url, secret, raw_body, settings.webhook_timeout_s,
                            settings.webhook_allowed_networks, extra_headers={
                                "X-Event-Id": body["id"],
                                "X-Event-Type": body["type"],
                                "X-Delivery-Id": row.id,
                                "X-Delivery-Attempt": str(row.attempts + 1),
                            })

    def send_email(self, row):
        """``(outcome, address)``. The address is looked up in auth when the delivery does not
        have it yet; auth not answering defers the attempt (no failure of the recipient)."""
        address = row.target
        if not address:
            try:
                user = self.rpc.auth.get_user(row.user_id)
            except NotFound:
                return Outcome.failed("recipient: no such user", permanent=True), None
            except Exception as error:  # noqa: BLE001 - ServiceUnavailable, RemoteError…
                return Outcome.deferred("recipient lookup: {}: {}".format(
                    type(error).__name__, error)), None
            address = (user or {}).get("email")
            if not address:
                return Outcome.failed("recipient: the user has no e-mail address",
                                      permanent=True), None
        settings = self.settings
        message = messages.email(row.body, row.id, address, settings.smtp_from)
        outcome = send_email(message, settings.smtp_host, settings.smtp_port,
                             settings.smtp_timeout_s)
        return outcome, address
