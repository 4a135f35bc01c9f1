"""A service's transactional outbox of Nameko events.

The event is written in the same commit as the change it tells of, so a committed
change always has its event; a relay then dispatches the unsent ones (publisher
confirms on) and marks them sent. A crash between the two sends an event twice,
never zero times: consumers deduplicate by ``id``.

    {"id": event id, "type": "transaction.completed", "created_at": …,
     "data": <the object as the API shows it>, "user_ids": [the users concerned]}

Each service keeps its own ``outbox`` table in its own schema (its migration makes it).
"""
import uuid

from sqlalchemy import BigInteger, Column, DateTime, Identity, MetaData, Table, Text, func
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.ids import rfc3339

RELAY_BATCH = 200


def outbox_table(schema):
    return Table(
        "outbox",
        MetaData(schema=schema),
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", UUID(as_uuid=False), nullable=False),
        Column("event_type", Text, nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False,
               server_default=func.now()),
        Column("dispatched_at", DateTime(timezone=True)),
    )


def append(connection, table, event_type, created_at, data, user_ids):
    """Queue an event in the caller's commit; its payload."""
    payload = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "created_at": rfc3339(created_at),
        "data": data,
        "user_ids": sorted({user for user in user_ids if user}),
    }
    connection.execute(insert(table).values(event_id=payload["id"], event_type=event_type,
                                            payload=payload))
    return payload


def relay(db, table, dispatch):
    """Dispatch unsent events in order; each marked sent in the commit after its dispatch.
    ``SKIP LOCKED`` lets several processes of a service relay side by side. The number
    dispatched."""
    with db.transaction() as connection:
        rows = connection.execute(
            select(table.c.id, table.c.event_type, table.c.payload)
            .where(table.c.dispatched_at.is_(None))
            .order_by(table.c.id).limit(RELAY_BATCH)
            .with_for_update(skip_locked=True)).all()
        for row in rows:
            dispatch(row.event_type, row.payload)
        if rows:
            connection.execute(update(table).where(table.c.id.in_([row.id for row in rows]))
                               .values(dispatched_at=func.now()))
    return len(rows)
