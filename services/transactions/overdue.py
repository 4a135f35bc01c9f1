"""Transactions left in flight: what recovery finds, and the undecided it times out.

Recovery reads ``in_flight`` (every pending transaction, kept by triggers) and then the
transactions by primary key, oldest first, a chunk at a time.
"""
from sqlalchemy import any_, cast, func, literal, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from services.transactions.records import PENDING, in_flight, transactions
from services.transactions.transitions import queue_finished, record_steps
from shared.db import typed

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
    queue_finished(connection, rows)
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
