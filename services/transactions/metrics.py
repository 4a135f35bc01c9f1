"""The transactions service's metrics (docs/metrics.md): decisions as they are stored,
transactions as they end, and, read when Prometheus scrapes, the ones still pending.

    paysys_transaction_decisions_total{outcome, reason}   outcome: approve, reject,
        no_quorum, timeout; reason: the failure reason (none for an approval that stands)
    paysys_transaction_decision_duration_seconds           from a transaction's record to
        its decision (both the database's clock), recovery's re-votes included
    paysys_transactions_finished_total{status, reason}     completed, or failed and why
    paysys_transactions_pending                            pending now (counted up to a bound)
    paysys_transactions_pending_oldest_age_seconds         the oldest pending one's age

Counted after the commit that stores them, by whichever process stored them (a decision
another worker stored first is not counted twice). Label children are kept per label
values: a batch of a thousand costs a thousand dictionary lookups and increments.
"""
from prometheus_client import Counter, Histogram
from sqlalchemy import func, literal, select

from services.transactions.records import PENDING, in_flight
from shared.metrics import REGISTRY
from shared.metrics.scrape import COUNT_LIMIT, Source, gauge

NONE = "none"
# From a vote round that answers at once to recovery's re-votes (every 5 s, after 10 s)
# and its timeout (30 s).
DECISION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                      60.0)

decisions_total = Counter(
    "paysys_transaction_decisions", "Transactions decided, by outcome and failure reason",
    ["outcome", "reason"], registry=REGISTRY)
decision_duration_seconds = Histogram(
    "paysys_transaction_decision_duration_seconds",
    "From a transaction's record (pending) to its decision",
    buckets=DECISION_BUCKETS_S, registry=REGISTRY)
finished_total = Counter(
    "paysys_transactions_finished", "Transactions that ended, by status and failure reason",
    ["status", "reason"], registry=REGISTRY)
PENDING_COUNT = gauge("paysys_transactions_pending",
                      "Transactions pending now (counted up to {})".format(COUNT_LIMIT))
PENDING_OLDEST = gauge("paysys_transactions_pending_oldest_age_seconds",
                       "How long the oldest pending transaction has been pending (0: none)")

_decisions = {}
_finished = {}


def count_decided(rows):
    """Count the decisions just stored (rows as RETURNING gave them)."""
    for row in rows:
        key = (row.decision or NONE, row.failure_reason or NONE)
        child = _decisions.get(key)
        if child is None:
            child = _decisions[key] = decisions_total.labels(*key)
        child.inc()
        if row.decided_at is not None and row.created_at is not None:
            decision_duration_seconds.observe(
                max(0.0, (row.decided_at - row.created_at).total_seconds()))
    count_finished(rows)


def count_finished(rows):
    """Count the transactions among ``rows`` that ended (just committed)."""
    for row in rows:
        if row.status == PENDING:
            continue
        key = (row.status, row.failure_reason or NONE)
        child = _finished.get(key)
        if child is None:
            child = _finished[key] = finished_total.labels(*key)
        child.inc()


def pending_source(engine):
    """The scrape-time Source of the pending transactions (the ``in_flight`` table)."""
    count = select(func.count()).select_from(select(literal(1)).select_from(in_flight)
                                             .limit(COUNT_LIMIT).subquery())
    oldest = (select(func.extract("epoch", func.now() - in_flight.c.created_at))
              .order_by(in_flight.c.created_at).limit(1))

    def read():
        with engine.connect() as connection:
            pending = connection.execute(count).scalar_one()
            age = connection.execute(oldest).scalar() if pending else 0
        return {PENDING_COUNT: {(): pending}, PENDING_OLDEST: {(): float(age or 0)}}

    return Source("pending transactions", read)
