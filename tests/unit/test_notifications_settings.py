"""The notifications service's tables, wiring and settings: the tables refuse what no
delivery may be, due deliveries are found by an index, events come from durable shared
queues and the timer from the config, and the settings refuse values that cannot work."""
import pytest
from nameko.containers import ServiceContainer
from nameko.events import SERVICE_POOL, EventHandler
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from services.notifications import records
from services.notifications.dependencies import PollTimer
from services.notifications.service import NotificationsService
from services.notifications.settings import Settings
from shared.config import load_config
from shared.event_outbox import BATCH_EVENT
from tests.support.notifications import (  # noqa: F401 - fixtures
    URL,
    clean_notifications,
    deliveries,
    event,
    make_worker,
    new_id,
    publish,
    secret_box,
    services,
    sink,
    worker,
)


# --- schema and wiring ---------------------------------------------------------------------------


def test_the_tables_refuse_what_no_delivery_may_be(worker, engine):
    payload = event([new_id()])
    publish(worker, payload)
    user = deliveries(engine)[0].user_id
    base = dict(event_id=payload["id"], event_type="transaction.completed", user_id=user)
    for values in ({"channel": "sms"}, {"channel": "webhook"},
                   {"channel": "email", "status": "lost"},
                   {"channel": "email", "attempts": -1}):
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(insert(records.deliveries).values(
                dict(base, id=new_id(), user_id=new_id(), **values)))
    with pytest.raises(IntegrityError), engine.begin() as connection:  # one e-mail per event
        connection.execute(insert(records.deliveries).values(dict(base, id=new_id(),
                                                                  channel="email")))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(records.webhooks).values(
            id=new_id(), owner_id=new_id(), url=URL, events=["transaction.created"], secret="s"))


def test_the_due_index_exists(engine):
    with engine.connect() as connection:
        definition = connection.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'notifications' "
            "AND indexname = 'deliveries_due'")).scalar_one()
    assert "(next_attempt_at)" in definition and "pending" in definition


def test_the_events_come_from_durable_shared_queues_and_the_timer_from_the_config():
    config = load_config()
    config["notifications"]["poll_interval_s"] = "0.25"
    container = ServiceContainer(NotificationsService, config)
    handlers = {(e.source_service, e.event_type): e for e in container.entrypoints
                if isinstance(e, EventHandler)}
    assert set(handlers) == {("transactions", BATCH_EVENT), ("payments", BATCH_EVENT)}
    for handler in handlers.values():
        assert handler.handler_type == SERVICE_POOL
        assert handler.reliable_delivery is True and handler.requeue_on_error is True
    (timer,) = [e for e in container.entrypoints if isinstance(e, PollTimer)]
    timer.setup()
    assert (timer.interval, timer.eager, timer.method_name) == (0.25, True, "deliver_due")


# --- settings ------------------------------------------------------------------------------------


def with_section(**values):
    config = load_config()
    config["notifications"].update(values)
    return config


def test_the_defaults_are_config_yml_s_and_configured_values_are_typed(monkeypatch):
    monkeypatch.delenv("PAYSYS_EMAIL_ENABLED", raising=False)
    defaults = Settings.from_config(load_config())
    assert (defaults.smtp_host, defaults.smtp_port, defaults.retry_base_s, defaults.retry_cap_s,
            defaults.max_attempts, defaults.webhook_timeout_s, defaults.email_enabled) == (
        "127.0.0.1", 1025, 1.0, 300.0, 20, 5.0, False)
    configured = Settings.from_config(with_section(
        smtp_host="mail.internal", smtp_port="2525", retry_base_s="0.5",
        max_attempts=7, email_enabled="true"))
    assert (configured.smtp_host, configured.smtp_port, configured.retry_base_s,
            configured.max_attempts, configured.email_enabled) == (
        "mail.internal", 2525, 0.5, 7, True)


@pytest.mark.parametrize("section", [
    {"max_attempts": 0}, {"smtp_port": "many"}, {"email_enabled": "perhaps"},
    {"lease_s": 5, "webhook_timeout_s": 5}, {"smtp_from": ""},
])
def test_settings_refuse_values_that_cannot_work(section):
    with pytest.raises(ValueError):
        Settings.from_config(with_section(**section))
