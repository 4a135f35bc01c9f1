"""Transaction events, from a transactional outbox to Nameko events.

The event is written in the same commit that finishes the transaction, so a
finished transaction always has its event; a relay then dispatches the
unsent ones (publisher confirms on) and marks them sent. A crash between the
two sends an event twice, never zero times: consumers deduplicate by ``id``.

    {"id": event id, "type": "transaction.completed", "created_at": …,
     "data": <the transaction as the API shows it>, "user_ids": [the users concerned]}
"""
import uuid

from sqlalchemy import BigInteger, Column, DateTime, Identity, MetaData, Table, Text, func
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.ids import rfc3339

SOURCE = "transactions"
COMPLETED, FAILED = "transaction.completed", "transaction.failed"
RELAY_BATCH = 200

metadata = MetaData(schema="transactions")
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", UUID(as_uuid=False), nullable=False),
    Column("event_type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("dispatched_at", DateTime(timezone=True)),
)


def record_finished(connection, row, view):
    """Queue the event of a transaction that just finished (in the caller's commit)."""
    event_type = COMPLETED if row.status == "completed" else FAILED
    users = [user for user in (row.initiator_id, row.source_owner_id, row.destination_owner_id)
             if user]
    payload = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "created_at": rfc3339(row.completed_at),
        "data": view,
        "user_ids": sorted(set(users)),
    }
    connection.execute(insert(outbox).values(event_id=payload["id"], event_type=event_type,
                                             payload=payload))


def relay(db, dispatch):
    """Dispatch unsent events in order; each marked sent in the commit after its dispatch.
    ``SKIP LOCKED`` lets several transactions processes relay side by side."""
    with db.transaction() as connection:
        rows = connection.execute(
            select(outbox.c.id, outbox.c.event_type, outbox.c.payload)
            .where(outbox.c.dispatched_at.is_(None))
            .order_by(outbox.c.id).limit(RELAY_BATCH)
            .with_for_update(skip_locked=True)).all()
        for row in rows:
            dispatch(row.event_type, row.payload)
        if rows:
            connection.execute(update(outbox).where(outbox.c.id.in_([row.id for row in rows]))
                               .values(dispatched_at=func.now()))
    return len(rows)
