"""The notifications service's webhook RPCs against a real, migrated PostgreSQL: a
webhook is created with its own secret, shown once and stored sealed, refused when it is no
http(s) URL or names unknown events, limited per user even when racing; listed and deleted
by its owner only."""
import base64
import uuid

import pytest
from nameko.exceptions import deserialize, serialize
from sqlalchemy import select

from services.notifications import records
from shared.errors import Conflict, NotFound, ValidationFailed
from tests.support.concurrency import run_together
from tests.support.notifications import (  # noqa: F401 - fixtures
    URL,
    clean_notifications,
    count,
    make_worker,
    new_id,
    secret_box,
    services,
    sink,
    worker,
)


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
