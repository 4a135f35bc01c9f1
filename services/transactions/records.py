"""The transactions table and its state machine: pending → completed | failed.

Every transition is one conditional UPDATE (``WHERE status = 'pending'``, or
``decision IS NULL``), so a worker, a redelivered message and the recovery
loop can race over one transaction and exactly one of them moves it; each
transition also appends a row to ``transaction_steps`` in the same commit.
"""
import uuid

from sqlalchemy import (
    CHAR, BigInteger, Boolean, Column, DateTime, Identity, MetaData, Table, Text, func, insert, literal,
    or_, select, tuple_, update,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.transactions import events
from shared import cursors
from shared.ids import parse_id, rfc3339

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
    Column("idempotency_key", Text, nullable=False),
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


def view(row):
    """A transaction as the contract shows it: votes without their signatures."""
    return {
        "id": row.id,
        "type": row.type,
        "status": row.status,
        "failure_reason": row.failure_reason,
        "source_account_id": row.source_account_id,
        "destination_account_id": row.destination_account_id,
        "amount": row.amount,
        "currency": row.currency,
        "description": row.description,
        "votes": [{"validator_id": vote["validator_id"], "decision": vote["decision"],
                   "reasons": vote["reasons"]} for vote in row.votes],
        "created_at": rfc3339(row.created_at),
        "completed_at": rfc3339(row.completed_at) if row.completed_at else None,
    }


def record_step(connection, transaction_id, step, **detail):
    connection.execute(insert(steps).values(transaction_id=transaction_id, step=step,
                                            detail=detail))


def create_pending(connection, values):
    """Insert the pending transaction unless its (initiator, idempotency key) exists.

    Returns ``(row, created)``: a retried request gets the transaction it created before.
    """
    row = connection.execute(
        pg_insert(transactions)
        .values(id=str(uuid.uuid4()), status="pending", votes=[], **values)
        .on_conflict_do_nothing(constraint="one_per_idempotency_key")
        .returning(transactions)
    ).one_or_none()
    if row is not None:
        record_step(connection, row.id, "received")
        return row, True
    existing = connection.execute(
        select(transactions).where(
            transactions.c.initiator_id == values["initiator_id"],
            transactions.c.idempotency_key == values["idempotency_key"])
    ).one()
    return existing, False


def find(connection, transaction_id):
    transaction_id = parse_id(transaction_id)
    if transaction_id is None:
        return None
    return connection.execute(
        select(transactions).where(transactions.c.id == transaction_id)).one_or_none()


def _finished(connection, row):
    events.record_finished(connection, row, view(row))


def find_many(connection, transaction_ids):
    return connection.execute(
        select(transactions).where(transactions.c.id.in_(list(transaction_ids)))).all()


def record_decision(connection, transaction_id, decision, votes, failure_reason=None):
    """Store the vote round's outcome; a rejection or missing quorum also fails the
    transaction. None if someone else decided first (the row says what they decided)."""
    values = {"decision": decision, "votes": votes, "decided_at": func.now()}
    if decision != "approve":
        values.update(status="failed", failure_reason=failure_reason, completed_at=func.now())
    row = connection.execute(
        update(transactions)
        .where(transactions.c.id == transaction_id, transactions.c.decision.is_(None))
        .values(**values)
        .returning(transactions)
    ).one_or_none()
    if row is not None:
        record_step(connection, transaction_id, "decided", decision=decision,
                    failure_reason=failure_reason,
                    validators=[vote["validator_id"] for vote in votes])
        if row.status != "pending":
            _finished(connection, row)
    return row


def finish(connection, transaction_id, status, failure_reason=None, step=None, **detail):
    """pending → completed | failed, once. None if it was no longer pending."""
    row = connection.execute(
        update(transactions)
        .where(transactions.c.id == transaction_id, transactions.c.status == "pending")
        .values(status=status, failure_reason=failure_reason, completed_at=func.now())
        .returning(transactions)
    ).one_or_none()
    if row is not None:
        record_step(connection, transaction_id, step or status,
                    failure_reason=failure_reason, **detail)
        _finished(connection, row)
    return row


def time_out_undecided(connection, older_than_s):
    """Fail every transaction still undecided after ``older_than_s``: its vote round died
    with a process. Returns the rows failed."""
    rows = connection.execute(
        update(transactions)
        .where(transactions.c.status == "pending", transactions.c.decision.is_(None),
               transactions.c.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0,
                                                                         older_than_s))
        .values(status="failed", decision="timeout", failure_reason="decision_timeout",
                decided_at=func.now(), completed_at=func.now())
        .returning(transactions)
    ).all()
    for row in rows:
        record_step(connection, row.id, "failed", failure_reason="decision_timeout",
                    by="recovery")
        _finished(connection, row)
    return rows


def undecided_in_flight(connection, older_than_s, limit=500):
    """Transactions still undecided after ``older_than_s``: their vote round may have died."""
    return connection.execute(
        select(transactions)
        .where(transactions.c.status == "pending", transactions.c.decision.is_(None),
               transactions.c.created_at < func.now() - func.make_interval(
                   0, 0, 0, 0, 0, 0, older_than_s))
        .order_by(transactions.c.created_at)
        .limit(limit)
    ).all()


def approved_in_flight(connection, older_than_s, limit=500):
    """Approved transactions not yet completed: their posting may have been lost."""
    return connection.execute(
        select(transactions)
        .where(transactions.c.status == "pending", transactions.c.decision == "approve",
               transactions.c.decided_at < func.now() - func.make_interval(
                   0, 0, 0, 0, 0, 0, older_than_s))
        .order_by(transactions.c.decided_at)
        .limit(limit)
    ).all()


# --- Lists ---------------------------------------------------------------------------


def page_for(connection, limit, viewer_id=None, account_id=None, status=None, before=None):
    """Newest first. ``account_id``: the transactions of that account (the caller has
    checked it is the viewer's); else those touching any account of ``viewer_id``."""
    query = select(transactions)
    if account_id is not None:
        query = query.where(or_(transactions.c.source_account_id == account_id,
                                transactions.c.destination_account_id == account_id))
    else:
        query = query.where(or_(transactions.c.source_owner_id == viewer_id,
                                transactions.c.destination_owner_id == viewer_id,
                                transactions.c.initiator_id == viewer_id))
    if status is not None:
        query = query.where(transactions.c.status == status)
    if before is not None:
        created_at, transaction_id = before
        query = query.where(tuple_(transactions.c.created_at, transactions.c.id) < tuple_(
            literal(created_at, DateTime(timezone=True)),
            literal(transaction_id, UUID(as_uuid=False))))
    rows = connection.execute(
        query.order_by(transactions.c.created_at.desc(), transactions.c.id.desc())
        .limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def encode_cursor(row):
    return cursors.encode_time_and_id(row.created_at, row.id)


decode_cursor = cursors.decode_time_and_id


def visible_to(row, viewer_id):
    return viewer_id in (row.initiator_id, row.source_owner_id, row.destination_owner_id)

