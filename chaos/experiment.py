"""One chaos experiment: a load, one fault, its healing, then the books are checked.

    healthy load ──> inject ──(hold)──> heal ──> ready again ──> load after ──> checker

The load is the bank workload (harness/bank.py): transfers, and now and then a
payment the merchant captures part of; every client operation is recorded, Jepsen style,
as invoked and then ok, fail or unknown. After the run the checker reads the books
through the API (conservation, no negative balance, acknowledged transfers posted exactly
once, failed ones moved nothing, unanswered ones made one transaction or none, nothing
left pending, acknowledged captures captured once, the money held equal to the open
authorizations) and the reconciliation report (the ledger balanced, the Kafka mirror
equal to it). The result carries the throughput before, during and after the
fault and the time the system took to recover.
"""
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import requests

from harness.bank import Bank, percentile
from harness.bank_checker import check
from harness.bank_rules import check_reconciliation
from harness.servers import wait_for

# A tenth of the opening balance: the accounts stay funded for minutes of load, so the
# throughput after a fault compares with the one before it.
MAX_TRANSFER = 6_000
# One round in ten is a payment lifecycle (authorize, partial capture) instead of a transfer.
PAYMENT_FRACTION = 0.1


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    inject: Callable
    heal: Callable = lambda target: None
    # How long the fault stays in place before it is healed.
    hold_s: float = 5.0
    # True: needs a sandbox whose PostgreSQL is a pg_auto_failover formation (python -m
    # chaos --postgres-ha); False: acts on the machine's one PostgreSQL; None: either.
    postgres_ha: bool = None
    # Problems of this experiment's own, from ``(target, operations, injected, healed)``.
    check: Callable = None
    # Which RabbitMQ it needs: None any, True a cluster of the sandbox's own
    # (`--rabbitmq-nodes 3`), False the machine's single node.
    rabbitmq_cluster: bool = None

    def runs_on(self, rabbitmq_nodes):
        return self.rabbitmq_cluster is None or self.rabbitmq_cluster == (rabbitmq_nodes > 1)


@dataclass
class Timings:
    """Seconds of the load phases around the fault."""

    before_s: float = 6.0
    after_s: float = 8.0
    ready_timeout_s: float = 180.0
    settle_timeout_s: float = 120.0
    mirror_timeout_s: float = 120.0


@dataclass
class Result:
    experiment: str
    description: str
    problems: list
    started: float
    injected: float
    healed: float
    ready: float
    recovered: float
    stopped: float
    operations: list = field(repr=False, default_factory=list)
    mirror: dict = None
    # What the fault's own steps measured (a failover's seconds, say).
    observations: dict = field(default_factory=dict)

    @property
    def passed(self):
        return not self.problems

    def rate(self, start, end):
        """Completed transfers per second among operations finished in [start, end)."""
        if end <= start:
            return 0.0
        done = sum(1 for op in self.operations if op.outcome == "ok"
                   and start <= op.started_s + op.latency_s < end)
        return done / (end - start)

    def summary(self):
        before = self.rate(self.started, self.injected)
        during = self.rate(self.injected, self.recovered)
        after = self.rate(self.recovered, self.stopped)
        latencies = sorted(op.latency_s * 1000 for op in self.operations if op.outcome == "ok")
        outcomes = {}
        for op in self.operations:
            outcomes[op.outcome] = outcomes.get(op.outcome, 0) + 1
        return {
            "experiment": self.experiment,
            "description": self.description,
            "verdict": "pass" if self.passed else "FAIL",
            "problems": self.problems,
            "operations": outcomes,
            "completed_per_s": {"before": round(before, 2), "during": round(during, 2),
                                "after": round(after, 2)},
            "during_vs_healthy": round(during / before, 2) if before else None,
            "after_vs_healthy": round(after / before, 2) if before else None,
            "fault_held_s": round(self.healed - self.injected, 2),
            "ready_after_heal_s": round(self.ready - self.healed, 2),
            "recovered_after_heal_s": round(self.recovered - self.healed, 2),
            "latency_ms": {"p50": round(percentile(latencies, 50), 1),
                           "p99": round(percentile(latencies, 99), 1)},
            "mirror": self.mirror,
            "observations": self.observations,
        }


