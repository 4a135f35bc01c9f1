"""Users of the running test system, fresh for each test (the admin for each module)."""
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
