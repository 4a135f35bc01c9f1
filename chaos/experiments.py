"""The catalogue of experiments: each one fault, how it is healed, how long it is held.

A killed service (SIGKILL: no cleanup) is started again by supervisord, so its heal is
waiting for the new process; the shared servers (RabbitMQ, PostgreSQL, Redis) are
stopped and started with the commands of harness/servers.py; the network to a dependency
is slowed or cut by the sandbox's TCP proxy in front of it (harness/proxy.py). With
`--postgres-ha` the sandbox's PostgreSQL is a pg_auto_failover formation of its own, whose
primary postgres-primary-kill kills (harness/postgres_faults.py); the experiments on the
machine's PostgreSQL are left out then. A node of the sandbox's own RabbitMQ cluster
(`--rabbitmq-nodes 3`) is killed and started again with paysys/rabbitmq_cluster.py.
"""
from chaos.cluster_experiments import cluster_experiments
from chaos.experiment import Experiment
from harness import process_faults, servers

SERVICES = ("gateway", "transactions", "ledger", "payments", "notifications", "auth")


def _kill(program):
    def inject(target):
        pid = target.pid(program)
        process_faults.kill(pid)
        target.killed = (program, pid)
    return inject


def _restarted(target):
    program, pid = target.killed
    target.wait_for_program(program, old_pid=pid)


def _pause(program):
    def inject(target):
        target.paused = target.pid(program)
        process_faults.pause(target.paused)
    return inject


def _resume(target):
    process_faults.resume(target.paused)


def _kill_rabbitmq_node(index):
    return lambda target: target.sandbox.rabbitmq_cluster().kill(index)


def _start_rabbitmq_node(index):
    return lambda target: target.sandbox.rabbitmq_cluster().start_node(index)


def _supervisorctl(action, program):
    return lambda target: target.sandbox.supervisorctl(action, program)


def _kill_postgres_primary(target):
    from harness import postgres_faults

    name, failover_s = postgres_faults.kill_primary(target.sandbox.postgres_cluster())
    target.killed = (name, None)
    target.observations.update(killed_node=name, failover_s=round(failover_s, 1))


def _rejoin_postgres_node(target):
    from harness import postgres_faults

    name, _ = target.killed
    target.observations["rejoined_as_standby_s"] = round(
        postgres_faults.rejoin(target.sandbox.postgres_cluster(), name), 1)


def _proxy(name, fault, *args):
    return lambda target: getattr(target.proxies[name], fault)(*args)


def catalogue():
    experiments = [
        Experiment("validator-kill", "kill -9 validator_1 (supervisord restarts it)",
                   _kill("validator_1"), _restarted, hold_s=0),
        Experiment("validator-pause", "SIGSTOP validator_1 for 8 s, then SIGCONT",
                   _pause("validator_1"), _resume, hold_s=8),
    ]
    experiments.extend(
        Experiment("kill-" + service, "kill -9 {} (supervisord restarts it)".format(service),
                   _kill(service), _restarted, hold_s=0)
        for service in SERVICES)
    experiments.extend([
        Experiment("rabbitmq-restart", "stop RabbitMQ for 5 s, start it again",
                   lambda target: servers.stop_rabbitmq(),
                   lambda target: servers.start_rabbitmq(), hold_s=5, rabbitmq_cluster=False),
        # Node 1 is first in every process's failover list: every connection, and the
        # leader of every quorum queue, is on it.
        Experiment("rabbitmq-node-kill", "kill -9 RabbitMQ node 1 of the cluster (every "
                   "process's node), start it again after 5 s (it rejoins)",
                   _kill_rabbitmq_node(1), _start_rabbitmq_node(1), hold_s=5,
                   rabbitmq_cluster=True),
        Experiment("postgres-restart", "stop PostgreSQL for 5 s, start it again",
                   lambda target: servers.stop_postgres(),
                   lambda target: servers.start_postgres(), hold_s=5, postgres_ha=False),
        # The fault lasts until pg_auto_failover has promoted the standby (inject waits for
        # it); the heal starts the lost node again, and waits until it is the standby.
        Experiment("postgres-primary-kill", "kill -9 the PostgreSQL primary (keeper and "
                   "server; pg_auto_failover promotes the standby), then start it again: "
                   "it rejoins as the standby", _kill_postgres_primary, _rejoin_postgres_node,
                   hold_s=0, postgres_ha=True),
        Experiment("redis-restart", "stop Redis for 5 s (its data is lost), start it again",
                   lambda target: servers.stop_redis(),
                   lambda target: servers.start_redis(), hold_s=5),
        Experiment("kafka-stop", "stop the Kafka-protocol broker for 8 s (it comes back "
                   "empty)", _supervisorctl("stop", "kafka"), _supervisorctl("start", "kafka"),
                   hold_s=8),
        Experiment("postgres-slow", "add 50 ms to every packet to and from PostgreSQL for "
                   "10 s", _proxy("postgresql", "slow", 0.05), _proxy("postgresql", "heal"),
                   hold_s=10, postgres_ha=False),
        Experiment("postgres-cut", "cut the network to PostgreSQL for 5 s",
                   _proxy("postgresql", "cut"), _proxy("postgresql", "heal"), hold_s=5,
                   postgres_ha=False),
        Experiment("redis-cut", "cut the network to Redis for 8 s",
                   _proxy("redis", "cut"), _proxy("redis", "heal"), hold_s=8),
    ])
    experiments.extend(cluster_experiments())
    return {experiment.name: experiment for experiment in experiments}


# Run on every CI run (tests/system/test_chaos.py), a few seconds of load each; the
# cluster's no-quorum experiment runs there on one process per service.
CI_SUBSET = ("validator-kill", "rabbitmq-restart", "postgres-restart", "validators-no-quorum")
# The cluster's experiments (python -m chaos --cluster, make chaos-cluster): a replica of
# each service, a RabbitMQ node, the PostgreSQL primary, one validator's network to
# RabbitMQ, two validators of three.
CLUSTER = ("kill-replica", "rabbitmq-node-kill", "postgres-primary-kill",
           "validator-rabbitmq-cut", "validators-no-quorum")
