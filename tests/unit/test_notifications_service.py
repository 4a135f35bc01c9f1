"""The notifications service's RPCs and event intake against a real, migrated PostgreSQL:
webhooks, the delivery log, the fan-out of events into deliveries and their dedupe."""
import base64
import re
import uuid

import pytest
from nameko.containers import ServiceContainer
from nameko.events import SERVICE_POOL, EventHandler
from nameko.exceptions import deserialize, serialize
from nameko.testing.services import worker_factory
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from services.notifications import records
from services.notifications import service as service_module
from services.notifications.dependencies import PollTimer
from services.notifications.service import NotificationsService
from services.notifications.settings import Settings
from shared.config import load_config
from shared.db import DatabaseAccess, make_engine
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.event_outbox import BATCH_EVENT
from tests.support.concurrency import run_together
from tests.support.notifications import (  # noqa: F401 - fixtures
    FAST,
    clean_notifications,
    deliveries,
    drive,
    event,
    make_worker,
    publish,
    receiver,
    secret_box,
    services,
    sink,
    worker,
)

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
URL = "https://hooks.example.test/paysys"


def new_id():
    return str(uuid.uuid4())


def count(engine, table):
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


# --- create_webhook ----------------------------------------------------------------------


def test_create_webhook_returns_the_secret_once_and_stores_it_sealed(worker, engine,
                                                                      secret_box):
    owner = new_id()
    created = worker.create_webhook(owner, URL, ["transaction.completed", "payment.refunded"])
    assert set(created) == {"id", "url", "events", "secret"}
    assert uuid.UUID(created["id"])
    assert created["url"] == URL
    assert created["events"] == ["transaction.completed", "payment.refunded"]
    assert created["secret"].startswith("whsec_") and len(created["secret"]) >= 40
    with engine.connect() as connection:
        row = connection.execute(select(records.webhooks)
                                 .where(records.webhooks.c.id == created["id"])).one()
    assert (row.owner_id, row.deleted_at) == (owner, None)
    assert created["secret"] not in row.secret and secret_box.open(row.secret) == created["secret"]
    listed = worker.list_webhooks(owner)["items"]
    assert listed == [{"id": created["id"], "url": URL, "events": created["events"]}]


def test_every_webhook_gets_its_own_random_secret(worker):
    owner = new_id()
    secrets = {worker.create_webhook(owner, URL, ["transaction.failed"])["secret"]
               for _ in range(5)}
    assert len(secrets) == 5


def test_create_webhook_keeps_each_event_type_once(worker):
    created = worker.create_webhook(new_id(), "http://127.0.0.1:9/x", [
        "transaction.failed", "transaction.failed", "payment.captured"])
    assert created["events"] == ["transaction.failed", "payment.captured"]


@pytest.mark.parametrize("url", [
    "ftp://example.test/hook", "example.test/hook", "http://", "https:///path", "",
    "http://exa mple.test/", "http://example.test/\nx", "http://example.test:99999/",
    "https://example.test/" + "x" * 2048, None, 5, ["http://example.test"],
])
def test_create_webhook_refuses_what_is_not_an_http_url(worker, engine, url):
    with pytest.raises(ValidationFailed) as raised:
        worker.create_webhook(new_id(), url, ["transaction.completed"])
    assert set(raised.value.errors) == {"url"}
    assert count(engine, records.webhooks) == 0


@pytest.mark.parametrize("events", [
    [], None, "transaction.completed", ["transaction.created"], ["transaction.completed", 5],
    ["TRANSACTION.COMPLETED"], {"transaction.completed": True},
])
def test_create_webhook_refuses_unknown_event_types(worker, engine, events):
    with pytest.raises(ValidationFailed) as raised:
        worker.create_webhook(new_id(), URL, events)
    assert set(raised.value.errors) == {"events"}
    assert count(engine, records.webhooks) == 0


@pytest.mark.parametrize("owner", [None, "someone", 7])
def test_create_webhook_refuses_a_malformed_owner(worker, owner):
    with pytest.raises(ValidationFailed) as raised:
        worker.create_webhook(owner, URL, ["transaction.completed"])
    assert set(raised.value.errors) == {"owner_id"}


def test_the_validation_error_crosses_rpc_with_its_field_errors(worker):
    with pytest.raises(ValidationFailed) as raised:
        worker.create_webhook(new_id(), "ftp://x", ["transaction.completed"])
    received = deserialize(serialize(raised.value))
    assert type(received) is ValidationFailed and received.errors == raised.value.errors


