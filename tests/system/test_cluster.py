"""The system run as a cluster, as README's "Running as a cluster" starts it: two processes
of every service (PAYSYS_REPLICAS=2), a three-node RabbitMQ cluster of its own
(PAYSYS_RABBITMQ_NODES=3) and a pg_auto_failover primary with a synchronous standby
(PAYSYS_POSTGRES_HA=1). The bank load runs through each fault in turn, and after each the
checker finds the books right (conserved, each acknowledged transfer exactly once, nothing
pending, the Kafka mirror equal to the ledger) with the system ready by itself:

- one process of every service killed at once (supervisord restarts them);
- the RabbitMQ node every process is connected to killed, then started (it rejoins, and
  no process exited: each reconnected to a survivor);
- the PostgreSQL primary killed and kept down: the standby is promoted, the services
  follow it without a restart, and the old primary rejoins as the standby.

One sandbox for all of it (about four minutes on two cores: three Erlang VMs and a
formation boot before eighteen service processes start; the failover takes ~25 s).
"""
import os

import pytest

from chaos import experiment, report
from chaos.experiments import catalogue
from harness.sandbox import System
from paysys import postgres_ha

pytestmark = [
    pytest.mark.system,
    pytest.mark.cluster,
    pytest.mark.skipif(bool(postgres_ha.missing()), reason=postgres_ha.INSTALL_HINT),
]

TIMINGS = experiment.Timings(before_s=3, after_s=3, ready_timeout_s=180,
                             settle_timeout_s=120, mirror_timeout_s=120)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    running = System("cluster_{}".format(os.getpid()), tmp_path_factory.mktemp("cluster"),
                     redis_db=6, env={"PAYSYS_REPLICAS": "2"}, postgres_ha=True,
                     rabbitmq_nodes=3)
    with running:
        yield running


@pytest.fixture(scope="module")
def target(system):
    return experiment.Target(system)


def run(name, target, tmp_path):
    result = experiment.run(catalogue()[name], target, clients=3, timings=TIMINGS)
    summary = report.write(result, tmp_path / name)
    print("\n{}: {}".format(name, {key: summary[key] for key in (
        "verdict", "operations", "completed_per_s", "recovered_after_heal_s",
        "observations")}))
    assert result.problems == []
    assert target.ready()
    # Served again after the fault: some transfer completed after the heal.
    assert any(op.outcome == "ok" and op.started_s > result.healed for op in result.operations)
    return result


def test_every_part_runs_as_a_cluster(system):
    processes = system.process_ids()
    assert {"transactions", "transactions-2", "validator_1", "validator_1-2", "gateway",
            "gateway-2"} <= set(processes)
    queues = system.rabbitmq_cluster().queues()
    service_queues = {name: kind for name, kind in queues.items()
                      if name.startswith(("rpc-", "evt-"))}
    assert {"rpc-transactions", "rpc-ledger", "rpc-validator_1"} <= set(service_queues)
    assert set(service_queues.values()) == {"quorum"}
    # Reply queues are transient: they go with their node and are declared on a survivor.
    assert {kind for name, kind in queues.items() if name.startswith("rpc.reply-")} == {
        "classic"}
    formation = system.postgres_cluster()
    assert formation.healthy(), formation.describe()
    assert "127.0.0.1:{}".format(formation.node_ports[formation.primary()]) in \
        system.database_url
    assert system.get("/ready").status_code == 200


def test_a_replica_of_every_service_killed(target, tmp_path):
    run("kill-replica", target, tmp_path)


def test_the_rabbitmq_node_of_every_process_killed(system, target, tmp_path):
    cluster = system.rabbitmq_cluster()
    processes = system.process_ids()
    run("rabbitmq-node-kill", target, tmp_path)
    assert cluster.running_nodes() == sorted(member.name for member in cluster.members)
    assert system.process_ids() == processes, "a process exited instead of reconnecting"


def test_the_postgresql_primary_killed(system, target, tmp_path):
    formation = system.postgres_cluster()
    first_primary = formation.primary()
    result = run("postgres-primary-kill", target, tmp_path)
    # The standby took over, and transfers completed on it after the failover.
    assert result.observations["killed_node"] == first_primary
    assert formation.primary() not in (None, first_primary)
    assert any(op.outcome == "ok" and op.started_s > result.injected
               + result.observations["failover_s"] for op in result.operations)
    # The lost node is back, as the synchronous standby.
    assert formation.healthy(), formation.describe()
