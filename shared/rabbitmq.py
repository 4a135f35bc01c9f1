"""Which RabbitMQ nodes the processes reach, and which type their queues are.

One node (``rabbitmq.nodes: 1``, the default) is the broker of ``AMQP_URI``, as it always
was. A cluster (``rabbitmq.nodes: 3``) is the one `make up` starts on loopback
(paysys/rabbitmq_cluster.py): node i is ``<cluster_name>-i@localhost``, its AMQP port
``cluster_port_base + i - 1``, its Erlang distribution port ``cluster_port_base +
DIST_PORT_OFFSET + i - 1``. Every process then gets all the nodes in ``AMQP_URI``, as
kombu's failover list (``uri1;uri2;uri3``): a client whose node dies connects to the next.

Pure functions of the configuration: ``shared.config.load_config`` applies them before
anything reads ``AMQP_URI``, so a service, the gateway's probes and the `paysys` commands
all see the same nodes.
"""
from dataclasses import dataclass

# The distribution ports sit this far above the AMQP ports: a block of 32 ports (what the
# test harness reserves) holds both for up to DIST_PORT_OFFSET nodes.
DIST_PORT_OFFSET = 16
MAX_NODES = DIST_PORT_OFFSET
HOST = "127.0.0.1"
# Erlang node names on this machine; the machine's own RabbitMQ (rabbit@<host>) shares epmd.
NODE_HOST = "localhost"
QUORUM = "quorum"
CLASSIC = "classic"


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    amqp_port: int
    dist_port: int

    @property
    def amqp_uri(self):
        # The cluster is this machine's own, on loopback: RabbitMQ's default user, whose
        # logins it accepts from loopback only, in the default vhost.
        return "pyamqp://guest:guest@{}:{}/".format(HOST, self.amqp_port)


def cluster_nodes(nodes, port_base, cluster_name):
    """The ``Node`` of each member of a cluster of ``nodes``."""
    return [Node(index, "{}-{}@{}".format(cluster_name, index, NODE_HOST),
                 port_base + index - 1, port_base + DIST_PORT_OFFSET + index - 1)
            for index in range(1, nodes + 1)]


def failover_uri(nodes):
    """kombu's failover list of the nodes' URIs: it connects to the first that answers."""
    return ";".join(node.amqp_uri for node in nodes)


def queue_type(setting, nodes):
    """The type of the services' queues: ``setting`` unless ``auto``, which is quorum on a
    cluster (replicated: a queue outlives its node) and classic on one node (a broker whose
    queues were declared classic refuses to redeclare them quorum, and one node gains
    nothing from replication)."""
    if setting != "auto":
        return setting
    return QUORUM if nodes > 1 else CLASSIC


def _section(config):
    section = config.get("rabbitmq") or {}
    return section.get("nodes"), section.get("cluster_port_base"), section.get("cluster_name")


def nodes_of(config):
    """The ``Node`` of each member of the cluster ``config`` describes; [] for one node
    (or a value the settings model would refuse, left for it to name)."""
    nodes, port_base, name = _section(config)
    if not (isinstance(nodes, int) and isinstance(port_base, int) and isinstance(name, str)):
        return []
    if 1 < nodes <= MAX_NODES and name:
        return cluster_nodes(nodes, port_base, name)
    return []


def apply_cluster(config):
    """``config`` with ``AMQP_URI`` naming every node of the cluster, when there is one;
    otherwise as it was. An ``AMQP_URI`` that is a failover list already is kept: the
    nodes reached by other addresses (a load balancer's, a test proxy's)."""
    nodes = nodes_of(config)
    if nodes and ";" not in str(config.get("AMQP_URI") or ""):
        config["AMQP_URI"] = failover_uri(nodes)
    return config
