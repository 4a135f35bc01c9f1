"""Transaction events (completed, failed), through the transactions schema's outbox
(shared/event_outbox.py): written in the commit that finishes the transaction."""
from shared import event_outbox

SOURCE = "transactions"
COMPLETED, FAILED = "transaction.completed", "transaction.failed"

outbox = event_outbox.outbox_table("transactions")


def record_finished(connection, row, view):
    """Queue the event of a transaction that just finished (in the caller's commit)."""
    event_type = COMPLETED if row.status == "completed" else FAILED
    event_outbox.append(connection, outbox, event_type, row.completed_at, view,
                        [row.initiator_id, row.source_owner_id, row.destination_owner_id])


def relay(db, dispatch):
    return event_outbox.relay(db, outbox, dispatch)
