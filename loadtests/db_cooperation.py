"""Measures what psycogreen buys: RPC latency of a service while another of its
workers waits on PostgreSQL, with psycopg2 made cooperative and without.

    python -m loadtests.db_cooperation        (needs RabbitMQ, PostgreSQL; `make migrate` first)

It runs the accounts service twice in a child process on a private RabbitMQ vhost:
once as `paysys serve` runs it (eventlet + psycogreen), once with psycopg2 left
blocking. Each time one worker waits HOLD_S seconds on a table lock while the
script times a plain health() RPC to the same process.
"""
import shared  # noqa: F401,I001 - silences eventlet's deprecation notice
import eventlet

# psycopg2 stays blocking here; the "green" child makes it cooperative itself.
eventlet.monkey_patch(psycopg=False)

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import psycopg2  # noqa: E402
import requests  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from shared.config import load_config  # noqa: E402

HOLD_S = 3
VHOST = "paysys_db_cooperation"
MANAGEMENT = "http://127.0.0.1:15672/api"


def run_service(mode, amqp_uri):
    """Child process: the accounts service, psycopg2 green or blocking."""
    if mode == "green":
        from psycogreen.eventlet import patch_psycopg

        patch_psycopg()
    from nameko.runners import ServiceRunner

    from services.accounts.service import AccountsService

    config = load_config()
    config["AMQP_URI"] = amqp_uri
    runner = ServiceRunner(config)
    runner.add_service(AccountsService)
    runner.start()
    runner.wait()


def measure(amqp_uri, database_url):
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=60) as rpc:
        for _ in range(3):
            rpc.accounts.health()
        blocker = psycopg2.connect(database_url)
        blocker.cursor().execute("LOCK TABLE accounts.alembic_version IN ACCESS EXCLUSIVE MODE")
        deep = rpc.accounts.health.call_async(deep=True)
        time.sleep(0.5)  # let the deep call reach the lock
        eventlet.spawn_after(HOLD_S, blocker.rollback)
        started_s = time.perf_counter()
        rpc.accounts.health()
        latency_ms = (time.perf_counter() - started_s) * 1000
        deep.result()
        blocker.close()
        return latency_ms


def main():
    config = load_config()
    auth = ("guest", "guest")
    requests.put("{}/vhosts/{}".format(MANAGEMENT, VHOST), auth=auth).raise_for_status()
    requests.put("{}/permissions/{}/guest".format(MANAGEMENT, VHOST), auth=auth,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    amqp_uri = config["AMQP_URI"].rsplit("/", 1)[0] + "/" + VHOST
    try:
        for mode in ("green", "blocking"):
            child = subprocess.Popen([sys.executable, "-m", "loadtests.db_cooperation",
                                      "--serve", mode, amqp_uri])
            try:
                time.sleep(4)
                latency_ms = measure(amqp_uri, config["database"]["url"])
            finally:
                child.terminate()
                child.wait()
            print("psycopg2 {:<8}: health() took {:8.1f} ms while another worker of the same "
                  "process waited {} s on PostgreSQL".format(mode, latency_ms, HOLD_S))
    finally:
        requests.delete("{}/vhosts/{}".format(MANAGEMENT, VHOST), auth=auth)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        run_service(sys.argv[2], sys.argv[3])
    else:
        main()
