"""The AMQP sink: a service's outbox of events (shared/event_outbox.py) relayed as its
Nameko events, and ``EventRelay``, the provider a service declares to run it.

Each round is one message on the service's event exchange (``<service>.events``, as
Nameko's EventDispatcher publishes): event type ``BATCH_EVENT``, payload ``{"events":
[event, …]}`` in outbox order, published with confirms, so a row is marked sent only
once RabbitMQ has it.
"""
import zlib

from amqp.exceptions import AMQPError
from kombu.exceptions import KombuError
from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY, HEADER_PREFIX, LOGIN_METHOD_CONFIG_KEY,
)
from nameko.standalone.events import get_event_exchange

from shared import tracing
from shared.event_outbox import BATCH_EVENT
from shared.logs import CORRELATION_ID_KEY, new_correlation_id
from shared.outbox_relay.loop import LoopSettings, Relay
from shared.outbox_relay.provider import OutboxRelay
from shared.outbox_relay.rounds import Delivery, Outbox, Sink, SinkUnavailable
from shared.settings import settings_of
from shared.shared_settings import SharedSettings

RELAY_BATCH = 1000  # events per round, so per batch message


class EventsUnavailable(SinkUnavailable):
    what = "RabbitMQ"


class EventsSink(Sink):
    """Dispatches a round as one batch event: ``dispatch(event_type, payload)``."""

    stop_timeout_s = 10.0  # a publish retries a lost connection a few times

    def __init__(self, dispatch):
        self.dispatch = dispatch

    def send(self, rows):
        try:
            self.dispatch(BATCH_EVENT, {"events": [row.payload for row in rows]})
        except (KombuError, AMQPError, OSError) as error:
            return Delivery(0, failure=EventsUnavailable("{} events not confirmed: {}: {}".format(
                len(rows), type(error).__name__, error)))
        return Delivery(len(rows))


def batch_traceparent(events):
    """The traceparent the consumer's worker continues: the events' own when they all
    belong to one trace (a lone request's), else None (the consumer starts a trace and
    names theirs)."""
    traceparents = {tracing.trace_id_of(event.get(tracing.TRACEPARENT_KEY)):
                    event.get(tracing.TRACEPARENT_KEY) for event in events}
    traceparents.pop(None, None)
    return next(iter(traceparents.values())) if len(traceparents) == 1 else None


def events_outbox(table):
    """The Outbox of a service's events table (shared/event_outbox.outbox_table)."""
    # One claim per schema's outbox: a fixed key derived from its name.
    key = zlib.crc32("{}.outbox relay".format(table.schema).encode("utf-8"))
    return Outbox(table, "dispatched_at", (table.c.payload,), key)


def event_relay(engine, table, dispatch, interval_s):
    """The Relay of the events ``table`` through ``dispatch(event_type, payload)``."""
    return Relay(engine, events_outbox(table), EventsSink(dispatch),
                 LoopSettings(batch_size=RELAY_BATCH, interval_s=interval_s),
                 "{} event relay".format(table.schema))


class EventRelay(OutboxRelay):
    """Relays the service's events ``table`` as its Nameko events, a round at least every
    ``interval_s``."""

    def __init__(self, table, interval_s):
        super().__init__()
        self.table = table
        self.interval_s = interval_s

    def make_relay(self, engine, container):
        # Publishes as Nameko's own EventDispatcher does, from the keys Nameko reads (TLS
        # and login method are Nameko's own, absent from config.yml unless an operator
        # adds them).
        config = container.config
        exchange = get_event_exchange(container.service_name, config)
        publisher = Publisher(
            settings_of(container, SharedSettings).amqp_uri,
            serializer=container.serializer,
            exchange=exchange, declare=[exchange], ssl=config.get(AMQP_SSL_CONFIG_KEY),
            login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        header = "{}.{}".format(HEADER_PREFIX, CORRELATION_ID_KEY)
        trace_header = "{}.{}".format(HEADER_PREFIX, tracing.TRACEPARENT_KEY)

        def dispatch(event_type, payload):
            # A correlation id of its own per batch: the consumers' logs of one batch
            # tell it apart from any request's.
            headers = {header: new_correlation_id()}
            traceparent = batch_traceparent(payload.get("events", ()))
            if traceparent:
                headers[trace_header] = traceparent
            publisher.publish(payload, exchange=exchange, routing_key=event_type,
                              extra_headers=headers)

        return event_relay(engine, self.table, dispatch, self.interval_s)
