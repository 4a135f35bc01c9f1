"""The outbox relay's AMQP sink (shared/outbox_relay/events.py) against real PostgreSQL and
RabbitMQ (a vhost of its own): a service's events go out as one ``events.batch`` Nameko
event per round, on the service's event exchange, and are marked sent only once RabbitMQ
has them, as persistent messages (unlike RPC's: shared/queues.py); one relay at a time per
outbox; and a round's read of its outbox stays cheap however many rows it has sent.

Needs RabbitMQ on loopback with the management API (enabled if off, as the system tests do).
"""
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from kombu import Connection, Queue
from nameko.constants import PERSISTENT
from nameko.events import event_handler
from nameko.standalone.events import get_event_exchange
from nameko.runners import ServiceRunner
from sqlalchemy import select, text

from services.transactions import events
from shared import event_outbox
from shared.event_outbox import BATCH_EVENT
from shared.outbox_relay.events import (RELAY_BATCH, EventRelay, EventsUnavailable,
                                        event_relay, events_outbox)
from harness.servers import wait_for
from tests.support.vhosts import config_on_own_vhost

RECEIVED = []


class TransactionsRelayOnly:
    """Nothing of the transactions service but its event relay."""

    name = "transactions"
    event_relay = EventRelay(events.outbox, interval_s=0.05)


class Listener:
    name = "outbox_relay_listener"

    @event_handler("transactions", BATCH_EVENT)
    def on_batch(self, payload):
        RECEIVED.append(payload)


@pytest.fixture
def config(database_url):
    with config_on_own_vhost("outbox_relay") as config:
        config["database"]["url"] = database_url
        yield config


def queue_events(engine, count):
    """``count`` events in the transactions outbox; their ids."""
    payloads = [event_outbox.event(events.COMPLETED, datetime.now(timezone.utc),
                                   {"id": str(uuid.uuid4())}, [str(uuid.uuid4())])
                for _ in range(count)]
    with engine.begin() as connection:
        event_outbox.append_many(connection, events.outbox, payloads)
    return [payload["id"] for payload in payloads]


def unsent(engine, ids):
    with engine.connect() as connection:
        return set(connection.execute(
            select(events.outbox.c.event_id).where(events.outbox.c.event_id.in_(ids),
                                                   events.outbox.c.dispatched_at.is_(None))
        ).scalars())


@contextmanager
def running(config, *services):
    """``services`` running on ``config``'s vhost for the block: the runner."""
    runner = ServiceRunner(config)
    for service in services:
        runner.add_service(service)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def received():
    """``{event id: event}`` of every batch the listener received."""
    return {event["id"]: event for batch in RECEIVED for event in batch["events"]}


def test_the_service_relays_its_events_as_batches_on_its_exchange(config, engine):
    with running(config, Listener, TransactionsRelayOnly):
        ids = queue_events(engine, 3)
        wait_for(lambda: set(ids) <= set(received()), 10, what="the events received")
        assert unsent(engine, ids) == set()
        # One batch per round, in outbox order: these three came together, in order.
        [batch] = [batch for batch in RECEIVED if ids[0] in {e["id"] for e in batch["events"]}]
        assert [e["id"] for e in batch["events"] if e["id"] in ids] == ids
        assert received()[ids[0]]["type"] == events.COMPLETED


def test_events_are_published_persistent(config, engine):
    with Connection(config["AMQP_URI"]) as connection:
        kept = Queue("outbox-relay-kept-" + uuid.uuid4().hex,
                     get_event_exchange("transactions", config), routing_key=BATCH_EVENT,
                     durable=True)(connection.channel())
        kept.declare()
        try:
            with running(config, TransactionsRelayOnly):
                [event_id] = queue_events(engine, 1)
                message = wait_for(lambda: kept.get(no_ack=True), 10, what="the relayed batch")
                while event_id not in {event["id"] for event in message.payload["events"]}:
                    message = wait_for(lambda: kept.get(no_ack=True), 10, what="the batch")
        finally:
            kept.delete()
    assert message.properties["delivery_mode"] == PERSISTENT


def test_nothing_is_marked_sent_when_rabbitmq_does_not_confirm(engine):
    def refused(event_type, payload):
        raise ConnectionRefusedError("connection refused")

    relay = event_relay(engine, events.outbox, refused, interval_s=0.2)
    ids = queue_events(engine, 2)
    with pytest.raises(EventsUnavailable, match="not confirmed"):
        relay.step()
    assert unsent(engine, ids) == set(ids)


def test_one_relay_at_a_time_per_outbox(engine):
    sent = []
    relay = event_relay(engine, events.outbox, lambda kind, payload: sent.append(payload),
                        interval_s=0.2)
    ids = queue_events(engine, 1)
    with engine.begin() as connection:  # another process's relay, mid-round
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": events_outbox(events.outbox).lock_key})
        assert relay.step() == 0
        assert unsent(engine, ids) == set(ids)
    while relay.step():
        pass
    assert unsent(engine, ids) == set()


def pages_read_by_an_idle_round(engine):
    """Buffers the relay's read of an outbox with nothing unsent touches, on ``engine``."""
    query = events_outbox(events.outbox).unsent(RELAY_BATCH).compile(
        engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        [[[plan]]] = connection.execute(
            text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}".format(query))).all()
    return plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]


def test_an_idle_round_stays_cheap_after_many_rows_were_sent(config, engine):
    """Rows sent leave their entries in the outbox's partial index until VACUUM. The relay's
    own connections must read past them once and skip them after (a plain index scan marks
    them dead); a bitmap scan would visit every row ever sent on each round."""
    with running(config, TransactionsRelayOnly) as runner:
        [container] = runner.containers
        [relay] = [dependency for dependency in container.dependencies
                   if isinstance(dependency, EventRelay)]
        ids = queue_events(engine, 5000)
        wait_for(lambda: not unsent(engine, ids), 30, what="the events sent")
        pages_read_by_an_idle_round(relay.engine)  # the first read past the sent rows
        assert pages_read_by_an_idle_round(relay.engine) < 20
