"""The experiments of a system run as a cluster (replicas, docs/operations.md): a replica
of every service killed, one validator cut from RabbitMQ, two validators of three down.

They act on every process of an identity (its replicas: ``transactions``,
``transactions-2``…), named from the sandbox's own configuration (shared/catalog.py).
"""
import time
from concurrent.futures import ThreadPoolExecutor

from chaos.experiment import Experiment
from harness import process_faults
from harness.servers import wait_for
from shared.catalog import SERVICES, identities, identity_of, process_names, service_for

# The validator cut from RabbitMQ: its processes reach the broker through a proxy of
# their own (chaos/__main__.py gives them PAYSYS_FOR_VALIDATOR_1__AMQP_URI).
CUT_VALIDATOR = "validator_1"
CUT_VALIDATOR_PROXY = "rabbitmq-" + CUT_VALIDATOR
# The validators stopped together (of three: no quorum), and the one that comes back.
STOPPED_VALIDATORS = ("validator_2", "validator_3")
# A vote round in flight as the last validator stops may still decide with its votes:
# the sandbox's vote deadline (3.5 s) and the decision's commit, with a margin.
IN_FLIGHT_ROUNDS_S = 6


def _config(target):
    return target.sandbox.config()


def replica_of_each_service(config):
    """The process killed of each service: the first process of its first identity (the
    one whose name is the service's, or validator_1), when the service has another
    process to take over; a service of one process is left alone."""
    chosen = []
    names = process_names(config)
    for service in SERVICES:
        first = next(name for name in identities(config)
                     if service_for(name).name == service.name)
        if sum(identity_of(name) == first for name in names) > 1:
            chosen.append(first)
    return chosen


def processes_of(config, identity):
    return [name for name in process_names(config) if identity_of(name) == identity]


def _kill_replicas(target):
    """kill -9 one process of every service at once (supervisord restarts each)."""
    programs = replica_of_each_service(_config(target))
    if not programs:
        raise AssertionError("kill-replica needs replicas >= 2 (python -m chaos --replicas 2)")
    running = target.sandbox.process_ids()  # once: each look costs a `paysys ps`
    pids = {program: running[program] for program in programs}
    for pid in pids.values():
        process_faults.kill(pid)
    target.killed_many = pids


def _replicas_restarted(target):
    killed = target.killed_many

    def all_back():
        running = target.sandbox.process_ids()
        return all(running.get(program) not in (None, pid) for program, pid in killed.items())

    wait_for(all_back, 120, interval_s=0.5, what="{} running again".format(", ".join(killed)))


def _stop_validators(target):
    """Stop every process of two validators; the quorum is away once the last has
    stopped (supervisord stops each gracefully: its votes in progress end first)."""
    config = _config(target)
    programs = [program for validator in STOPPED_VALIDATORS
                for program in processes_of(config, validator)]
    # All at once: one after another, the first would be gone seconds before the last.
    with ThreadPoolExecutor(len(programs)) as pool:
        list(pool.map(lambda program: target.sandbox.supervisorctl("stop", program),
                      programs))
    target.quorum_lost_at = time.monotonic()


def _one_validator_back(target):
    """validator_2 comes back; once the gateway counts a quorum again (/ready 200), the
    last one too, so the next experiment starts whole."""
    config = _config(target)
    for program in processes_of(config, STOPPED_VALIDATORS[0]):
        target.sandbox.supervisorctl("start", program)
    wait_for(target.quorum_back, 120, interval_s=0.5, what="a quorum of validators again")
    for program in processes_of(config, STOPPED_VALIDATORS[1]):
        target.sandbox.supervisorctl("start", program)


def nothing_completed_without_quorum(target, operations, injected, healed):
    """Problems if a transfer completed while two validators of three were down (after
    the vote rounds in flight as they stopped had ended): money moved without a quorum."""
    lost = target.quorum_lost_at
    moved = [op for op in operations if op.outcome == "ok"
             and lost + IN_FLIGHT_ROUNDS_S < op.started_s + op.latency_s < healed]
    return ["{} transfers completed without a quorum of validators (first: {})".format(
        len(moved), moved[0].transaction)] if moved else []


def cluster_experiments():
    return [
        Experiment("kill-replica", "kill -9 one process of every service at once (the "
                   "others go on; supervisord restarts them)", _kill_replicas,
                   _replicas_restarted, hold_s=0),
        Experiment("validator-rabbitmq-cut", "cut {}'s network to RabbitMQ for 10 s (the "
                   "other two are a quorum)".format(CUT_VALIDATOR),
                   lambda target: target.proxies[CUT_VALIDATOR_PROXY].cut(),
                   lambda target: target.proxies[CUT_VALIDATOR_PROXY].heal(), hold_s=10),
        Experiment("validators-no-quorum", "stop two validators of three for 15 s (no "
                   "quorum: 202 or 503, nothing moves), then start one",
                   _stop_validators, _one_validator_back, hold_s=15,
                   check=nothing_completed_without_quorum),
    ]
