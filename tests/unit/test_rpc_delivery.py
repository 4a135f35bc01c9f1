"""RPC requests and replies travel transient (shared/queues.py): on a real Nameko
container and RabbitMQ (a vhost of its own), the messages are read off their queues as the
broker holds them. Events stay persistent: tests/unit/test_outbox_relay.py."""
import uuid

import pytest
from kombu import Connection, Exchange, Queue
from nameko.constants import NON_PERSISTENT, PERSISTENT

from harness.servers import wait_for
from shared.rpc import ServiceRpc
from shared.service import rpc
from tests.support.vhosts import running_on_own_vhost

ABSENT = "absent_callee"  # a service whose queue exists but nothing consumes


class Caller:
    name = "rpc_delivery_caller"
    calls = ServiceRpc()

    @rpc
    def echo(self, value):
        return value

    @rpc
    def call_absent(self):
        return self.calls[ABSENT].anything(timeout_s=0.5, breaker=False)


@pytest.fixture
def broker():
    with running_on_own_vhost("rpc_delivery", Caller) as (config, _), \
            Connection(config["AMQP_URI"]) as connection:
        yield connection


def rpc_exchange(connection):
    return Exchange("nameko-rpc", type="topic", durable=True, channel=connection.channel())


def declared_reply_queue(connection):
    """A reply queue of the caller's own, as a Nameko client declares one."""
    queue = Queue("reply-" + uuid.uuid4().hex, rpc_exchange(connection),
                  routing_key=uuid.uuid4().hex, auto_delete=True)
    queue(connection.channel()).declare()
    return queue


def first_message(connection, queue):
    """The first message on ``queue``, taken off it."""
    queue = queue(connection.channel())
    return wait_for(lambda: queue.get(no_ack=True), timeout_s=10,
                    what="a message on {}".format(queue.name))


def test_a_request_to_another_service_is_transient(broker):
    # The callee's durable queue, as its service would have declared it.
    waiting = Queue("rpc-" + ABSENT, rpc_exchange(broker), routing_key=ABSENT + ".*",
                    durable=True)
    waiting(broker.channel()).declare()
    reply_queue = declared_reply_queue(broker)
    with broker.Producer() as producer:
        producer.publish({"args": [], "kwargs": {}}, exchange="nameko-rpc",
                         routing_key=Caller.name + ".call_absent",
                         reply_to=reply_queue.routing_key, correlation_id="1",
                         serializer="json", delivery_mode=PERSISTENT)

    request = first_message(broker, waiting)
    assert request.delivery_info["routing_key"] == ABSENT + ".anything"
    assert request.properties["delivery_mode"] == NON_PERSISTENT


def test_a_reply_is_transient_whatever_the_request_was(broker):
    reply_queue = declared_reply_queue(broker)
    with broker.Producer() as producer:
        producer.publish({"args": ["hello"], "kwargs": {}}, exchange="nameko-rpc",
                         routing_key=Caller.name + ".echo",
                         reply_to=reply_queue.routing_key, correlation_id="2",
                         serializer="json", delivery_mode=PERSISTENT)

    reply = first_message(broker, reply_queue)
    assert reply.payload == {"result": "hello", "error": None}
    assert reply.properties["correlation_id"] == "2"
    assert reply.properties["delivery_mode"] == NON_PERSISTENT
