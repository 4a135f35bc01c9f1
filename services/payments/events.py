"""Payment events (authorized, captured, refunded, voided, expired, failed), through the payments schema's outbox
(shared/event_outbox.py): written in the commit that changes the payment. The payer's and
the merchant's owners are the users concerned. The service's EventRelay
(shared/outbox_relay/events.py) sends them."""
from services.payments import records
from shared import event_outbox

CAPTURED, REFUNDED = "payment.captured", "payment.refunded"
AUTHORIZED, VOIDED = "payment.authorized", "payment.voided"
# Expired: the system voided an authorization not captured within the hold time.
EXPIRED, FAILED = "payment.expired", "payment.failed"
TYPES = (AUTHORIZED, CAPTURED, REFUNDED, VOIDED, EXPIRED, FAILED)

outbox = event_outbox.outbox_table("payments")


def captured(connection, payment):
    _append(connection, CAPTURED, payment)


def refunded(connection, payment):
    _append(connection, REFUNDED, payment)


def authorized(connection, payment):
    _append(connection, AUTHORIZED, payment)


def voided(connection, payment):
    _append(connection, VOIDED, payment)


def expired(connection, payment):
    _append(connection, EXPIRED, payment)


def failed(connection, payment):
    _append(connection, FAILED, payment)


def _append(connection, event_type, payment):
    if payment is None:  # the change did not happen (another driver made it): no event
        return
    data = records.view(payment, records.transaction_ids(connection, payment.id))
    event_outbox.append(connection, outbox, event_type, payment.updated_at, data,
                        [payment.payer_owner_id, payment.merchant_owner_id])