def test_a_user_may_have_only_so_many_webhooks_even_when_racing(make_worker, engine):
    workers = [make_worker(max_webhooks_per_user=3) for _ in range(6)]
    owner = new_id()
    outcomes = run_together(*[
        lambda w=w: w.create_webhook(owner, URL, ["transaction.completed"]) for w in workers])
    assert len([o for o in outcomes if isinstance(o, dict)]) == 3, outcomes
    refused = [o for o in outcomes if not isinstance(o, dict)]
    assert all(isinstance(o, Conflict) and o.code == "webhook_limit_reached" for o in refused)
    # Deleting one makes room again; another user is not affected.
    worker = workers[0]
    worker.delete_webhook(owner, worker.list_webhooks(owner)["items"][0]["id"])
    worker.create_webhook(owner, URL, ["transaction.completed"])
    worker.create_webhook(new_id(), URL, ["transaction.completed"])


# --- list_webhooks / delete_webhook ---------------------------------------------------------


def test_list_webhooks_pages_through_the_owners_webhooks_oldest_first(worker):
    owner = new_id()
    created = [worker.create_webhook(owner, URL + "/{}".format(i), ["transaction.completed"])
               for i in range(5)]
    worker.create_webhook(new_id(), URL, ["transaction.completed"])  # someone else's
    seen, cursor, pages = [], None, 0
    while True:
        page = worker.list_webhooks(owner, limit=2, cursor=cursor)
        pages += 1
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [item["id"] for item in seen] == [hook["id"] for hook in created]
    assert all(set(item) == {"id", "url", "events"} for item in seen)


def test_list_webhooks_of_a_user_without_any_is_empty(worker):
    assert worker.list_webhooks(new_id()) == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("limit", [0, 201, True, "10", None])
def test_list_webhooks_refuses_a_limit_outside_1_to_200(worker, limit):
    with pytest.raises(ValidationFailed) as raised:
        worker.list_webhooks(new_id(), limit=limit)
    assert set(raised.value.errors) == {"limit"}


@pytest.mark.parametrize("cursor", ["not a cursor", base64.urlsafe_b64encode(b"[1]").decode(), 7])
def test_list_webhooks_refuses_a_malformed_cursor(worker, cursor):
    with pytest.raises(ValidationFailed) as raised:
        worker.list_webhooks(new_id(), cursor=cursor)
    assert set(raised.value.errors) == {"cursor"}


def test_delete_webhook_removes_it_from_the_list(worker):
    owner = new_id()
    keep = worker.create_webhook(owner, URL, ["transaction.completed"])
    gone = worker.create_webhook(owner, URL, ["transaction.failed"])
    assert worker.delete_webhook(owner, gone["id"]) is None
    assert [item["id"] for item in worker.list_webhooks(owner)["items"]] == [keep["id"]]
    with pytest.raises(NotFound):
        worker.delete_webhook(owner, gone["id"])  # already deleted


def test_deleting_another_users_webhook_is_not_found_and_changes_nothing(worker):
    owner = new_id()
    hook = worker.create_webhook(owner, URL, ["transaction.completed"])
    with pytest.raises(NotFound) as raised:
        worker.delete_webhook(new_id(), hook["id"])
    assert raised.value.code == "not_found" and hook["id"] not in str(raised.value)
    assert [item["id"] for item in worker.list_webhooks(owner)["items"]] == [hook["id"]]


@pytest.mark.parametrize("webhook_id", [str(uuid.uuid4()), "nope", None, 12, "x" * 5000])
def test_deleting_an_unknown_or_malformed_webhook_is_not_found(worker, webhook_id):
    with pytest.raises(NotFound):
        worker.delete_webhook(new_id(), webhook_id)


def test_deleting_with_a_malformed_owner_is_not_found(worker):
    hook = worker.create_webhook(new_id(), URL, ["transaction.completed"])
    with pytest.raises(NotFound):
        worker.delete_webhook("someone", hook["id"])


# --- events in ---------------------------------------------------------------------------------


def test_an_event_makes_one_delivery_per_subscribed_webhook_and_one_email_per_user(
        worker, engine):
    payer, payee, bystander = new_id(), new_id(), new_id()
    payer_hook = worker.create_webhook(payer, URL, ["transaction.completed"])
    worker.create_webhook(payer, URL, ["transaction.failed"])  # not this type
    payee_hook = worker.create_webhook(payee, URL + "/2", ["transaction.completed",
                                                           "transaction.failed"])
    worker.create_webhook(bystander, URL, ["transaction.completed"])  # not concerned
    payload = event([payer, payee])
    publish(worker, payload)

    rows = deliveries(engine, event_id=payload["id"])
    assert sorted((r.channel, r.user_id, r.webhook_id, r.target) for r in rows) == sorted([
        ("webhook", payer, payer_hook["id"], URL),
        ("webhook", payee, payee_hook["id"], URL + "/2"),
        ("email", payer, None, None),
        ("email", payee, None, None),
    ])
    assert {(r.status, r.attempts, r.event_type) for r in rows} == {
        ("pending", 0, "transaction.completed")}
    assert len({r.created_at for r in rows}) == 1  # one database transaction
    with engine.connect() as connection:
        stored = connection.execute(select(records.events)).one()
    assert stored.id == payload["id"] and stored.source == "transactions"
    assert stored.body == {"id": payload["id"], "type": payload["type"],
                           "created_at": payload["created_at"], "data": payload["data"]}
    assert stored.user_ids == [payer, payee]


