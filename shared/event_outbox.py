"""A service's transactional outbox of Nameko events.

Events are written in the same commit as the change they tell of, so a committed change
always has its events; the service's relay (shared/outbox_relay/events.py) then
dispatches the unsent ones and marks them sent. A crash between the two sends an event
twice, never zero times: consumers deduplicate by ``id``.

    {"id": event id, "type": "transaction.completed", "created_at": …,
     "data": <the object as the API shows it>, "user_ids": [the users concerned]}

Events travel in batches: one AMQP message (event type ``BATCH_EVENT``, payload
``{"events": [event, …]}``) carries everything a relay round read, in outbox order, so
a thousand transactions finished together cost the broker and the consumer one message.

Each service keeps its own ``outbox`` table in its own schema (its migration makes it).
"""
import uuid

from sqlalchemy import BigInteger, Column, DateTime, Identity, MetaData, Table, Text, func
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared import tracing
from shared.ids import rfc3339
from shared.wire_json import compact

# The Nameko event type every batch of outbox events is dispatched under.
BATCH_EVENT = "events.batch"


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


def event(event_type, created_at, data, user_ids):
    """An event's payload: ``{id, type, created_at, data, user_ids}``, and the
    ``traceparent`` of the work that wrote it when there is one (shared/tracing.py), so
    the consumer's lines join that trace. Webhooks never show it."""
    payload = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "created_at": rfc3339(created_at),
        "data": data,
        "user_ids": sorted({user for user in user_ids if user}),
    }
    traceparent = tracing.current_traceparent()
    if traceparent:
        payload[tracing.TRACEPARENT_KEY] = traceparent
    return payload


def append(connection, table, event_type, created_at, data, user_ids):
    """Queue one event in the caller's commit; its payload."""
    payload = event(event_type, created_at, data, user_ids)
    append_many(connection, table, [payload])
    return payload


def append_many(connection, table, payloads):
    """Queue ``payloads`` (made by ``event``) in the caller's commit, in one statement."""
    if not payloads:
        return
    connection.execute(text("""
        INSERT INTO {schema}.outbox (event_id, event_type, payload)
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[]),
                             CAST(:payloads AS jsonb[]))
    """.format(schema=table.schema)), {
        "ids": [payload["id"] for payload in payloads],
        "types": [payload["type"] for payload in payloads],
        "payloads": [compact(payload) for payload in payloads],
    })
