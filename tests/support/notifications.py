"""Fixtures and helpers for tests of the notifications service: a worker on the real
database, a real webhook receiver and SMTP sink on loopback, a stand-in for auth.get_user.

Test modules import the fixtures they use (``from tests.support.notifications import *``).
"""
import time
import uuid
from datetime import datetime, timezone

import eventlet
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select, text

from services.notifications import records
from services.notifications.secret_box import ensure_webhook_key, load_webhook_key
from services.notifications.service import NotificationsService
from services.notifications.settings import Settings
from shared.config import load_config
from shared.db import DatabaseAccess
from shared.errors import NotFound, ServiceUnavailable
from shared.ids import rfc3339
from tests.support.smtp_sink import SmtpSink
from tests.support.webhook_receiver import WebhookReceiver

# Retries in tenths of seconds, so a test of several attempts runs in about a second.
# Loopback allowed, as config.yml does for development: the receivers listen there.
# E-mail on, as the tests of what is sent expect (config.yml has it off).
FAST = dict(email_enabled=True, retry_base_s=0.2, retry_cap_s=1.0, max_attempts=5,
            webhook_timeout_s=1.0,
            smtp_timeout_s=2.0, rpc_timeout_ms=1000, lease_s=30.0, poll_interval_s=0.05,
            tick_budget_s=1.0, concurrency=10, webhook_allowed_networks="127.0.0.0/8")


class Auth:
    """auth.get_user as the notifications service calls it, over users the test registers;
    ``down`` plays an auth service that does not answer."""

    def __init__(self):
        self.emails = {}
        self.down = False
        self.calls = 0

    def add(self, user_id=None, email=None):
        user_id = user_id or str(uuid.uuid4())
        self.emails[user_id] = email or "user-{}@example.test".format(user_id[:8])
        return user_id

    def get_user(self, user_id, timeout_s=None, breaker=True):
        self.calls += 1
        if self.down:
            raise ServiceUnavailable("auth.get_user did not answer within 1 s")
        if user_id not in self.emails:
            raise NotFound("No such user.")
        return {"id": user_id, "email": self.emails[user_id], "full_name": "Test User",
                "roles": ["customer"]}


class Services:
    """The ``rpc`` dependency with auth only."""

    def __init__(self):
        self.auth = Auth()


@pytest.fixture(autouse=True)
def clean_notifications(engine):
    """Each test starts from empty notifications tables: a delivery another test left
    pending must not be sent to this test's receiver."""
    with engine.begin() as connection:
        connection.execute(text(
            "TRUNCATE notifications.delivery_attempts, notifications.deliveries, "
            "notifications.events, notifications.webhooks"))
    yield


@pytest.fixture
def receiver():
    running = WebhookReceiver().start()
    yield running
    running.stop()


@pytest.fixture
def sink():
    running = SmtpSink().start()
    yield running
    running.stop()


@pytest.fixture
def services():
    return Services()


def webhook_key_config(directory):
    """config.yml naming a webhook-secret key file in ``directory``, made there if absent."""
    config = load_config()
    config["notifications"]["webhook_key_file"] = str(directory / "webhook-secrets.key")
    ensure_webhook_key(config)
    return config


def settings(**values):
    """The notifications settings of config.yml, with ``values`` in place of its own."""
    config = load_config()
    config["notifications"].update(values)
    return Settings.from_config(config)


@pytest.fixture
def secret_box(tmp_path):
    """The box of a fresh key file, as the service loads it."""
    return load_webhook_key(webhook_key_config(tmp_path))


@pytest.fixture
def make_worker(engine, sink, services, secret_box):
    """``make_worker(**settings)``: a service worker on the tests' database whose e-mail
    goes to the sink, whose auth is ``services.auth`` and whose webhook secrets are sealed
    with ``secret_box``."""

    def make(**overrides):
        values = dict(FAST, smtp_host=sink.host, smtp_port=sink.port)
        values.update(overrides)
        return worker_factory(NotificationsService, db=DatabaseAccess(engine, "notifications"),
                              rpc=services, settings=settings(**values),
                              secret_box=secret_box)

    return make


@pytest.fixture
def worker(make_worker):
    return make_worker()


def transaction_data(**values):
    """A transaction as API.md shows it."""
    data = {
        "id": str(uuid.uuid4()), "type": "transfer", "status": "completed",
        "failure_reason": None, "source_account_id": str(uuid.uuid4()),
        "destination_account_id": str(uuid.uuid4()), "amount": 1234, "currency": "USD",
        "description": "rent", "votes": [],
        "created_at": "2026-03-01T12:00:00.000000Z", "completed_at": "2026-03-01T12:00:01.000000Z",
    }
    data.update(values)
    return data


def event(user_ids, event_type="transaction.completed", event_id=None, **data):
    """An event as the transactions service dispatches it."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "created_at": rfc3339(datetime.now(timezone.utc)),
        "data": transaction_data(**data),
        "user_ids": list(user_ids),
    }


HANDLERS = {
    "transaction.completed": "on_transaction_events",
    "transaction.failed": "on_transaction_events",
    "payment.captured": "on_payment_events",
    "payment.refunded": "on_payment_events",
}


def publish(worker, payload, event_type=None):
    """What Nameko does with an event its outbox relay dispatched: calls the handler with a
    batch holding the event (shared/event_outbox.py)."""
    return getattr(worker, HANDLERS[event_type or payload["type"]])({"events": [payload]})


def drive(*workers, until, timeout_s=10.0, pause_s=0.05):
    """Runs the delivery loop's ticks (as the timer does) until ``until()`` is true."""
    deadline = time.monotonic() + timeout_s
    while True:
        for each in workers:
            each.deliver_due()
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold within {} s".format(timeout_s))
        eventlet.sleep(pause_s)


def deliveries(engine, **where):
    query = select(records.deliveries)
    for column, value in where.items():
        query = query.where(records.deliveries.c[column] == value)
    with engine.connect() as connection:
        return connection.execute(query.order_by(records.deliveries.c.channel)).all()


def attempts(engine, delivery_id):
    with engine.connect() as connection:
        return connection.execute(
            select(records.delivery_attempts)
            .where(records.delivery_attempts.c.delivery_id == delivery_id)
            .order_by(records.delivery_attempts.c.attempt)
        ).all()


URL = "https://hooks.example.test/paysys"


def new_id():
    return str(uuid.uuid4())


def count(engine, table):
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def subscribe(worker, services, events=("transaction.completed", "transaction.failed"),
              url=None, receiver=None):
    user = services.auth.add()
    hook = worker.create_webhook(user, url or receiver.url, list(events))
    return user, hook


def delivered(engine, channel="webhook"):
    return lambda: all(row.status == "delivered" for row in deliveries(engine, channel=channel))
