"""Transaction events (completed, failed), through the transactions schema's outbox
(shared/event_outbox.py): written in the commit that finishes the transactions, sent by
the service's EventRelay (shared/outbox_relay/events.py)."""
from shared import event_outbox

COMPLETED, FAILED = "transaction.completed", "transaction.failed"

outbox = event_outbox.outbox_table("transactions")


def record_finished(connection, finished):
    """Queue the events of transactions that just finished (in the caller's commit):
    ``finished`` is ``[(row, view)]``."""
    event_outbox.append_many(connection, outbox, [
        event_outbox.event(COMPLETED if row.status == "completed" else FAILED,
                           row.completed_at, view,
                           [row.initiator_id, row.source_owner_id, row.destination_owner_id])
        for row, view in finished])
