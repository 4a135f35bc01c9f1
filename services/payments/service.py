"""Payments: merchant payments on top of the transactions service (lifecycle.py).

The payer authorizes (a hold) or pays at once; the merchant's owner (or an admin)
captures, voids and refunds. A timer voids authorizations past their hold time, another
drives on operations a crash or a slow decision left pending; the outbox relay
(shared/outbox_relay) sends the payment events (events.py).
"""
from nameko.timer import timer

from services.payments import events
from services.payments.lifecycle import Lifecycle
from shared import service
from shared.db import Database
from shared.leadership import one_replica_at_a_time
from shared.outbox_relay.events import EventRelay
from services.payments.settings import PaymentsSettings
from shared.rpc import ServiceRpc
from shared.settings import Settings
from shared.shared_settings import SharedSettings

EXPIRY_INTERVAL_S = 1
RECOVERY_INTERVAL_S = 5
# An operation pending this long has lost its request (or the request gave up waiting).
RECOVER_AFTER_S = 5
EVENT_RELAY_INTERVAL_S = 0.5


class PaymentsService(service.ServiceBase):
    name = "payments"
    db = Database(schema="payments")
    # Calls to other services; so the entrypoint decorator is spelt ``service.rpc`` here.
    rpc = ServiceRpc()
    settings = Settings(PaymentsSettings)
    shared = Settings(SharedSettings)
    event_relay = EventRelay(events.outbox, interval_s=EVENT_RELAY_INTERVAL_S)

    @service.rpc
    def create(self, initiator_id, body, idempotency_key, initiator_is_admin=False):
        """``body``: ``{payer_account_id, merchant_account_id, amount, currency, capture,
        reference}``; the payment once its authorization is decided (authorized, captured
        or failed). One payment per (initiator, idempotency key)."""
        return self._lifecycle().create(initiator_id, body, idempotency_key, initiator_is_admin)

    @service.rpc
    def capture(self, payment_id, actor_id, actor_is_admin, idempotency_key, amount=None):
        """Capture all of the authorization, or ``amount`` of it (the rest is released)."""
        return self._lifecycle().capture(payment_id, actor_id, actor_is_admin, idempotency_key,
                                         amount)

    @service.rpc
    def void(self, payment_id, actor_id, actor_is_admin, idempotency_key):
        """Release an authorization's hold."""
        return self._lifecycle().void(payment_id, actor_id, actor_is_admin, idempotency_key)

    @service.rpc
    def refund(self, payment_id, actor_id, actor_is_admin, idempotency_key, amount=None):
        """Refund ``amount``, or all that is left; never more than was captured (422)."""
        return self._lifecycle().refund(payment_id, actor_id, actor_is_admin, idempotency_key,
                                        amount)

    @service.rpc
    def get(self, payment_id, viewer_id=None):
        """One payment; ``viewer_id`` None is staff, else the payer's or merchant's owner."""
        return self._lifecycle().get(payment_id, viewer_id)

    @service.rpc
    def list(self, viewer_id, status=None, limit=50, cursor=None):
        """A page of payments, newest first: ``{items, next_cursor}``. ``viewer_id`` None is
        staff (every payment), else the payer's or merchant's owner."""
        return self._lifecycle().list(viewer_id, status, limit, cursor)

    @timer(interval=EXPIRY_INTERVAL_S)
    @one_replica_at_a_time("payments.expiry")
    def expire(self):
        self._lifecycle().expire()

    @timer(interval=RECOVERY_INTERVAL_S, eager=True)
    @one_replica_at_a_time("payments.recovery")
    def recover(self):
        self._lifecycle().recover(RECOVER_AFTER_S)

    def _lifecycle(self):
        # A submit waits up to the decision wait, then answers; allow for the queue.
        submit_timeout_s = self.shared.rpc.decision_wait_s + self.shared.rpc.timeout_s
        return Lifecycle(self.db, self.rpc, self.settings.payments.hold_time_s,
                         submit_timeout_s)
