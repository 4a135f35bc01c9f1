"""Nameko's ``@rpc`` and ``@event_handler``, declaring their queues with the configured type.

Nameko 2.14 declares a service's RPC queue (``rpc-<service>``, in ``RpcConsumer.setup``)
and each event handler's queue (``EventHandler.setup``) itself, with no way to pass queue
arguments. On a RabbitMQ cluster they are quorum queues (``x-queue-type: quorum``,
``rabbitmq.queue_type``): replicated on every node, a queue and the messages in it outlive
the node that led it. These subclasses add the argument to the queue Nameko built, before
the queue consumer declares it.

Only a durable queue shared by its consumers can be a quorum queue. Nameko's RPC reply
queues (one per process, non-durable, expiring) and broadcast handlers' exclusive queues
stay classic: when their node dies they go with it, the process reconnects to a survivor
and declares them again, and a reply in flight is lost (its call times out: a 503).
"""
from nameko.events import EventHandler as NamekoEventHandler
from nameko.rpc import Rpc as NamekoRpc
from nameko.rpc import RpcConsumer as NamekoRpcConsumer

from shared.rabbitmq import CLASSIC
from shared.settings import settings_of
from shared.shared_settings import SharedSettings


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


class RpcConsumer(NamekoRpcConsumer):
    def setup(self):
        super().setup()
        # Nameko's queue consumer declares the queue when it starts consuming, after setup.
        declare_with_type(self.queue, self.container)


class Rpc(NamekoRpc):
    rpc_consumer = RpcConsumer()


class EventHandler(NamekoEventHandler):
    def setup(self):
        super().setup()
        declare_with_type(self.queue, self.container)


rpc = Rpc.decorator
event_handler = EventHandler.decorator
