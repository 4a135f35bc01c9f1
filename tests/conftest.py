# Nameko runs on eventlet; patch before anything imports socket, threading or psycopg2.
import shared  # noqa: F401,I001 - silences eventlet's deprecation notice first
import eventlet

eventlet.monkey_patch()

import os  # noqa: E402

import pytest  # noqa: E402

# Services started inside the test process (nameko's containers) serve no metrics port:
# config.yml's 9400 is `make up`'s. A sandbox reserves ports of its own (harness/sandbox.py).
os.environ.setdefault("PAYSYS_METRICS_PORT_BASE", "0")

from harness.sandbox import System  # noqa: E402


@pytest.fixture(scope="session")
def smtp_sink():
    """A real SMTP server on loopback that keeps the e-mail the system sends."""
    from tests.support.smtp_sink import SmtpSink

    sink = SmtpSink().start()
    yield sink
    sink.stop()


PAYMENT_HOLD_S = 10
# The schemathesis run's requests per second (just under the session system's per-user limit).
FUZZ_RATE_PER_S = 50


@pytest.fixture(scope="session")
def system(tmp_path_factory, smtp_sink):
    """The whole system, started once for the tests that need it, stopped after them."""
    # Named after the test process: two test runs on one machine never share a database.
    running = System("test_{}".format(os.getpid()), tmp_path_factory.mktemp("run"),
                     redis_db=14, env={
        "PAYSYS_EMAIL_ENABLED": "true",
        "PAYSYS_SMTP_HOST": smtp_sink.host,
        "PAYSYS_SMTP_PORT": str(smtp_sink.port),
        "PAYSYS_RETRY_BASE_S": "0.2",
        "PAYSYS_RETRY_CAP_S": "2",
        # Long enough for a test to capture what it authorized, short enough to see an
        # authorization expire.
        "PAYSYS_PAYMENT_HOLD_S": str(PAYMENT_HOLD_S),
        # Room for the schemathesis run (tests/system/test_fuzz_openapi.py, one user from
        # one address); the limits' behaviour is tested on a gateway of its own
        # (tests/system/test_guard.py).
        "PAYSYS_RATE_LIMIT_USER_PER_S": str(FUZZ_RATE_PER_S + 10),
        "PAYSYS_RATE_LIMIT_IP_PER_S": str(FUZZ_RATE_PER_S + 50),
    })
    with running:
        yield running


@pytest.fixture(scope="session")
def database_url():
    """A freshly migrated database of its own, for tests of one service against real PostgreSQL.

    Named after the test process, so two test runs on one machine never share it."""
    from tests.support.databases import migrated_database

    with migrated_database("paysys_unit_{}".format(os.getpid())) as url:
        yield url


@pytest.fixture
def service_config(database_url):
    """config.yml as a service sees it, pointed at the tests' database and Redis."""
    from shared.config import load_config

    config = load_config()
    config["database"]["url"] = database_url
    config["redis"]["url"] = "redis://127.0.0.1:6379/12"
    return config


@pytest.fixture(scope="session")
def engine(database_url):
    """A pooled SQLAlchemy engine on the tests' database, as a service process has one."""
    from tests.support.databases import pooled_engine

    with pooled_engine(database_url, "paysys-tests") as engine:
        yield engine
