"""The notifications service's metrics (docs/metrics.md): every delivery attempt as it is
recorded, and the backlog, read when Prometheus scrapes.

    paysys_notification_delivery_attempts_total{channel, outcome}   outcome: succeeded,
        failed (the recipient did not take it), deferred (our own dependency did not answer)
    paysys_notification_deliveries_pending{channel}     deliveries still to make (waiting
        for their time, due, or being sent), counted up to a bound
    paysys_notification_deliveries_overdue_seconds{channel}   how long the longest-due
        delivery nobody is sending has been due: the delivery loop's lag (0: none is due)

``channel`` is webhook or email. Every notifications process reads the same table, so
each reports the same backlog: aggregate with max.
"""
from nameko.extensions import DependencyProvider
from prometheus_client import Counter
from sqlalchemy import func, or_, select

from services.notifications.records import deliveries
from shared.db import DatabaseClient
from shared.metrics import REGISTRY
from shared.metrics.scrape import COUNT_LIMIT, SCRAPED, Source, gauge

CHANNELS = ("webhook", "email")

attempts_total = Counter(
    "paysys_notification_delivery_attempts", "Delivery attempts, by channel and outcome",
    ["channel", "outcome"], registry=REGISTRY)
PENDING = gauge("paysys_notification_deliveries_pending",
                "Deliveries not yet delivered or given up (counted up to {})".format(
                    COUNT_LIMIT), ["channel"])
OVERDUE = gauge("paysys_notification_deliveries_overdue_seconds",
                "How long the longest-due delivery no process is sending has been due "
                "(0: none)", ["channel"])

_attempts = {}


def count_attempt(channel, outcome):
    key = (channel, outcome)
    child = _attempts.get(key)
    if child is None:
        child = _attempts[key] = attempts_total.labels(*key)
    child.inc()


def backlog_source(engine):
    """The scrape-time Source of the deliveries still to make, per channel."""
    pending = deliveries.c.status == "pending"

    def waiting(channel):
        return select(func.count()).select_from(
            select(deliveries.c.id).where(pending, deliveries.c.channel == channel)
            .limit(COUNT_LIMIT).subquery())

    def overdue(channel):
        # The delivery loop's own "due" (delivery_leases.claim_due), by the index it uses.
        return (select(func.extract("epoch", func.clock_timestamp()
                                    - deliveries.c.next_attempt_at))
                .where(pending, deliveries.c.channel == channel,
                       deliveries.c.next_attempt_at <= func.clock_timestamp(),
                       or_(deliveries.c.locked_until.is_(None),
                           deliveries.c.locked_until <= func.clock_timestamp()))
                .order_by(deliveries.c.next_attempt_at).limit(1))

    def read():
        counts, ages = {}, {}
        with engine.connect() as connection:
            for channel in CHANNELS:
                counts[(channel,)] = connection.execute(waiting(channel)).scalar_one()
                ages[(channel,)] = float(connection.execute(overdue(channel)).scalar() or 0)
        return {PENDING: counts, OVERDUE: ages}

    return Source("notification deliveries backlog", read)


class DeliveryBacklog(DependencyProvider):
    """Attaches the delivery backlog to the process's scrape-time gauges while it runs."""

    db = DatabaseClient(schema="notifications")

    def __init__(self):
        self.source = None

    def start(self):
        self.source = SCRAPED.attach(backlog_source(self.db.engine))

    def stop(self):
        SCRAPED.detach(self.source)

    kill = stop
