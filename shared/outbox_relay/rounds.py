"""One relay round: claim the outbox, read a round of unsent rows in id order, hand them
to the sink, mark sent what it delivered.

The claim is a session advisory lock on the round's connection: one relay at a time per
outbox, so a round's rows go out in outbox order and after the previous round's, while
the relays of other processes idle. No row is locked and no transaction is open while
the sink talks to its broker: the read commits before the send, the mark is a
transaction of its own after it. Only relays write the sent column, so the claim is all
that keeps two rounds apart. A crash between send and mark leaves the rows unsent: they
go again (a duplicate, never a loss).
"""
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import func, select, update


@dataclass(frozen=True)
class Outbox:
    """Where a relay reads: ``table``, its column ``sent`` (the time a row was sent, NULL
    until then), the ``columns`` a sink reads (its rows' ``id`` is always read) and the
    advisory lock key of the relay's claim."""

    table: object
    sent: str
    columns: tuple
    lock_key: int

    def unsent(self, limit):
        table = self.table
        return (select(table.c.id, *self.columns)
                .where(table.c[self.sent].is_(None))
                .order_by(table.c.id).limit(limit))

    def mark_sent(self, connection, rows):
        connection.execute(update(self.table)
                           .where(self.table.c.id.in_([row.id for row in rows]))
                           .values({self.sent: func.now()}))


class SinkUnavailable(Exception):
    """What a sink sends to did not answer, or did not take everything; ``what`` is named
    in the relay's log line."""

    what = "the sink"


@dataclass
class Delivery:
    """What a sink's ``send`` achieved: the first ``count`` rows of the round were
    delivered, ``receipt`` is what the sink's ``record`` needs of them, and ``failure``
    (a SinkUnavailable) what stopped the rest, or None."""

    count: int
    receipt: object = None
    failure: Exception = None


class Sink:
    """Where a relay sends its rows. ``send`` is the one a sink must have."""

    stop_timeout_s = 5.0  # how long a round in progress may take to end

    def prepare(self, connection):
        """Before the read, under the claim: False to skip the round."""
        return True

    def send(self, rows):
        """Send ``rows`` in order: a Delivery."""
        raise NotImplementedError

    def record(self, connection, rows, receipt):
        """In the transaction that marks ``rows`` sent: False to leave them unsent."""
        return True

    def close(self):
        """Let go of any connection to the broker (a round after this makes a new one)."""


def run_round(engine, outbox, sink, limit):
    """One round of up to ``limit`` rows: the number delivered (0: nothing waited, or
    another relay holds the claim). Raises the sink's failure after marking what was
    delivered before it."""
    with claimed(engine, outbox.lock_key) as connection:
        if connection is None or not sink.prepare(connection):
            return 0
        with connection.begin():
            rows = connection.execute(outbox.unsent(limit)).all()
        if not rows:
            return 0
        delivery = sink.send(rows)
        if delivery.count:
            delivered = rows[:delivery.count]
            with connection.begin():
                if sink.record(connection, delivered, delivery.receipt):
                    outbox.mark_sent(connection, delivered)
    if delivery.failure is not None:
        raise delivery.failure
    return delivery.count


@contextmanager
def claimed(engine, key):
    """A connection holding the advisory lock ``key`` for the block, no transaction open;
    None if another session holds the lock."""
    with engine.connect() as connection:
        locked = connection.execute(select(func.pg_try_advisory_lock(key))).scalar_one()
        connection.commit()
        if not locked:
            yield None
            return
        try:
            yield connection
        finally:
            _release(connection, key)


def _release(connection, key):
    try:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(select(func.pg_advisory_unlock(key)))
        connection.commit()
    except Exception:  # noqa: BLE001 - a broken connection: closing it releases the lock
        connection.invalidate()
