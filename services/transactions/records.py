"""The transactions table and its state machine: pending → completed | failed.

Every transition is a conditional UPDATE (``WHERE status = 'pending'``, or ``decision
IS NULL``), so a worker, a redelivered message and the recovery loop can race over one
transaction and exactly one of them moves it. Each write takes a whole batch in one
statement (``unnest`` of arrays, one row per transaction), so a batch of a thousand
costs the database a few statements, not thousands; each transaction that ends queues its
event in the same commit.

The row is the transaction's own record of its way (received ``created_at``, decided
``decided_at`` with the decision, the counted votes and the versions they judged, ended
``completed_at`` with its reason). ``transaction_steps`` keeps what the row cannot tell:
what recovery did (voted again, posted again, failed for want of a decision), and when.
"""
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import (
    CHAR, BigInteger, Boolean, Column, DateTime, Identity, Integer, MetaData, Table, Text,
    any_, cast, func, literal, or_, select, text, tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from services.transactions import events
from shared import cursors
from shared.db import typed
from shared.ids import parse_id, rfc3339
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


VIEWS_REMEMBERED = 20_000
_views = OrderedDict()


def view(row):
    """A transaction as the contract shows it: votes without their signatures.

    A row that ends is shown twice over (its event, and the answer to whoever waits for
    it), a batch's thousand rows at once: made once per version of the row."""
    version = (row.id, row.status, row.decided_at, row.completed_at)
    made = _views.get(version)
    if made is None:
        made = _views[version] = _view(row)
        if len(_views) > VIEWS_REMEMBERED:
            _views.popitem(last=False)
    return made


def _view(row):
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
        "metadata": row.metadata or {},
        "votes": [{"validator_id": vote["validator_id"], "decision": vote["decision"],
                   "reasons": vote["reasons"]} for vote in row.votes],
        "created_at": rfc3339(row.created_at),
        "completed_at": rfc3339(row.completed_at) if row.completed_at else None,
    }


def visible_to(row, viewer_id):
    return viewer_id in (row.initiator_id, row.source_owner_id, row.destination_owner_id)


# --- steps and events -------------------------------------------------------------------

_STEPS = text("""
    INSERT INTO transactions.transaction_steps (transaction_id, step, detail)
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:steps AS text[]),
                         CAST(:details AS jsonb[]))
""")


def record_steps(connection, rows):
    """Append ``(transaction_id, step, detail dict)`` rows to the audit trail."""
    if not rows:
        return
    connection.execute(_STEPS, {
        "ids": [transaction_id for transaction_id, _, _ in rows],
        "steps": [step for _, step, _ in rows],
        "details": [compact(detail) for _, _, detail in rows],
    })


def _finished(connection, rows):
    """Queue the events of the ``rows`` that ended (in the caller's commit)."""
    events.record_finished(connection, [(row, view(row)) for row in rows
                                        if row.status != PENDING])


# --- 1. received ---------------------------------------------------------------------------

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


# --- 2. decided ------------------------------------------------------------------------------

_DECIDE = text("""
    UPDATE transactions.transactions t
       SET decision = v.decision, votes = v.votes, decided_at = now(),
           status = CASE WHEN v.failure_reason IS NULL THEN 'pending' ELSE 'failed' END,
           failure_reason = v.failure_reason,
           completed_at = CASE WHEN v.failure_reason IS NULL THEN NULL ELSE now() END,
           source_version = v.source_version, destination_version = v.destination_version
      FROM unnest(CAST(:ids AS uuid[]), CAST(:decisions AS text[]), CAST(:votes AS jsonb[]),
                  CAST(:reasons AS text[]), CAST(:source_versions AS integer[]),
                  CAST(:destination_versions AS integer[]))
           AS v(id, decision, votes, failure_reason, source_version, destination_version)
     WHERE t.id = v.id AND t.decision IS NULL
    RETURNING t.*
""").columns(**typed(transactions))


@dataclass(frozen=True)
class Decision:
    """A vote round's outcome for one transaction. ``failure_reason`` None: approved and
    still to be posted; else the transaction fails with it (a rejection, no quorum, or an
    approved item of an atomic batch that another item failed)."""

    transaction_id: str
    decision: str
    votes: list
    failure_reason: Optional[str] = None
    source_version: Optional[int] = None
    destination_version: Optional[int] = None


def record_decisions(connection, decisions, by=None):
    """Store each decision unless the transaction was decided before (by another worker or
    the recovery: that decision stands). ``{transaction_id: row}`` of those stored.
    ``by``: who decided out of the ordinary (recovery), for the steps."""
    if not decisions:
        return {}
    rows = connection.execute(_DECIDE, {
        "ids": [d.transaction_id for d in decisions],
        "decisions": [d.decision for d in decisions],
        "votes": [compact(d.votes) for d in decisions],
        "reasons": [d.failure_reason for d in decisions],
        "source_versions": [d.source_version for d in decisions],
        "destination_versions": [d.destination_version for d in decisions],
    }).all()
    if by is not None:
        record_steps(connection, [(row.id, "decided", {
            "by": by, "decision": row.decision, "failure_reason": row.failure_reason,
            "validators": [vote["validator_id"] for vote in row.votes]}) for row in rows])
    _finished(connection, rows)
    return {row.id: row for row in rows}


# --- 3. finished ------------------------------------------------------------------------------

