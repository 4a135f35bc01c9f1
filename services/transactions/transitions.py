"""A pending transaction's state machine: decided, then ended completed | failed.

Every transition is a conditional UPDATE (``WHERE status = 'pending'``, or ``decision
IS NULL``), so a worker, a redelivered message and the recovery loop can race over one
transaction and exactly one of them moves it. Each write takes a whole batch in one
statement (``unnest`` of arrays), and each transaction that ends queues its event in the
same commit. What recovery did is appended to ``transaction_steps``.
"""
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import text

from services.transactions import events
from services.transactions.records import PENDING, transactions
from services.transactions.views import view
from shared.db import typed
from shared.wire_json import compact


# --- steps and events ------------------------------------------------------------------

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


def queue_finished(connection, rows):
    """Queue the events of the ``rows`` that ended (in the caller's commit)."""
    events.record_finished(connection, [(row, view(row)) for row in rows
                                        if row.status != PENDING])


# --- decided -----------------------------------------------------------------------------

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
    queue_finished(connection, rows)
    return {row.id: row for row in rows}


# --- ended -------------------------------------------------------------------------------

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
    queue_finished(connection, rows)
    return {row.id: row for row in rows}
