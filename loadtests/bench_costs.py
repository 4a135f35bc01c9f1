"""What a benchmark run cost the system, read before and after it: CPU seconds per process
(every service process over RPC, RabbitMQ and PostgreSQL from /proc) and the time each
spent runnable but waiting for a CPU (the kernel's run queue), RPCs made, database
commits, and the transfers it completed (counted in the database, not by the load
generator) — so that each figure can be given per completed transfer — and where a
transfer's time went: the steps the gateway and the transactions service time
(shared/work_counters.py), as means per request and per batch.

    before = Snapshot.take(probe)
    ... the load ...
    costs = Snapshot.take(probe).since(before)
"""
import os
import time
from dataclasses import dataclass, field

import psycopg2

from shared import work_counters

# The database's clock decides what was completed during a run.
COMPLETED = """
    SELECT count(*), min(completed_at), max(completed_at), now()
      FROM transactions.transactions
     WHERE type = 'transfer' AND status = 'completed' AND completed_at > %s
"""
COMMITS = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
# What the asynchronous side still has to do: events to relay, postings to mirror to
# Kafka, notifications to deliver.
BACKLOG = {
    "transactions_outbox": "SELECT count(*) FROM transactions.outbox "
                           "WHERE dispatched_at IS NULL",
    "payments_outbox": "SELECT count(*) FROM payments.outbox WHERE dispatched_at IS NULL",
    "kafka_outbox": "SELECT count(*) FROM ledger.outbox WHERE published_at IS NULL",
    "notifications": "SELECT count(*) FROM notifications.deliveries WHERE status = 'pending'",
}
CLOCK_TICKS_S = os.sysconf("SC_CLK_TCK")
STEP_COUNTERS = (work_counters.MONEY_REQUESTS, work_counters.MONEY_REQUEST_MS,
                 work_counters.DESK_REQUESTS, work_counters.DESK_BATCHES,
                 work_counters.DESK_QUEUED_MS, work_counters.DESK_SUBMIT_MS,
                 work_counters.CONSENSUS_BATCHES) + tuple(
                     work_counters.step_ms(step) for step in work_counters.CONSENSUS_STEPS) + tuple(
                     counter for stage in work_counters.GUARD_STAGES
                     for counter in work_counters.stage_counters(stage))


class Probe:
    """The system under test as the benchmark reads it: its database, and RPC to every
    service process (``paysys`` configuration)."""

    def __init__(self, database_url, config):
        self.database_url = database_url
        self.config = config

    def query(self, statement, parameters=()):
        connection = psycopg2.connect(self.database_url, connect_timeout=5)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(statement, parameters)
                return cursor.fetchone()
        finally:
            connection.close()

    def supervisord_pid(self):
        """The supervisord of the system `paysys up` started with this configuration."""
        from paysys.supervisor import RunDir

        return RunDir(self.config).supervisord_pid()

    def service_counters(self):
        """``{process name: work counters}`` of every service process that answers."""
        from nameko.standalone.rpc import ClusterRpcProxy

        from shared.catalog import process_names

        counters = {}
        with ClusterRpcProxy({"AMQP_URI": self.config["AMQP_URI"]}, timeout=10) as cluster:
            for name in process_names(self.config):
                try:
                    counters[name] = getattr(cluster, name).work_counters()
                except Exception:  # noqa: BLE001 - a stopped process has no counters
                    continue
        return counters

    def backlog(self):
        return {name: int(self.query(statement)[0]) for name, statement in BACKLOG.items()}

    def wait_for_empty_backlog(self, limit_s, poll_s=0.5):
        """Seconds until nothing is left to relay, mirror or deliver; None past ``limit_s``."""
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            if not any(self.backlog().values()):
                return round(time.monotonic() - started, 1)
            time.sleep(poll_s)
        return None