def test_a_redelivered_event_makes_no_second_delivery(worker, engine):
    user = new_id()
    worker.create_webhook(user, URL, ["transaction.completed"])
    payload = event([user])
    publish(worker, payload)
    publish(worker, payload)
    publish(worker, dict(payload, data={"changed": True}))  # the id decides, not the content
    assert len(deliveries(engine)) == 2
    assert count(engine, records.events) == 1


def test_concurrent_copies_of_one_event_make_one_set_of_deliveries(make_worker, engine):
    user = new_id()
    workers = [make_worker() for _ in range(5)]
    workers[0].create_webhook(user, URL, ["transaction.completed"])
    payload = event([user])
    outcomes = run_together(*[lambda w=w: publish(w, payload) for w in workers])
    assert outcomes == [None] * 5
    assert sorted(row.channel for row in deliveries(engine)) == ["email", "webhook"]


def test_payment_events_are_accepted_from_the_payments_service(worker, engine):
    merchant = new_id()
    worker.create_webhook(merchant, URL, ["payment.captured"])
    captured = {"id": new_id(), "type": "payment.captured", "created_at": "2026-03-01T12:00:00Z",
                "data": {"id": new_id(), "status": "captured", "amount": 900,
                         "captured_amount": 500, "refunded_amount": 0, "currency": "EUR"},
                "user_ids": [merchant]}
    publish(worker, captured)
    refunded = dict(captured, id=new_id(), type="payment.refunded")
    publish(worker, refunded)
    by_event = {(r.event_type, r.channel) for r in deliveries(engine)}
    assert by_event == {("payment.captured", "webhook"), ("payment.captured", "email"),
                        ("payment.refunded", "email")}
    with engine.connect() as connection:
        assert set(connection.execute(select(records.events.c.source)).scalars()) == {"payments"}


@pytest.mark.parametrize("payload", [
    None, "text", [], {}, {"id": "not-a-uuid", "user_ids": []},
    {"id": str(uuid.uuid4()), "user_ids": "someone"},
    {"id": str(uuid.uuid4()), "type": "transaction.exploded", "user_ids": []},
])
def test_a_malformed_event_is_dropped_without_raising(worker, engine, payload):
    # Raising would requeue it forever; it is logged and acknowledged instead.
    assert worker.on_transaction_events({"events": [payload]}) is None
    assert count(engine, records.events) == 0


@pytest.mark.parametrize("batch", [None, "text", [], {}, {"events": "many"}])
def test_a_malformed_batch_is_dropped_without_raising(worker, engine, batch):
    assert worker.on_transaction_events(batch) is None
    assert count(engine, records.events) == 0


def test_a_malformed_event_does_not_stop_the_rest_of_its_batch(worker, engine):
    user = new_id()
    worker.create_webhook(user, URL, ["transaction.completed"])
    good = event([user])
    worker.on_transaction_events({"events": [{"id": "junk"}, good]})
    assert [row.event_id for row in deliveries(engine, channel="webhook")] == [good["id"]]


def test_a_batch_of_events_makes_all_its_deliveries_in_one_transaction(worker, engine):
    users = [new_id() for _ in range(3)]
    for user in users:
        worker.create_webhook(user, URL, ["transaction.completed", "transaction.failed"])
    batch = [event([user]) for user in users] + [event([users[0]], "transaction.failed")]
    worker.on_transaction_events({"events": batch})
    rows = deliveries(engine, channel="webhook")
    assert sorted(row.event_id for row in rows) == sorted(payload["id"] for payload in batch)
    assert len({row.created_at for row in rows}) == 1  # one database transaction


def test_an_event_that_makes_no_delivery_leaves_nothing_behind(worker, engine):
    # No valid user, or nobody subscribed and e-mail off: nothing to deliver, nothing kept.
    publish(worker, event(["junk", None]))
    assert count(engine, records.events) == 0 and deliveries(engine) == []


def test_an_event_without_created_at_gets_the_time_it_was_received(worker, engine):
    payload = event([new_id()])
    del payload["created_at"]
    publish(worker, payload)
    with engine.connect() as connection:
        body = connection.execute(select(records.events.c.body)).scalar_one()
    assert RFC3339_UTC.match(body["created_at"])


