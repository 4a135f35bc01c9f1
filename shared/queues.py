"""Nameko's ``@rpc`` and ``@event_handler``, declaring their queues with the configured type.

Nameko 2.14 declares a service's RPC queue (``rpc-<service>``, in ``RpcConsumer.setup``)
and each event handler's queue (``EventHandler.setup``) itself, with no way to pass queue
arguments. On a RabbitMQ cluster they are quorum queues (``x-queue-type: quorum``,
``rabbitmq.queue_type``): replicated on every node, a queue and the messages in it outlive
the node that led it. These subclasses add the argument to the queue Nameko built, before
the queue consumer declares it.

Only a durable queue shared by its consumers can be a quorum queue. Nameko's RPC reply
queues (one per process, expiring) and broadcast handlers' exclusive queues stay classic,
on the node their process is connected to. Nameko declares its reply queue durable: on a
cluster, a durable classic queue whose node is down can be declared nowhere else (404
"home node ... is down") until that node returns, so a process that reconnects to a
survivor could not consume its replies. ``ReplyListener`` declares it transient there:
RabbitMQ deletes a transient queue with its node, the process declares it again on the
survivor, and only a reply in flight is lost (that call times out: a 503). On one node it
is declared as Nameko always did.

RPC messages, requests and replies, are transient (``RPC_DELIVERY_MODE``): a call's
state lives in PostgreSQL, not in the broker. A call lost with a broker restart times out
on its caller (a 503, or recovery finishing the transaction it belonged to), exactly as a
call whose reply is lost does; persisting it bought nothing and cost RabbitMQ a disk
write per message (half its CPU on the transfer path). Events stay persistent: their
outbox marks a row sent only once the broker has it on disk.
"""
from nameko.amqp.publish import Publisher
from nameko.constants import (AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER,
                              LOGIN_METHOD_CONFIG_KEY, NON_PERSISTENT, SERIALIZER_CONFIG_KEY)
from nameko.events import EventHandler as NamekoEventHandler
from nameko.rpc import ReplyListener as NamekoReplyListener
from nameko.rpc import Rpc as NamekoRpc
from nameko.rpc import Responder as NamekoResponder
from nameko.rpc import RpcConsumer as NamekoRpcConsumer
from nameko.rpc import get_rpc_exchange

from shared.rabbitmq import CLASSIC
from shared.settings import settings_of
from shared.shared_settings import SharedSettings

RPC_DELIVERY_MODE = NON_PERSISTENT


def queue_arguments(queue_type):
    """The declare arguments of a service queue of ``queue_type``."""
    return {} if queue_type == CLASSIC else {"x-queue-type": queue_type}


def can_be_replicated(queue):
    """A quorum queue must be durable, and neither exclusive nor auto-delete."""
    return queue.durable and not queue.exclusive and not queue.auto_delete


def declare_with_type(queue, container):
    """Give Nameko's ``queue`` the configured type, where that type can apply."""
    if not can_be_replicated(queue):
        return
    arguments = queue_arguments(settings_of(container, SharedSettings).rabbitmq
                                .services_queue_type)
    if arguments:
        queue.queue_arguments = dict(queue.queue_arguments or {}, **arguments)


def _clustered(container):
    return settings_of(container, SharedSettings).rabbitmq.clustered


class ReplyListener(NamekoReplyListener):
    def setup(self):
        super().setup()
        if _clustered(self.container):
            self.queue.durable = False


class _ReplyPublisher(Publisher):
    delivery_mode = RPC_DELIVERY_MODE


class _Responder(NamekoResponder):
    publisher_cls = _ReplyPublisher


class RpcConsumer(NamekoRpcConsumer):
    def setup(self):
        super().setup()
        # Nameko's queue consumer declares the queue when it starts consuming, after setup.
        declare_with_type(self.queue, self.container)

    def handle_result(self, message, result, exc_info):
        # Nameko's own, with a transient reply.
        config = self.container.config
        responder = _Responder(
            config[AMQP_URI_CONFIG_KEY], get_rpc_exchange(config),
            config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
            ssl=config.get(AMQP_SSL_CONFIG_KEY), login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        result, exc_info = responder.send_response(result, exc_info)
        self.queue_consumer.ack_message(message)
        return result, exc_info


class Rpc(NamekoRpc):
    rpc_consumer = RpcConsumer()


class EventHandler(NamekoEventHandler):
    def setup(self):
        super().setup()
        declare_with_type(self.queue, self.container)


rpc = Rpc.decorator
event_handler = EventHandler.decorator
