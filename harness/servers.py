"""The real servers the system talks to, and how the tests and the chaos experiments
stop and start them.

RabbitMQ, PostgreSQL and Redis run on loopback before the tests start (docs/testing.md,
"What the tests need"). The commands that stop and start each one can be changed
through the environment for machines that run them differently.
"""
import os
import random
import shlex
import socket
import subprocess
import time

import requests

RABBITMQ_MANAGEMENT = os.environ.get("PAYSYS_TEST_RABBITMQ_API", "http://127.0.0.1:15672/api")
RABBITMQ_USER = ("guest", "guest")
RABBITMQ_STOP = os.environ.get("PAYSYS_TEST_RABBITMQ_STOP", "rabbitmqctl stop")
RABBITMQ_START = os.environ.get("PAYSYS_TEST_RABBITMQ_START", "rabbitmq-server -detached")
RABBITMQ_AWAIT = os.environ.get("PAYSYS_TEST_RABBITMQ_AWAIT", "rabbitmqctl await_startup")
RABBITMQ_ENABLE_MANAGEMENT = os.environ.get(
    "PAYSYS_TEST_RABBITMQ_ENABLE_MANAGEMENT", "rabbitmq-plugins enable rabbitmq_management")


def _postgres_cluster():
    # Debian's layout: /etc/postgresql/<version>/main.
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return "pg_ctlcluster --skip-systemctl-redirect {} main".format(
        versions[-1] if versions else "15")


POSTGRES_STOP = os.environ.get("PAYSYS_TEST_POSTGRES_STOP", _postgres_cluster() + " stop")
POSTGRES_START = os.environ.get("PAYSYS_TEST_POSTGRES_START", _postgres_cluster() + " start")
REDIS_STOP = os.environ.get("PAYSYS_TEST_REDIS_STOP", "redis-cli -p 6379 shutdown nosave")
REDIS_START = os.environ.get(
    "PAYSYS_TEST_REDIS_START",
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log")


def run(command, timeout_s=120):
    """Run a shell-free command line; fail the test with its output if it fails."""
    completed = subprocess.run(shlex.split(command), capture_output=True, text=True,
                               timeout=timeout_s)
    if completed.returncode != 0:
        raise AssertionError("`{}` exited {}:\n{}{}".format(
            command, completed.returncode, completed.stdout, completed.stderr))
    return completed.stdout


def port_open(host, port, timeout_s=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout_s, interval_s=0.25, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval_s)
    raise AssertionError("{} not reached within {} s".format(what, timeout_s))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Blocks of ports for the metrics ports of a sandbox's processes (shared/metrics/ports.py):
# base + each process's place. Below the kernel's ephemeral range (32768 on Linux), where
# free_port() and every outgoing connection take theirs, and clear of the 9400 of `make up`.
PORT_BLOCKS_FIRST, PORT_BLOCKS_END, PORT_BLOCK_SIZE = 20000, 32000, 32


def _ports_free(first, count):
    for port in range(first, first + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def reserve_port_block(size=PORT_BLOCK_SIZE):
    """``(first port, lock)``: ``size`` consecutive ports free now, and held for this test
    process by an exclusive lock on a file named after them (released when ``lock`` is
    closed or the process ends), so two sandboxes never pick the same block."""
    import fcntl
    import tempfile

    bases = list(range(PORT_BLOCKS_FIRST, PORT_BLOCKS_END - size, size))
    random.shuffle(bases)
    for base in bases:
        path = os.path.join(tempfile.gettempdir(), "paysys-ports-{}-{}.lock".format(base, size))
        lock = open(path, "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if _ports_free(base, size):
            return base, lock
        lock.close()
    raise AssertionError("no free block of {} ports in {}-{}".format(
        size, PORT_BLOCKS_FIRST, PORT_BLOCKS_END))


# --- RabbitMQ ---------------------------------------------------------------------


def ensure_rabbitmq_management():
    """The management API creates the tests' own vhost; enable the plugin if it is off."""
    if not port_open("127.0.0.1", 15672):
        run(RABBITMQ_ENABLE_MANAGEMENT)
        wait_for(lambda: port_open("127.0.0.1", 15672), 60, what="RabbitMQ management API")
    wait_for(_management_answers, 60, what="RabbitMQ management API answering")


def _management_answers():
    try:
        return requests.get(RABBITMQ_MANAGEMENT + "/overview", auth=RABBITMQ_USER,
                            timeout=2).ok
    except requests.RequestException:
        return False


def create_vhost(name):
    """A fresh vhost: queues of one test system never meet another's (or a developer's)."""
    ensure_rabbitmq_management()
    delete_vhost(name)
    requests.put("{}/vhosts/{}".format(RABBITMQ_MANAGEMENT, name), auth=RABBITMQ_USER,
                 timeout=10).raise_for_status()
    requests.put("{}/permissions/{}/guest".format(RABBITMQ_MANAGEMENT, name),
                 auth=RABBITMQ_USER, json={"configure": ".*", "write": ".*", "read": ".*"},
                 timeout=10).raise_for_status()


def delete_vhost(name):
    requests.delete("{}/vhosts/{}".format(RABBITMQ_MANAGEMENT, name), auth=RABBITMQ_USER,
                    timeout=10)


def stop_rabbitmq():
    run(RABBITMQ_STOP)
    wait_for(lambda: not port_open("127.0.0.1", 5672), 60, what="RabbitMQ stopped")


def start_rabbitmq():
    run(RABBITMQ_START)
    # The detached node takes a few seconds to register before it can even be awaited.
    wait_for(lambda: _succeeds(RABBITMQ_AWAIT), 180, interval_s=1, what="RabbitMQ booted")
    wait_for(lambda: port_open("127.0.0.1", 5672), 60, what="RabbitMQ listening")


def _succeeds(command):
    try:
        run(command, timeout_s=60)
        return True
    except AssertionError:
        return False


# --- PostgreSQL and Redis -----------------------------------------------------------


def stop_postgres():
    run(POSTGRES_STOP)
    wait_for(lambda: not port_open("127.0.0.1", 5432), 60, what="PostgreSQL stopped")


def start_postgres():
    run(POSTGRES_START)
    wait_for(lambda: port_open("127.0.0.1", 5432), 60, what="PostgreSQL listening")


def stop_redis():
    run(REDIS_STOP)
    wait_for(lambda: not port_open("127.0.0.1", 6379), 30, what="Redis stopped")


def start_redis():
    run(REDIS_START)
    wait_for(lambda: port_open("127.0.0.1", 6379), 30, what="Redis listening")


def drop_database(admin_dsn, name):
    import psycopg2
    from psycopg2 import sql

    connection = psycopg2.connect(admin_dsn, connect_timeout=5)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
    finally:
        connection.close()


def flush_redis(url):
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