_FINISH = text("""
    UPDATE transactions.transactions t
       SET status = v.status, failure_reason = v.failure_reason, completed_at = now()
      FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:reasons AS text[]))
           AS v(id, status, failure_reason)
     WHERE t.id = v.id AND t.status = 'pending'
    RETURNING t.*
""").columns(**typed(transactions))


@dataclass(frozen=True)
class Ending:
    """How one pending transaction ends: completed (posted), or failed with a reason."""

    transaction_id: str
    status: str
    failure_reason: Optional[str] = None
    step: Optional[str] = None
    detail: Optional[dict] = None


def finish(connection, endings, by=None):
    """pending → completed | failed, once each. ``{transaction_id: row}`` of those that
    were still pending. ``by``: who ended them out of the ordinary (recovery)."""
    if not endings:
        return {}
    rows = connection.execute(_FINISH, {
        "ids": [e.transaction_id for e in endings],
        "statuses": [e.status for e in endings],
        "reasons": [e.failure_reason for e in endings],
    }).all()
    if by is not None:
        by_id = {e.transaction_id: e for e in endings}
        record_steps(connection, [
            (row.id, by_id[row.id].step or row.status,
             dict(by_id[row.id].detail or {}, by=by, failure_reason=row.failure_reason))
            for row in rows])
    _finished(connection, rows)
    return {row.id: row for row in rows}


# --- 5. recovery ----------------------------------------------------------------------------


OVERDUE_CHUNK = 2000

_TIME_OUT = text("""
    UPDATE transactions.transactions
       SET status = 'failed', decision = 'timeout', failure_reason = 'decision_timeout',
           decided_at = now(), completed_at = now()
     WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending' AND decision IS NULL
    RETURNING *
""").columns(**typed(transactions))


def _overdue(connection, older_than_s):
    """Chunks of the ids of transactions pending for longer than ``older_than_s``, oldest
    first. Recovery reads ``in_flight`` and then the transactions by primary key: one
    statement joining the two may be planned as a scan of every transaction ever made
    (the planner cannot know how few are in flight)."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s)
    after = None
    while True:
        query = select(in_flight.c.transaction_id, in_flight.c.created_at).where(
            in_flight.c.created_at < cutoff)
        if after is not None:
            query = query.where(tuple_(in_flight.c.created_at, in_flight.c.transaction_id)
                                > tuple_(literal(after[0]), literal(after[1])))
        chunk = connection.execute(query.order_by(in_flight.c.created_at,
                                                  in_flight.c.transaction_id)
                                   .limit(OVERDUE_CHUNK)).all()
        if not chunk:
            return
        yield [row.transaction_id for row in chunk]
        if len(chunk) < OVERDUE_CHUNK:
            return
        after = tuple(chunk[-1])


def _pending_by_ids(connection, ids, *conditions):
    return connection.execute(
        select(transactions).where(transactions.c.id == any_(cast(
            literal(ids, ARRAY(UUID(as_uuid=False))), ARRAY(UUID(as_uuid=False)))),
            transactions.c.status == PENDING, *conditions)).all()


def time_out_undecided(connection, older_than_s):
    """Fail every transaction still undecided after ``older_than_s``: its vote round died
    with a process. Returns the rows failed."""
    rows = []
    for ids in _overdue(connection, older_than_s):
        rows += connection.execute(_TIME_OUT, {"ids": ids}).all()
    record_steps(connection, [(row.id, "failed", {"failure_reason": "decision_timeout",
                                                  "by": "recovery"}) for row in rows])
    _finished(connection, rows)
    return rows


def undecided_in_flight(connection, older_than_s, limit=500):
    """Transactions still undecided after ``older_than_s`` (their vote round may have
    died), oldest first."""
    return _first(connection, older_than_s, limit, transactions.c.decision.is_(None))


def approved_in_flight(connection, older_than_s, limit=500):
    """Transactions approved more than ``older_than_s`` ago and not yet completed (their
    posting may have been lost), oldest first."""
    decided_before = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s)
    # Every transaction in flight is looked at: their age is that of their creation.
    return _first(connection, 0, limit, transactions.c.decision == "approve",
                  transactions.c.decided_at < decided_before)


def _first(connection, older_than_s, limit, *conditions):
    found = []
    for ids in _overdue(connection, older_than_s):
        order = {transaction_id: place for place, transaction_id in enumerate(ids)}
        found += sorted(_pending_by_ids(connection, ids, *conditions),
                        key=lambda row: order[row.id])
        if len(found) >= limit:
            break
    return found[:limit]


def pending_of_batches(connection, batch_ids):
    """The pending items of ``batch_ids``: an atomic batch is recovered whole."""
    if not batch_ids:
        return []
    return connection.execute(
        select(transactions)
        .where(transactions.c.batch_id.in_(list(batch_ids)), transactions.c.status == PENDING)
        .order_by(transactions.c.batch_id, transactions.c.batch_index)).all()


# --- reading ------------------------------------------------------------------------------


def find(connection, transaction_id):
    transaction_id = parse_id(transaction_id)
    if transaction_id is None:
        return None
    return connection.execute(
        select(transactions).where(transactions.c.id == transaction_id)).one_or_none()


def find_many(connection, transaction_ids):
    return connection.execute(
        select(transactions).where(transactions.c.id.in_(list(transaction_ids)))).all()


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
