"""Fixtures and helpers for the auth service's tests (test_auth_*.py): workers from
``worker_factory`` with the real database access and the real token issuer and login brake
(set up by their dependency providers from config); nothing of the database is mocked."""
import hashlib
import time
import uuid
from unittest.mock import Mock

import eventlet
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import text

from services.auth.dependencies import LoginBrake, TokenIssuer
from services.auth.service import AuthService
from shared.db import DatabaseAccess
from shared.tokens import ensure_keypair, load_public_key


PASSWORD = "correct horse battery"


@pytest.fixture
def config(service_config, tmp_path):
    service_config["auth"]["private_key_file"] = str(tmp_path / "jwt-ed25519.pem")
    service_config["tokens"]["public_key_file"] = str(tmp_path / "jwt-ed25519.pub.pem")
    ensure_keypair(service_config)
    return service_config


def token_issuer(container):
    """The provider as a service container binds it (the container is held weakly)."""
    return TokenIssuer().bind(container, "tokens")


@pytest.fixture
def issuer(config):
    container = Mock(config=config)
    provider = token_issuer(container)
    provider.setup()
    return provider.get_dependency(Mock())


@pytest.fixture
def brake(config):
    """The login brake's settings as config.yml gives them."""
    container = Mock(config=config)
    provider = LoginBrake().bind(container, "brake")
    provider.setup()
    return provider.get_dependency(Mock())


@pytest.fixture
def service(engine, issuer, brake):
    return worker_factory(AuthService, db=DatabaseAccess(engine, "auth"), tokens=issuer,
                          brake=brake)


@pytest.fixture
def public_key(config):
    return load_public_key(config)


def new_email():
    return "user-{}@example.com".format(uuid.uuid4().hex)


def register(service, email=None, password=PASSWORD):
    return service.register(email or new_email(), password, "Ada Lovelace")


def error_of(call, *args):
    with pytest.raises(Exception) as raised:
        call(*args)
    return raised.value


def scalar(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar()


def execute(engine, sql, **params):
    with engine.begin() as connection:
        connection.execute(text(sql), params)


def family_of(engine, refresh_token):
    return scalar(engine, "SELECT family_id FROM auth.refresh_tokens WHERE token_hash = :h",
                  h=hashlib.sha256(refresh_token.encode()).hexdigest())


def wait_for_lock_waiters(engine, count, timeout_s=10):
    """Until ``count`` sessions of the test database wait on a lock (so a race is staged)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        waiting = scalar(engine, "SELECT count(*) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND wait_event_type = 'Lock'")
        if waiting >= count:
            return
        eventlet.sleep(0.02)
    raise AssertionError("{} sessions never waited on the lock".format(count))


def outcome(call, *args):
    try:
        return call(*args)
    except Exception as error:  # noqa: BLE001 - the test inspects what was raised
        return error
