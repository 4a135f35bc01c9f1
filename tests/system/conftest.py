"""Users of the running test system, fresh for each test (the admin for each module); the
tests that stop the machine's servers last."""
import pytest

from tests.support.api import new_session


@pytest.fixture
def alice(system):
    return new_session(system)


@pytest.fixture
def bob(system):
    return new_session(system)


@pytest.fixture
def mallory(system):
    """Someone who tries to reach other people's accounts."""
    return new_session(system)


@pytest.fixture(scope="module")
def admin(system):
    return new_session(system, role="admin")


def pytest_collection_modifyitems(items):
    """The tests that stop and start the machine's RabbitMQ or PostgreSQL run after every
    other system test: `make test` runs the unit suite beside the system suite, and the
    unit suite is done long before these come."""
    items.sort(key=lambda item: item.get_closest_marker("stops_servers") is not None)
