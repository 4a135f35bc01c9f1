"""The transactions tables, and a transaction's arrival: recorded ``pending``.

A transaction then moves pending → completed | failed (transitions.py); recovery finds
the ones left in flight (overdue.py); the API shows them as views.py makes them.

The row is the transaction's own record of its way (received ``created_at``, decided
``decided_at`` with the decision, the counted votes and the versions they judged, ended
``completed_at`` with its reason). ``transaction_steps`` keeps what the row cannot tell:
what recovery did (voted again, posted again, failed for want of a decision), and when.
Each write takes a whole batch in one statement (``unnest`` of arrays, one row per
transaction), so a batch of a thousand costs the database a few statements, not thousands.
"""
import uuid
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import (
    CHAR, BigInteger, Boolean, Column, DateTime, Identity, Integer, LargeBinary, MetaData,
    Table, Text, func, insert, select, text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.db import typed
from shared.ids import parse_id
from shared.wire_json import compact

PENDING, COMPLETED, FAILED = "pending", "completed", "failed"

metadata = MetaData(schema="transactions")
transactions = Table(
    "transactions",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("decision", Text),
    Column("failure_reason", Text),
    Column("initiator_id", UUID(as_uuid=False), nullable=False),
    Column("idempotency_key", Text),
    Column("source_account_id", UUID(as_uuid=False)),
    Column("destination_account_id", UUID(as_uuid=False)),
    Column("source_owner_id", UUID(as_uuid=False)),
    Column("destination_owner_id", UUID(as_uuid=False)),
    Column("amount", BigInteger, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("description", Text),
    Column("votes", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("decided_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    # A payment that only holds the money (an authorization); a capture's authorization.
    Column("hold", Boolean, nullable=False, server_default="false"),
    Column("authorization_id", UUID(as_uuid=False)),
    # The batch (POST /v1/transfers/batch) an item belongs to, and its place in it.
    Column("batch_id", UUID(as_uuid=False)),
    Column("batch_index", Integer),
    # The accounts' versions the transaction was approved on (the ledger checks them).
    Column("source_version", Integer),
    Column("destination_version", Integer),
    # The client's string-to-string metadata (None: none given).
    Column("metadata", JSONB),
)
steps = Table(
    "transaction_steps",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("transaction_id", UUID(as_uuid=False), nullable=False),
    Column("step", Text, nullable=False),
    Column("detail", JSONB, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# Every pending transaction, kept by triggers of ``transactions`` (migration
# transactions_0006): recovery finds its work here, and no index of ``transactions``
# names ``status``, so deciding and finishing update a row in place.
in_flight = Table(
    "in_flight",
    metadata,
    Column("transaction_id", UUID(as_uuid=False), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The validators' signed answers the counted votes came in (migration transactions_0007):
# a stored vote names its round, and the round's signature verifies it.
vote_rounds = Table(
    "vote_rounds",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("validator_id", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("signature", Text, nullable=False),
    Column("leaves", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def insert_vote_rounds(connection, rounds):
    """Keep the signed rounds (``voting.SignedRound``) whose votes were counted: one
    statement for all of them."""
    if rounds:
        connection.execute(insert(vote_rounds), [
            {"id": signed.id, "validator_id": signed.validator_id, "key_id": signed.key_id,
             "signature": signed.signature, "leaves": signed.leaves} for signed in rounds])


# --- received ----------------------------------------------------------------------------

_INSERT_PENDING = text("""
    INSERT INTO transactions.transactions (
        id, type, status, initiator_id, idempotency_key, source_account_id,
        destination_account_id, source_owner_id, destination_owner_id, amount, currency,
        description, metadata, votes, hold, authorization_id, batch_id, batch_index)
    SELECT v.id, v.type, 'pending', v.initiator_id, v.idempotency_key, v.source_account_id,
           v.destination_account_id, v.source_owner_id, v.destination_owner_id, v.amount,
           v.currency, v.description, v.metadata, '[]'::jsonb, v.hold, v.authorization_id,
           CAST(:batch_id AS uuid), v.batch_index
      FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[]), CAST(:initiators AS uuid[]),
                  CAST(:keys AS text[]), CAST(:sources AS uuid[]),
                  CAST(:destinations AS uuid[]), CAST(:source_owners AS uuid[]),
                  CAST(:destination_owners AS uuid[]), CAST(:amounts AS bigint[]),
                  CAST(:currencies AS char(3)[]), CAST(:descriptions AS text[]),
                  CAST(:metadata AS jsonb[]), CAST(:holds AS boolean[]),
                  CAST(:authorizations AS uuid[]), CAST(:batch_indexes AS integer[]))
           AS v(id, type, initiator_id, idempotency_key, source_account_id,
                destination_account_id, source_owner_id, destination_owner_id, amount,
                currency, description, metadata, hold, authorization_id, batch_index)
    ON CONFLICT ON CONSTRAINT one_per_idempotency_key DO NOTHING
    RETURNING *
""").columns(**typed(transactions))
_BY_KEYS = text("""
    SELECT t.* FROM transactions.transactions t
      JOIN unnest(CAST(:initiators AS uuid[]), CAST(:keys AS text[])) AS k(initiator_id, key)
        ON t.initiator_id = k.initiator_id AND t.idempotency_key = k.key
""").columns(**typed(transactions))


@dataclass(frozen=True)
class NewTransaction:
    """What preparation records of one movement."""

    movement: object  # shared.commands.Movement
    source_owner_id: Optional[str]
    destination_owner_id: Optional[str]
    batch_index: Optional[int] = None


def create_pending(connection, new, batch_id=None):
    """Record ``new`` (NewTransaction) ``pending``, each once per (initiator, idempotency
    key): ``[(row, created)]`` in the order given, a retried request getting the
    transaction it created before."""
    if not new:
        return []
    ids = [str(uuid.uuid4()) for _ in new]
    moves = [item.movement for item in new]
    inserted = {row.id: row for row in connection.execute(_INSERT_PENDING, {
        "ids": ids,
        "types": [move.kind for move in moves],
        "initiators": [move.initiator_id for move in moves],
        "keys": [move.idempotency_key for move in moves],
        "sources": [move.source_account_id for move in moves],
        "destinations": [move.destination_account_id for move in moves],
        "source_owners": [item.source_owner_id for item in new],
        "destination_owners": [item.destination_owner_id for item in new],
        "amounts": [move.amount for move in moves],
        "currencies": [move.currency for move in moves],
        "descriptions": [move.description for move in moves],
        "metadata": [compact(move.metadata) if move.metadata else None for move in moves],
        "holds": [move.hold for move in moves],
        "authorizations": [move.authorization_id if move.kind == "capture" else None
                           for move in moves],
        "batch_indexes": [item.batch_index for item in new],
        "batch_id": batch_id,
    })}
    missing = [move for transaction_id, move in zip(ids, moves) if transaction_id not in inserted]
    existing = {}
    if missing:
        existing = {(row.initiator_id, row.idempotency_key): row for row in connection.execute(
            _BY_KEYS, {"initiators": [move.initiator_id for move in missing],
                       "keys": [move.idempotency_key for move in missing]})}
    return [(inserted[transaction_id], True) if transaction_id in inserted
            else (existing[(move.initiator_id, move.idempotency_key)], False)
            for transaction_id, move in zip(ids, moves)]


# --- reading by id ------------------------------------------------------------------------


def find(connection, transaction_id):
    transaction_id = parse_id(transaction_id)
    if transaction_id is None:
        return None
    return connection.execute(
        select(transactions).where(transactions.c.id == transaction_id)).one_or_none()


def find_many(connection, transaction_ids):
    return connection.execute(
        select(transactions).where(transactions.c.id.in_(list(transaction_ids)))).all()
