"""Payment events (captured, refunded), through the payments schema's outbox
(shared/event_outbox.py): written in the commit that changes the payment. The payer's and
the merchant's owners are the users concerned. The service's EventRelay
(shared/outbox_relay/events.py) sends them."""
from services.payments import records
from shared import event_outbox

CAPTURED, REFUNDED = "payment.captured", "payment.refunded"

outbox = event_outbox.outbox_table("payments")


def captured(connection, payment):
    _append(connection, CAPTURED, payment)


def refunded(connection, payment):
    _append(connection, REFUNDED, payment)


def _append(connection, event_type, payment):
    data = records.view(payment, records.transaction_ids(connection, payment.id))
    event_outbox.append(connection, outbox, event_type, payment.updated_at, data,
                        [payment.payer_owner_id, payment.merchant_owner_id])
