"""A pooled connection the server closed while it sat in the pool (a PostgreSQL restart, a
failover to the standby) is replaced when taken, so the request that takes it succeeds
instead of answering 503; a server that became a standby renews the pool."""
import psycopg2
import pytest
from sqlalchemy import text

from shared.db import DatabaseAccess
from shared.errors import ServiceUnavailable
from tests.support.databases import pooled_engine


@pytest.fixture
def engine(database_url):
    # An engine of its own: its pool holds exactly the connections this test made.
    with pooled_engine(database_url, "paysys-tests-reconnects") as engine:
        yield engine


def backend_pid(engine):
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_closed_by_the_server_while_pooled_is_replaced(engine, database_url):
    first = backend_pid(engine)  # back in the pool, idle
    with psycopg2.connect(database_url) as admin, admin.cursor() as cursor:
        # Waits until the backend has gone (and so has said goodbye on the socket).
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))
    admin.close()
    with DatabaseAccess(engine, "ledger").transaction() as connection:
        answered = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert answered != first


def test_a_pooled_connection_still_open_is_kept(engine):
    assert backend_pid(engine) == backend_pid(engine)


def test_a_write_refused_as_on_a_standby_renews_the_pool(engine):
    """After a failover, a connection to the old primary rejoined as a standby refuses
    writes (SQLSTATE 25006): the caller gets a 503 to retry, and the retry gets a new
    connection (which libpq makes to the primary)."""
    before = backend_pid(engine)
    with pytest.raises(ServiceUnavailable):
        with DatabaseAccess(engine, "ledger").transaction() as connection:
            connection.execute(text("SET TRANSACTION READ ONLY"))
            connection.execute(text("CREATE TABLE refused_on_a_standby (i int)"))
    assert backend_pid(engine) != before
