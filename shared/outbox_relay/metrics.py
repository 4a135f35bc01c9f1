"""The metrics of every outbox relay: rows relayed (counted by the relay, per round), and
the backlog, read when Prometheus scrapes (a bounded query on the outbox's index of
unsent rows, which every relay round reads anyway).

    paysys_outbox_rows_relayed_total{outbox}     rows a relay of this process delivered
    paysys_outbox_rows_waiting{outbox}           unsent rows (counted up to COUNT_LIMIT)
    paysys_outbox_oldest_age_seconds{outbox}     how long the oldest unsent row has waited:
                                                 the relay's lag (0 when none waits)

``outbox`` is the table: transactions.outbox, payments.outbox (events over RabbitMQ),
ledger.outbox (the Kafka mirror). Every process of a service reads the same table, so
each reports the same backlog: aggregate with max.
"""
from prometheus_client import Counter
from sqlalchemy import func, literal, select

from shared.metrics import REGISTRY
from shared.metrics.scrape import COUNT_LIMIT, Source, gauge

rows_relayed_total = Counter(
    "paysys_outbox_rows_relayed", "Outbox rows a relay of this process delivered",
    ["outbox"], registry=REGISTRY)
ROWS_WAITING = gauge(
    "paysys_outbox_rows_waiting",
    "Outbox rows not yet relayed (counted up to {})".format(COUNT_LIMIT), ["outbox"])
OLDEST_AGE = gauge(
    "paysys_outbox_oldest_age_seconds",
    "How long the oldest outbox row not yet relayed has waited (0: none waits)", ["outbox"])


def outbox_name(outbox):
    """The ``outbox`` label: the table's schema-qualified name."""
    return "{}.{}".format(outbox.table.schema, outbox.table.name)


def backlog_source(engine, outbox):
    """The scrape-time Source of ``outbox``'s backlog (shared/outbox_relay/rounds.Outbox)."""
    table, name = outbox.table, outbox_name(outbox)
    unsent = table.c[outbox.sent].is_(None)
    waiting = select(func.count()).select_from(
        select(literal(1)).where(unsent).limit(COUNT_LIMIT).subquery())
    oldest = (select(func.extract("epoch", func.now() - table.c.created_at))
              .where(unsent).order_by(table.c.id).limit(1))

    def read():
        with engine.connect() as connection:
            count = connection.execute(waiting).scalar_one()
            age = connection.execute(oldest).scalar() if count else 0
        return {ROWS_WAITING: {(name,): count}, OLDEST_AGE: {(name,): float(age or 0)}}

    return Source("{} backlog".format(name), read)
