"""The batches table (POST /v1/transfers/batch): one row per batch, once per (initiator,
idempotency key); its items are ordinary transactions pointing back at it, in order."""
import uuid

from sqlalchemy import (
    Boolean, Column, DateTime, Integer, MetaData, Table, Text, func, select,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.transactions import views
from services.transactions.records import COMPLETED, FAILED, PENDING, transactions
from shared.ids import parse_id, rfc3339

MAX_ITEMS = 1000

metadata = MetaData(schema="transactions")
batches = Table(
    "batches",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("initiator_id", UUID(as_uuid=False), nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("atomic", Boolean, nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def create(connection, initiator_id, idempotency_key, atomic, item_count):
    """``(row, created)``: the new batch, or the one this key made before."""
    row = connection.execute(
        pg_insert(batches)
        .values(id=str(uuid.uuid4()), initiator_id=initiator_id,
                idempotency_key=idempotency_key, atomic=atomic, item_count=item_count)
        .on_conflict_do_nothing(constraint="one_batch_per_idempotency_key")
        .returning(batches)).one_or_none()
    if row is not None:
        return row, True
    return connection.execute(
        select(batches).where(batches.c.initiator_id == initiator_id,
                              batches.c.idempotency_key == idempotency_key)).one(), False


def find(connection, batch_id):
    batch_id = parse_id(batch_id)
    if batch_id is None:
        return None
    return connection.execute(select(batches).where(batches.c.id == batch_id)).one_or_none()


def items_of(connection, batch_id):
    return connection.execute(
        select(transactions).where(transactions.c.batch_id == batch_id)
        .order_by(transactions.c.batch_index)).all()


def atomic_ones(connection, batch_ids):
    """Those of ``batch_ids`` that are atomic."""
    if not batch_ids:
        return set()
    return set(connection.execute(
        select(batches.c.id).where(batches.c.id.in_(list(batch_ids)), batches.c.atomic)
    ).scalars())


def view(batch, items):
    """A batch as the contract shows it: pending until every item is decided."""
    counts = {COMPLETED: 0, FAILED: 0, PENDING: 0}
    for item in items:
        counts[item.status] += 1
    done = counts[PENDING] == 0
    return {
        "id": batch.id,
        "status": COMPLETED if done else PENDING,
        "atomic": batch.atomic,
        "counts": counts,
        "items": [views.view(item) for item in items],
        "created_at": rfc3339(batch.created_at),
        "completed_at": rfc3339(max((item.completed_at for item in items),
                                    default=batch.created_at)) if done else None,
    }


def visible_to(batch, viewer_id):
    return batch.initiator_id == viewer_id