def test_an_event_the_database_cannot_take_now_is_given_back_to_the_broker(
        service_config, monkeypatch):
    # A real connection failure (nothing listens on port 1): the handler raises, and with
    # requeue_on_error the broker delivers the event again later.
    monkeypatch.setattr(service_module, "REQUEUE_PAUSE_S", 0)
    config = dict(service_config, database=dict(service_config["database"], connect_timeout_s=1,
                                                url="postgresql://postgres@127.0.0.1:1/none"))
    unreachable = make_engine(config["database"], 1, "paysys-tests")
    try:
        worker = worker_factory(NotificationsService,
                                db=DatabaseAccess(unreachable, "notifications"),
                                settings=Settings(**FAST))
        with pytest.raises(Exception) as raised:
            publish(worker, event([new_id()]))
        assert isinstance(raised.value, service_module.TRANSIENT_DB_ERRORS)
    finally:
        unreachable.dispose()


# --- list_deliveries -----------------------------------------------------------------------------


def test_list_deliveries_shows_only_the_owners_newest_first(worker, services, receiver, sink,
                                                            engine):
    owner, other = services.auth.add(), services.auth.add()
    worker.create_webhook(owner, receiver.url, ["transaction.completed"])
    worker.create_webhook(other, receiver.url, ["transaction.completed"])
    first, second = event([owner, other]), event([owner])
    publish(worker, first)
    publish(worker, second)
    drive(worker, until=lambda: all(r.status == "delivered" for r in deliveries(engine)))

    items = worker.list_deliveries(owner)["items"]
    assert len(items) == 4
    assert [item["event_id"] for item in items] == [second["id"]] * 2 + [first["id"]] * 2
    assert {item["channel"] for item in items} == {"email", "webhook"}
    other_ids = {row.id for row in deliveries(engine, user_id=other)}
    assert other_ids and not other_ids & {item["id"] for item in items}
    for item in items:
        assert {"id", "channel", "event_type", "status", "attempts", "created_at"} <= set(item)
        assert (item["status"], item["attempts"], item["event_type"]) == (
            "delivered", 1, "transaction.completed")
        assert RFC3339_UTC.match(item["created_at"]) and RFC3339_UTC.match(item["delivered_at"])
        assert item["next_attempt_at"] is None and item["last_error"] is None
        (attempt,) = item["history"]
        assert (attempt["attempt"], attempt["outcome"]) == (1, "succeeded")
    webhook_item = next(item for item in items if item["channel"] == "webhook")
    assert webhook_item["target"] == receiver.url
    assert "secret" not in str(items)


def test_list_deliveries_pages_newest_first(worker, engine):
    owner = new_id()
    published = [event([owner]) for _ in range(5)]
    for payload in published:
        publish(worker, payload)
    seen, cursor = [], None
    while True:
        page = worker.list_deliveries(owner, limit=2, cursor=cursor)
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [item["event_id"] for item in seen] == [p["id"] for p in reversed(published)]
    assert all(item["status"] == "pending" and item["next_attempt_at"] for item in seen)
    assert worker.list_deliveries(new_id()) == {"items": [], "next_cursor": None}


def test_list_deliveries_refuses_bad_paging_and_owners(worker):
    with pytest.raises(ValidationFailed):
        worker.list_deliveries(new_id(), limit=0)
    with pytest.raises(ValidationFailed):
        worker.list_deliveries(new_id(), cursor="%%%")
    with pytest.raises(ValidationFailed):
        worker.list_deliveries("someone")


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
    config["notifications"] = {"poll_interval_s": "0.25"}
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


def test_settings_have_defaults_and_take_the_configured_values():
    assert Settings.from_config({}) == Settings()
    assert Settings.from_config({"notifications": None}) == Settings()
    defaults = Settings()
    assert (defaults.smtp_host, defaults.smtp_port, defaults.retry_base_s, defaults.retry_cap_s,
            defaults.max_attempts, defaults.webhook_timeout_s) == ("127.0.0.1", 1025, 1.0,
                                                                   300.0, 20, 5.0)
    configured = Settings.from_config({"notifications": {
        "smtp_host": "mail.internal", "smtp_port": "2525", "retry_base_s": "0.5",
        "max_attempts": 7, "email_enabled": "false", "smtp_from": "",
    }})
    assert (configured.smtp_host, configured.smtp_port, configured.retry_base_s,
            configured.max_attempts, configured.email_enabled, configured.smtp_from) == (
        "mail.internal", 2525, 0.5, 7, False, defaults.smtp_from)


@pytest.mark.parametrize("section", [
    {"max_attempts": 0}, {"smtp_port": "many"}, {"email_enabled": "perhaps"},
    {"lease_s": 5, "webhook_timeout_s": 5},
])
def test_settings_refuse_values_that_cannot_work(section):
    with pytest.raises(ValueError):
        Settings.from_config({"notifications": section})
