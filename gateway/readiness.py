"""GET /ready: does every dependency and every service answer right now?

Each check runs in its own greenthread under the same deadline, so one dead
dependency costs the caller at most that deadline, and the answer names
everything that did not answer, not just the first.
"""
import eventlet
from kafka import KafkaAdminClient
from kombu import Connection

OK = "ok"


def check_rabbitmq(amqp_uri, timeout_s):
    with Connection(amqp_uri, connect_timeout=timeout_s) as connection:
        connection.connect()


def check_kafka(bootstrap_servers, timeout_s):
    timeout_ms = int(timeout_s * 1000)
    client = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="paysys-readiness",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        client.list_topics()
    finally:
        client.close()


def _run(check, timeout_s):
    """``"ok"``, or why the check failed."""
    try:
        with eventlet.Timeout(timeout_s):
            check()
        return OK
    except eventlet.Timeout:
        return "no answer within {:g} s".format(timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; say which
        return "{}: {}".format(type(exc).__name__, exc) if str(exc) else type(exc).__name__


def readiness_report(checks, timeout_s):
    """Run ``checks`` (name -> callable) concurrently; return the /ready body."""
    pool = eventlet.GreenPool(len(checks))
    names = list(checks)
    results = dict(zip(names, pool.imap(lambda name: _run(checks[name], timeout_s), names)))
    unavailable = [name for name in names if results[name] != OK]
    return {
        "status": "unavailable" if unavailable else "ready",
        "checks": results,
        "unavailable": unavailable,
    }
