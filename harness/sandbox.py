"""A whole running system of its own, for the tests and the chaos experiments: every
service its own process under supervisord.

Each sandbox has its own gateway port, metrics ports, database, RabbitMQ vhost, Redis
database, Kafka port and run dir, so it never meets a system a developer has running with
`make up`, nor another sandbox. A sandbox made with ``rabbitmq_nodes=3`` runs on a RabbitMQ
cluster of its own (paysys/rabbitmq_cluster.py: its node names, free ports, files in its
run dir) instead of a vhost of the machine's RabbitMQ.

A sandbox made with ``faults=True`` lets a test switch the test-only faults of
shared/faults.py on and off while it runs (``set_faults``); no other system can.
"""
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import requests

from harness import servers

ROOT = Path(__file__).resolve().parents[1]
PAYSYS = [sys.executable, "-m", "paysys.cli"]


class System:
    def __init__(self, label, run_dir, redis_db, env=None, faults=False, postgres_ha=False,
                 rabbitmq_nodes=1):
        self.label = label
        self.port = servers.free_port()
        self.kafka_port = servers.free_port()
        # A block of ports for the processes' metrics ports, held while the sandbox lives.
        self.metrics_port_base, self._ports_lock = servers.reserve_port_block()
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.database = "paysys_{}".format(label)
        self.admin_dsn = "postgresql://postgres@127.0.0.1:5432/postgres"
        self.database_url = "postgresql://postgres@127.0.0.1:5432/{}".format(self.database)
        self.vhost = "paysys_{}".format(label)
        self.amqp_uri = "pyamqp://guest:guest@127.0.0.1:5672/{}".format(self.vhost)
        self.redis_url = "redis://127.0.0.1:6379/{}".format(redis_db)
        self.run_dir = Path(run_dir)
        self.env = dict(
            os.environ,
            PAYSYS_GATEWAY_ADDRESS="127.0.0.1:{}".format(self.port),
            PAYSYS_GATEWAY_URL=self.url,
            PAYSYS_DATABASE_URL=self.database_url,
            PAYSYS_AMQP_URI=self.amqp_uri,
            PAYSYS_REDIS_URL=self.redis_url,
            PAYSYS_KAFKA_BOOTSTRAP_SERVERS="",
            PAYSYS_KAFKA_PORT=str(self.kafka_port),
            PAYSYS_RUN_DIR=str(self.run_dir),
            PAYSYS_METRICS_PORT_BASE=str(self.metrics_port_base),
            PAYSYS_METRICS_HOST="127.0.0.1",
            PAYSYS_READY_TIMEOUT_S="120",
            # The tests reach the gateway as if through a load balancer on loopback, so each
            # request may name its client (X-Forwarded-For) and has its own per-IP bucket.
            PAYSYS_TRUSTED_PROXIES="127.0.0.1",
            # A dead service costs a test a few seconds, not the production 10.
            PAYSYS_RPC_TIMEOUT_MS="4000",
            PAYSYS_BREAKER_FAILURES="2",
            # A vote round may outlast the wait for a decision, so the tests can see a 202.
            PAYSYS_DECISION_WAIT_MS="3000",
            PAYSYS_VOTE_DEADLINE_MS="3500",
        )
        self.rabbitmq_nodes = rabbitmq_nodes
        self._cluster_ports_lock = None
        if rabbitmq_nodes > 1:
            self._use_own_rabbitmq_cluster(label, rabbitmq_nodes)
        self.env.update(env or {})
        # With postgres_ha, a pg_auto_failover formation of its own (paysys/postgres_ha.py)
        # on free ports, its data in the run dir, holds the database instead.
        self.postgres_ha = postgres_ha
        self._ha_ports_lock = None
        if postgres_ha:
            ha_port_base, self._ha_ports_lock = servers.reserve_port_block(size=4)
            self.env.update(PAYSYS_POSTGRES_HA="1",
                            PAYSYS_POSTGRES_HA_PORT_BASE=str(ha_port_base))
            self.database_url = self.settings().database.url
        else:
            self.env["PAYSYS_POSTGRES_HA"] = "0"
        self.faults_file = None
        if faults:
            self.faults_file = self.run_dir / "faults.json"
            self.env["PAYSYS_TEST_FAULTS_FILE"] = str(self.faults_file)

    def _use_own_rabbitmq_cluster(self, label, nodes):
        from shared.rabbitmq import cluster_nodes, failover_uri

        # One block of ports: each node's AMQP port and, 16 above, its distribution port.
        port_base, self._cluster_ports_lock = servers.reserve_port_block()
        # Erlang node names: letters, digits, - and _ (the machine's epmd knows them all).
        name = "paysys-{}-rabbit".format(re.sub(r"[^A-Za-z0-9_-]", "-", label))
        self.vhost = None
        self.amqp_uri = failover_uri(cluster_nodes(nodes, port_base, name))
        self.env.update(PAYSYS_AMQP_URI=self.amqp_uri, PAYSYS_RABBITMQ_NODES=str(nodes),
                        PAYSYS_RABBITMQ_CLUSTER_PORT_BASE=str(port_base),
                        PAYSYS_RABBITMQ_CLUSTER_NAME=name)

    def rabbitmq_cluster(self):
        """The sandbox's RabbitMQ cluster (paysys/rabbitmq_cluster.py ``Cluster``)."""
        from paysys.rabbitmq_cluster import Cluster

        return Cluster(self.config())

    # --- life cycle ---

    def prepare(self):
        """A clean slate: no database, an empty vhost and Redis database."""
        if self.postgres_ha:
            self.postgres_cluster().remove()
        else:
            servers.drop_database(self.admin_dsn, self.database)
        if self.vhost:
            servers.create_vhost(self.vhost)
        servers.flush_redis(self.redis_url)

    def paysys(self, *args, check=True, timeout_s=300):
        completed = subprocess.run(PAYSYS + list(args), env=self.env, cwd=ROOT,
                                   capture_output=True, text=True, timeout=timeout_s)
        if check and completed.returncode != 0:
            raise AssertionError("paysys {} exited {}:\n{}\n{}\n{}".format(
                " ".join(args), completed.returncode, completed.stdout, completed.stderr,
                self.log_tail()))
        return completed

    def make(self, target, timeout_s=300):
        return subprocess.run(["make", "--no-print-directory", target], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout_s)

    def start(self):
        self.prepare()
        if self.faults_file is not None:
            self.set_faults({})
        return self.paysys("up")

    def __enter__(self):
        """``with System(...) as system:`` started for the block, stopped after it (and
        cleaned up if it fails to start)."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def set_faults(self, faults):
        """Switch on the test-only faults ``{process name: settings}`` (shared/faults.py),
        and every other off; ``set_faults({})`` clears them. Each process sees the change
        at its next hooked call."""
        if self.faults_file is None:
            raise RuntimeError("this sandbox was made without faults=True")
        self.faults_file.parent.mkdir(parents=True, exist_ok=True)
        written = self.faults_file.with_name(self.faults_file.name + ".new")
        written.write_text(json.dumps(faults))
        os.replace(written, self.faults_file)  # whole: a process never reads half of it

    def stop(self):
        self.paysys("down", check=False)  # the sandbox's RabbitMQ cluster too
        if self.vhost:
            servers.delete_vhost(self.vhost)
        if self.postgres_ha:
            # `make down` keeps the formation's data; a sandbox's is thrown away.
            self.postgres_cluster().remove()
            self._ha_ports_lock.close()
        else:
            servers.drop_database(self.admin_dsn, self.database)
        self._ports_lock.close()
        if self._cluster_ports_lock is not None:
            self._cluster_ports_lock.close()

    # --- metrics ---

    def metrics_ports(self):
        """``{process name: its metrics port}`` (shared/metrics/ports.py)."""
        from shared.metrics.ports import metrics_ports

        return metrics_ports(self.config())

    def config(self):
        """config.yml as this sandbox's processes read it."""
        from unittest import mock

        from shared.config import load_config

        with mock.patch.dict(os.environ, self.env, clear=True):
            return load_config()

    def settings(self):
        """The shared settings as this sandbox's processes read them."""
        from shared.settings import load
        from shared.shared_settings import SharedSettings

        return load(SharedSettings, self.config())

    def postgres_cluster(self):
        """The sandbox's pg_auto_failover formation (``postgres_ha=True`` only)."""
        from paysys.postgres_ha import Cluster

        return Cluster(self.config())

    def metrics(self, process_name, path="/metrics"):
        """GET ``path`` on ``process_name``'s metrics port."""
        port = self.metrics_ports()[process_name]
        return requests.get("http://127.0.0.1:{}{}".format(port, path), timeout=10)

    # --- looking at it ---

    def request(self, method, path, **kwargs):
        """An HTTP request to the gateway, from a random client address unless the
        caller sets ``X-Forwarded-For`` (tests of the per-IP limit do)."""
        kwargs.setdefault("timeout", 30)
        headers = kwargs.setdefault("headers", {})
        headers.setdefault("X-Forwarded-For", random_client_ip())
        return requests.request(method, self.url + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def supervisorctl(self, action, program):
        """Start or stop one service process: ``supervisorctl("stop", "ledger")``."""
        from paysys import supervisor
        from shared.config import load_config

        config = load_config()
        config["supervisor"]["run_dir"] = str(self.run_dir)
        group = "" if program == "kafka" else "paysys:"
        done = supervisor.supervisorctl(supervisor.RunDir(config), action, group + program,
                                        capture=True)
        assert done.returncode == 0, done.stdout + done.stderr

    @property
    def keys_dir(self):
        return self.run_dir / "keys"

    def process_ids(self):
        """``{program: pid}`` of every running program, from supervisorctl."""
        status = self.paysys("ps", check=False).stdout
        return {name: int(pid) for name, pid in
                re.findall(r"^(?:\w+:)?(\S+)\s+RUNNING\s+pid (\d+)", status, re.MULTILINE)}

    def log_lines(self, program):
        path = self.run_dir / "logs" / (program + ".log")
        return path.read_text().splitlines() if path.exists() else []

    def log_tail(self, lines=15):
        logs = self.run_dir / "logs"
        if not logs.exists():
            return ""
        return "\n".join("--- {} ---\n{}".format(path.name, "\n".join(
            path.read_text().splitlines()[-lines:])) for path in sorted(logs.glob("*.log")))


def random_client_ip():
    return "10.{}.{}.{}".format(
        random.randint(0, 255), random.randint(0, 255), random.randint(1, 254))
