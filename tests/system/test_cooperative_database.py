"""psycopg2 is cooperative inside a running service (psycogreen under eventlet).

Without it a query waiting on PostgreSQL blocks the whole process: every other
worker, and the AMQP heartbeats. Here one worker of the auth service waits on a
table lock the test holds, and the same process must still answer another RPC.
"""
import psycopg2
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from harness.servers import wait_for

pytestmark = pytest.mark.system


def test_a_worker_waiting_on_postgresql_does_not_stall_the_other_workers_of_its_process(system):
    blocker = psycopg2.connect(system.database_url)
    observer = psycopg2.connect(system.database_url)
    observer.autocommit = True
    try:
        with blocker.cursor() as cursor:
            cursor.execute("LOCK TABLE auth.alembic_version IN ACCESS EXCLUSIVE MODE")
            cursor.execute("SELECT version_num FROM auth.alembic_version")
            schema_version = cursor.fetchone()[0]

        with ClusterRpcProxy({"AMQP_URI": system.amqp_uri}, timeout=60) as rpc:
            deep = rpc.auth.health.call_async(deep=True)
            wait_for(lambda: _auth_queries_waiting_on_a_lock(observer) == 1, timeout_s=30,
                     what="the deep health check waiting on the lock")

            # The auth process answers while one of its workers sits in libpq.
            assert rpc.auth.health() == {"service": "auth", "status": "ok"}
            assert _auth_queries_waiting_on_a_lock(observer) == 1

            blocker.rollback()
            assert deep.result() == {
                "service": "auth", "status": "ok", "schema_version": schema_version}
    finally:
        blocker.close()
        observer.close()


def _auth_queries_waiting_on_a_lock(connection):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'paysys-auth' AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0]
