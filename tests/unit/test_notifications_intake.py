"""The notifications service's event intake against a real PostgreSQL: an event fans
out into one delivery per subscribed webhook and one e-mail per user, once however often it
comes, a malformed one dropped without stopping the rest of its batch; and the delivery log,
which each owner lists newest first."""
import re
import uuid

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from services.notifications import records
from services.notifications import service as service_module
from services.notifications.service import NotificationsService
from services.notifications.settings import Settings
from shared.db import DatabaseAccess, make_engine
from shared.errors import ValidationFailed
from tests.support.concurrency import run_together
from tests.support.notifications import (  # noqa: F401 - fixtures
    FAST,
    URL,
    clean_notifications,
    count,
    deliveries,
    drive,
    event,
    make_worker,
    new_id,
    publish,
    receiver,
    secret_box,
    settings,
    services,
    sink,
    worker,
)


RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


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
                                settings=settings(**FAST))
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