class Target:
    """What the faults act on: a running sandbox (harness/sandbox.py) and, when the sandbox
    reaches a dependency through one, its TCP proxies (harness/proxy.py) by name."""

    def __init__(self, sandbox, proxies=None):
        self.sandbox = sandbox
        self.proxies = proxies or {}
        self.killed = None  # (program, pid) of the last kill, for its heal
        self.killed_many = {}  # {program: pid} of the last kill of several
        self.quorum_lost_at = None  # when the last of the stopped validators stopped
        self.paused = None  # pid of the paused process
        self.observations = {}  # what inject and heal measured, for the result
        self._auditor_token = None

    @property
    def url(self):
        return self.sandbox.url

    def pid(self, program):
        return self.sandbox.process_ids()[program]

    def wait_for_program(self, program, old_pid=None, timeout_s=60):
        """Until supervisord runs ``program`` again (with another pid than ``old_pid``)."""
        return wait_for(lambda: self.sandbox.process_ids().get(program) not in (None, old_pid),
                        timeout_s, interval_s=0.5, what="{} running again".format(program))

    def ready(self):
        """Everything answers again: /ready 200 and "ready" (a "degraded" 200 still
        serves, but something injected has not healed)."""
        try:
            response = requests.get(self.url + "/ready", timeout=5)
            return response.status_code == 200 and response.json()["status"] == "ready"
        except (requests.RequestException, ValueError, KeyError):
            return False

    def quorum_back(self):
        """/ready answers 200 (ready or degraded): a quorum of validators answers again."""
        try:
            return requests.get(self.url + "/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def auditor_token(self):
        """An auditor of the sandbox (made once with ``paysys create-user``)."""
        if self._auditor_token is None:
            email = "chaos-auditor-{}@example.test".format(uuid.uuid4().hex[:10])
            password = uuid.uuid4().hex
            self.sandbox.paysys("create-user", "--email", email, "--password", password,
                                "--role", "auditor")
            login = requests.post(self.url + "/v1/auth/login", timeout=30,
                                  json={"email": email, "password": password})
            login.raise_for_status()
            self._auditor_token = login.json()["access_token"]
        return self._auditor_token


def run(experiment, target, clients=4, timings=None, progress=print):
    """Run ``experiment`` against ``target``; its ``Result``."""
    timings = timings or Timings()
    target.observations = {}
    wait_for(target.ready, timings.ready_timeout_s, interval_s=1, what="the system ready")
    bank = Bank(target.url, users=clients, accounts_per_user=2,
                max_transfer=MAX_TRANSFER).open()
    stop = threading.Event()
    load = threading.Thread(target=bank.run, name="chaos-load", kwargs={
        "stop": stop, "replay_fraction": 0.1, "payment_fraction": PAYMENT_FRACTION})
    started = time.monotonic()
    load.start()
    try:
        progress("  load for {:g} s before the fault".format(timings.before_s))
        time.sleep(timings.before_s)
        injected = time.monotonic()
        progress("  inject: {}".format(experiment.description))
        try:
            experiment.inject(target)
            time.sleep(max(0.0, experiment.hold_s - (time.monotonic() - injected)))
        finally:
            healed = time.monotonic()
            progress("  heal after {:.1f} s".format(healed - injected))
            experiment.heal(target)
        wait_for(target.ready, timings.ready_timeout_s, interval_s=0.5,
                 what="the system ready after the fault")
        ready = time.monotonic()
        try:
            recovered = wait_for(lambda: _first_completion_after(bank.operations, healed),
                                 timings.ready_timeout_s, interval_s=0.2,
                                 what="a transfer completed after the fault")
        except AssertionError:
            recovered = time.monotonic()
        progress("  ready {:.1f} s, serving {:.1f} s after healing; load for {:g} s more".format(
            ready - healed, recovered - healed, timings.after_s))
        time.sleep(timings.after_s)
    finally:
        stop.set()
        load.join()
    stopped = time.monotonic()
    progress("  checking the books")
    problems = check(bank, settle_timeout_s=timings.settle_timeout_s)
    mirror, mirror_problems = _check_mirror(target, timings.mirror_timeout_s)
    if experiment.check is not None:
        problems = problems + experiment.check(target, list(bank.operations), injected,
                                               healed)
    return Result(experiment.name, experiment.description, problems + mirror_problems,
                  started, injected, healed, ready, max(recovered, ready), stopped,
                  list(bank.operations), mirror, dict(target.observations))


def _first_completion_after(operations, moment):
    """When the first transfer completed after ``moment``: the system serves again."""
    done = [op.started_s + op.latency_s for op in list(operations)
            if op.outcome == "ok" and op.started_s + op.latency_s >= moment]
    return min(done) if done else None


def _check_mirror(target, timeout_s):
    """The reconciliation report once balanced (the relay catches up by itself); problems
    if it never is."""
    headers = {"Authorization": "Bearer " + target.auditor_token()}
    last = {}

    def balanced():
        response = requests.get(target.url + "/v1/ledger/reconciliation", headers=headers,
                                timeout=90)
        if response.status_code != 200:
            last["report"] = {"status": response.status_code, "body": response.text[:300]}
            return False
        last["report"] = response.json()
        return last["report"]["balanced"]

    try:
        wait_for(balanced, timeout_s, interval_s=2, what="a balanced reconciliation")
    except AssertionError:
        report = last.get("report")
        if report is None or "balanced" not in report:
            return report, ["reconciliation did not answer: {}".format(str(report)[:1000])]
        return report, check_reconciliation(report)
    mirror = last["report"]["mirror"]
    return {name: mirror[name] for name in ("ledger_postings", "kafka_postings", "duplicates")}, []
