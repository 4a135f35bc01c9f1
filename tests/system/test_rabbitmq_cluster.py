"""On a three-node RabbitMQ cluster (PAYSYS_RABBITMQ_NODES=3) the services' queues are
quorum queues, and transfers go on while the node every process first connected to is
killed: each reconnects to a survivor, none exits, and the node rejoins when started.

The module runs a system of its own on a cluster of its own (about a minute and a half
on two cores: three Erlang VMs boot before the services start)."""
import os

import pytest

from harness.sandbox import System
from harness.servers import wait_for
from tests.support.api import new_session
from tests.support.books import assert_books_right, open_bank

pytestmark = pytest.mark.system

NODES = 3


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    running = System("rabbitmq_cluster_{}".format(os.getpid()),
                     tmp_path_factory.mktemp("rabbitmq-cluster"), redis_db=7,
                     rabbitmq_nodes=NODES)
    with running:
        yield running


def test_the_services_queues_are_quorum_queues_and_reply_queues_classic(system):
    queues = system.rabbitmq_cluster().queues()

    service_queues = {name: kind for name, kind in queues.items()
                      if name.startswith(("rpc-", "evt-"))}
    assert {"rpc-transactions", "rpc-ledger", "rpc-validator_1"} <= set(service_queues)
    assert any(name.startswith("evt-transactions-") for name in service_queues)
    assert set(service_queues.values()) == {"quorum"}
    reply_queues = {kind for name, kind in queues.items() if name.startswith("rpc.reply-")}
    assert reply_queues == {"classic"}


def test_transfers_go_on_while_a_node_is_killed_and_it_rejoins(system):
    cluster = system.rabbitmq_cluster()
    bank = open_bank(system)
    bank.run(transfers_per_client=3, replay_fraction=0)
    processes = system.process_ids()

    cluster.kill(1)  # the first of every process's failover list: all were on it
    try:
        assert cluster.running_nodes() == [member.name for member in cluster.members[1:]]
        wait_for(lambda: system.get("/ready").status_code == 200, timeout_s=120,
                 interval_s=1, what="/ready answering 200 on two nodes")
        done_before = _completed(bank)
        bank.run(transfers_per_client=5, replay_fraction=0)
        assert _completed(bank) > done_before, "no transfer completed with a node down"
    finally:
        cluster.start_node(1)

    assert cluster.running_nodes() == sorted(member.name for member in cluster.members)
    assert system.process_ids() == processes, "a process exited instead of reconnecting"
    assert_books_right(bank, new_session(system, role="admin"))


def _completed(bank):
    return sum(1 for operation in bank.operations if operation.outcome == "ok")