def _processes():
    """``(pid, command line words, parent pid, CPU seconds)`` of every process, from /proc."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            words = open("/proc/{}/cmdline".format(pid), "rb").read().split(b"\0")
            fields = open("/proc/{}/stat".format(pid)).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield int(pid), words, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_S


def run_queue_s(pid):
    """Seconds the threads of process ``pid`` were runnable but waiting for a CPU (the
    second field of each thread's /proc schedstat): on a busy machine, how much longer
    everything it does takes than its CPU time says. None where the kernel keeps no such
    count."""
    try:
        tasks = os.listdir("/proc/{}/task".format(pid))
    except OSError:
        return None
    waited_ns = 0
    for task in tasks:
        try:
            with open("/proc/{}/task/{}/schedstat".format(pid, task)) as schedstat:
                waited_ns += int(schedstat.read().split()[1])
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        except (OSError, IndexError, ValueError):
            return None
    return waited_ns / 1e9


def _service_cpu_s(supervisord_pid):
    """``{process name: (pid, CPU seconds, run-queue seconds or None)}`` of every service
    process the supervisord ``supervisord_pid`` runs (``paysys.runner NAME``, replicas
    included); {} without one (a system this machine does not run)."""
    found = {}
    if supervisord_pid is None:
        return found
    for pid, words, parent, cpu_s in _processes():
        if parent == supervisord_pid and b"paysys.runner" in words[:-1]:
            name = words[words.index(b"paysys.runner") + 1].decode(errors="replace")
            found[name] = (pid, cpu_s, run_queue_s(pid))
    return found


def _server_cpu_s():
    """``{server: (CPU seconds, run-queue seconds or None)}`` of RabbitMQ and PostgreSQL
    (every process of each)."""
    cpu, waited = {"rabbitmq": 0.0, "postgresql": 0.0}, {"rabbitmq": 0.0, "postgresql": 0.0}
    for pid, words, _, cpu_s in _processes():
        command = b" ".join(words).decode(errors="replace")
        name = ("rabbitmq" if "beam.smp" in command and "rabbit" in command else
                "postgresql" if command.startswith("postgres") or "/postgres " in command
                else None)
        if name:
            cpu[name] += cpu_s
            process_waited = run_queue_s(pid)
            waited[name] = None if None in (waited[name], process_waited) else (
                waited[name] + process_waited)
    return {name: (cpu[name], waited[name]) for name in cpu}


def _grown_ms(now_s, was_s):
    """Milliseconds a counter grew (None if either reading is missing; a counter of
    processes that ended meanwhile can only seem to shrink: 0)."""
    if now_s is None or was_s is None:
        return None
    return max(0.0, (now_s - was_s) * 1000)


@dataclass
class Snapshot:
    taken_s: float
    database_now: object
    completed_before: int = 0
    commits: int = 0
    processes: dict = field(default_factory=dict)  # name -> {cpu_s, rpc_calls, db_commits}
    # name -> (CPU seconds, run-queue seconds or None) of RabbitMQ and PostgreSQL.
    servers_cpu_s: dict = field(default_factory=dict)
    # name -> (pid, CPU seconds, run-queue seconds or None) from /proc: every process,
    # replicas included.
    services_cpu_s: dict = field(default_factory=dict)

    @classmethod
    def take(cls, probe):
        counters = probe.service_counters()
        _, _, _, now = probe.query(COMPLETED, ("infinity",))
        return cls(time.monotonic(), now, commits=int(probe.query(COMMITS)[0]),
                   processes=counters, servers_cpu_s=_server_cpu_s(),
                   services_cpu_s=_service_cpu_s(probe.supervisord_pid()))

    def since(self, before, probe):
        """The costs between ``before`` and this snapshot."""
        completed, first, last, _ = probe.query(COMPLETED, (before.database_now,))
        window_s = (last - first).total_seconds() if completed and last > first else None
        cpu_ms, waited_ms = {}, {}
        for name, (pid, now_s, now_waited_s) in self.services_cpu_s.items():
            was = before.services_cpu_s.get(name)
            if was and was[0] == pid:
                cpu_ms[name] = (now_s - was[1]) * 1000
                waited_ms[name] = _grown_ms(now_waited_s, was[2])
        for name, (now_s, now_waited_s) in self.servers_cpu_s.items():
            was_s, was_waited_s = before.servers_cpu_s.get(name, (0.0, None))
            cpu_ms[name] = (now_s - was_s) * 1000
            waited_ms[name] = _grown_ms(now_waited_s, was_waited_s)
        counted = {counter: self._counted(before, counter)
                   for counter in ("rpc_calls",) + STEP_COUNTERS}
        if any(name not in self.processes for name in self.services_cpu_s):
            # Replicas: an RPC to a service reaches any of its processes, so the work
            # counters of each cannot be asked for; RPCs and steps go unmeasured.
            counted = {counter: None for counter in counted}
        return Costs(completed=int(completed), window_s=window_s,
                     elapsed_s=self.taken_s - before.taken_s, cpu_ms=cpu_ms,
                     run_queue_ms=waited_ms, rpc_calls=counted.pop("rpc_calls"),
                     commits=self.commits - before.commits, steps=counted)

    def _counted(self, before, counter):
        """How much ``counter`` grew since ``before``, over the processes that ran all along."""
        return sum(now.get(counter, 0) - before.processes[name].get(counter, 0)
                   for name, now in self.processes.items()
                   if name in before.processes and before.processes[name]["pid"] == now["pid"])


@dataclass
class Costs:
    completed: int
    window_s: float  # from the first to the last transfer completed in the run
    elapsed_s: float
    cpu_ms: dict
    rpc_calls: int
    commits: int
    steps: dict = field(default_factory=dict)  # STEP_COUNTERS' growth (None: unmeasured)
    # Per process, the ms it waited for a CPU (None where the kernel does not say).
    run_queue_ms: dict = field(default_factory=dict)

    def step_means(self):
        """Where a transfer's time went, in mean milliseconds: ``request`` (a money
        request in the gateway, from its first byte to its answer), ``queued`` (waiting
        there for its batch to leave) and ``submit`` (that batch's call to the transactions
        service), per request and per batch of the money desk; each consensus step per
        batch; ``batch_size``: requests per desk batch; each of the gateway's guard stages
        per money request, and ``<stage>_per_trip``: the items that shared its round
        trips. None where nothing ran."""
        steps = self.steps

        def mean(total, count):
            value, number = steps.get(total), steps.get(count)
            return round(value / number, 1) if value is not None and number else None

        means = {"request": mean(work_counters.MONEY_REQUEST_MS, work_counters.MONEY_REQUESTS),
                 "queued": mean(work_counters.DESK_QUEUED_MS, work_counters.DESK_REQUESTS),
                 "submit": mean(work_counters.DESK_SUBMIT_MS, work_counters.DESK_BATCHES),
                 "batch_size": mean(work_counters.DESK_REQUESTS, work_counters.DESK_BATCHES)}
        for step in work_counters.CONSENSUS_STEPS:
            means[step] = mean(work_counters.step_ms(step), work_counters.CONSENSUS_BATCHES)
        # The guard's stages: their time per money request (a stage any other request
        # passed too counts against the money requests: the transfers-only runs send
        # hardly any other), and the items that shared each round trip.
        for stage in work_counters.GUARD_STAGES:
            items, trips, ms = work_counters.stage_counters(stage)
            means[stage] = mean(ms, work_counters.MONEY_REQUESTS)
            means[stage + "_per_trip"] = mean(items, trips)
        return means

    def figures(self):
        per = (lambda value: round(value / self.completed, 2)) if self.completed else (
            lambda value: None)
        waited = {name: ms for name, ms in self.run_queue_ms.items() if ms is not None}
        return {
            "completed_transfers": self.completed,
            "completed_transfers_per_s": (round(self.completed / self.window_s, 1)
                                          if self.window_s else None),
            "cpu_ms_per_transfer": {name: per(ms) for name, ms in sorted(
                self.cpu_ms.items(), key=lambda item: -item[1])},
            "cpu_ms_per_transfer_total": per(sum(self.cpu_ms.values())),
            "run_queue_ms_per_transfer": {name: per(ms) for name, ms in sorted(
                waited.items(), key=lambda item: -item[1])},
            "run_queue_ms_per_transfer_total": per(sum(waited.values())) if waited else None,
            "rpcs_per_transfer": per(self.rpc_calls) if self.rpc_calls is not None else None,
            "commits_per_transfer": per(self.commits),
            "step_ms": self.step_means(),
        }
