# Nameko runs on eventlet; patch before anything imports socket, threading or psycopg2.
import shared  # noqa: F401,I001 - silences eventlet's deprecation notice first
import eventlet

eventlet.monkey_patch()

import pytest  # noqa: E402

from tests.support.system import System  # noqa: E402


@pytest.fixture(scope="session")
def system(tmp_path_factory):
    """The whole system, started once for the tests that need it, stopped after them."""
    running = System("test", tmp_path_factory.mktemp("run"), redis_db=14)
    try:
        running.start()
    except BaseException:
        running.stop()
        raise
    yield running
    running.stop()
