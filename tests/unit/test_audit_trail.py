"""The audit trail (shared/audit.py) against the real, migrated database: freezes in the
ledger's schema, users and roles made at the command line in auth's, webhook changes in
notifications'; each record written by its action's own transaction, refused any change
by the database, and read newest first, a page at a time, across the three services."""
import argparse
import uuid

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from paysys import cli
from services.auth.service import AuthService
from services.ledger.service import LedgerService
from shared import audit
from shared.db import DatabaseAccess
from shared.errors import Conflict, NotFound, ValidationFailed
from tests.support.auth import PASSWORD
from tests.support.ledger import insert_directly, open_account
from tests.support.notifications import (  # noqa: F401 - fixtures
    URL,
    clean_notifications,
    make_worker,
    secret_box,
    services,
    sink,
    worker,
)


@pytest.fixture
def ledger(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


@pytest.fixture
def auth(engine):
    return worker_factory(AuthService, db=DatabaseAccess(engine, "auth"))


def new_id():
    return str(uuid.uuid4())


def records_of(engine, schema, target_id):
    table = audit.table_of(schema)
    with engine.connect() as connection:
        return connection.execute(select(table).where(table.c.target_id == target_id)
                                  .order_by(table.c.occurred_at)).all()


# --- freezes, in the ledger ------------------------------------------------------------


def test_a_freeze_and_an_unfreeze_are_recorded_with_who_what_when_and_the_request(
        ledger, engine):
    account, admin = open_account(ledger), new_id()
    ledger.set_status(account, "frozen", actor_id=admin, request_id="req-freeze")
    ledger.set_status(account, "active", actor_id=admin, request_id="req-thaw")
    frozen, thawed = records_of(engine, "ledger", account)
    assert (frozen.actor_type, frozen.actor_id, frozen.action, frozen.target_type,
            frozen.request_id) == ("user", admin, "account.frozen", "account", "req-freeze")
    assert frozen.details == {"owner_id": ledger.get_account(account)["owner_id"],
                              "status_before": "active", "status": "frozen", "version": 2}
    assert (thawed.action, thawed.request_id, thawed.details["version"]) == (
        "account.unfrozen", "req-thaw", 3)
    assert thawed.occurred_at > frozen.occurred_at


def test_a_freeze_that_changes_nothing_or_is_refused_records_nothing(ledger, engine):
    account = open_account(ledger)
    ledger.set_status(account, "active", actor_id=new_id())  # active already
    closed = insert_directly(engine, status="closed").id
    with pytest.raises(Conflict):
        ledger.set_status(closed, "frozen", actor_id=new_id())
    with pytest.raises(NotFound):
        ledger.set_status(new_id(), "frozen", actor_id=new_id())
    assert records_of(engine, "ledger", account) == []
    assert records_of(engine, "ledger", closed) == []


def test_a_freeze_whose_record_cannot_be_written_does_not_happen(ledger, engine, monkeypatch):
    account = open_account(ledger)

    def broken(*args, **kwargs):
        raise RuntimeError("the trail is full")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(RuntimeError):
        ledger.set_status(account, "frozen", actor_id=new_id())
    assert ledger.get_account(account)["status"] == "active"
    assert ledger.get_account(account)["version"] == 1


def test_a_freeze_by_a_caller_who_names_no_one_is_recorded_as_the_services(ledger, engine):
    account = open_account(ledger)
    ledger.set_status(account, "frozen")
    [row] = records_of(engine, "ledger", account)
    assert (row.actor_type, row.actor_id, row.request_id) == ("service", "unnamed", None)


# --- users and roles, at the command line -------------------------------------------------


def create_user(service_config, email, role, password=PASSWORD):
    args = argparse.Namespace(email=email, password=password, full_name=None, role=role)
    return cli.cmd_create_user(args, service_config)


def test_paysys_create_user_records_the_user_made_and_each_role_granted(
        service_config, engine, auth, monkeypatch, capsys):
    monkeypatch.setattr(cli, "operator_name", lambda: "ops-alice")
    email = "audited-{}@example.test".format(uuid.uuid4().hex[:8])
    assert create_user(service_config, email, "auditor") == 0
    user_id = capsys.readouterr().out.split()[2]
    assert create_user(service_config, email, "admin") == 0
    assert create_user(service_config, email, "admin") == 0  # has it: nothing happens
    assert create_user(service_config, "not-an-address", "admin", password="short") == 2
    created, granted = records_of(engine, "auth", user_id)
    assert (created.actor_type, created.actor_id, created.action, created.target_type) == (
        "cli", "ops-alice", "user.created", "user")
    assert created.details == {"email": email, "roles": ["customer", "auditor"]}
    assert (granted.action, granted.details) == ("user.role_granted", {
        "email": email, "role": "admin", "roles": ["customer", "admin", "auditor"]})
    # Each run is a request of its own.
    assert uuid.UUID(created.request_id) and created.request_id != granted.request_id
    page = auth.audit_events(target_id=user_id)
    assert [item["action"] for item in page["items"]] == ["user.role_granted", "user.created"]


# --- webhooks, in notifications -----------------------------------------------------------


def test_webhook_creation_and_deletion_are_recorded_never_the_secret(worker, engine):
    owner = new_id()
    hook = worker.create_webhook(owner, URL, ["transaction.completed"], request_id="req-1")
    worker.delete_webhook(owner, hook["id"], request_id="req-2")
    with pytest.raises(NotFound):
        worker.delete_webhook(owner, hook["id"], request_id="req-3")  # gone: no record
    created, deleted = records_of(engine, "notifications", hook["id"])
    assert (created.actor_type, created.actor_id, created.action, created.request_id) == (
        "user", owner, "webhook.created", "req-1")
    assert created.details == {"owner_id": owner, "url": URL,
                               "events": ["transaction.completed"]}
    assert (deleted.action, deleted.request_id, deleted.details) == (
        "webhook.deleted", "req-2", {"owner_id": owner, "url": URL})
    assert hook["secret"] not in str(created.details)


# --- append-only --------------------------------------------------------------------------


@pytest.mark.parametrize("schema", audit.SERVICES)
@pytest.mark.parametrize("statement", [
    "UPDATE {}.audit_events SET actor_id = 'someone else'",
    "DELETE FROM {}.audit_events",
    "TRUNCATE {}.audit_events",
])
def test_the_database_refuses_to_change_or_remove_a_record(engine, schema, statement):
    table = audit.table_of(schema)
    with engine.begin() as connection:
        audit.record(connection, table, audit.Actor.of(new_id(), "req"), "account.frozen",
                     "account", new_id())
    with pytest.raises(IntegrityError, match="immutable"), engine.begin() as connection:
        connection.execute(text(statement.format(schema)))


# --- reading the trail ------------------------------------------------------------------------


def test_a_services_trail_pages_newest_first_and_filters(ledger, engine):
    admin = new_id()
    accounts = [open_account(ledger) for _ in range(5)]
    for account in accounts:
        ledger.set_status(account, "frozen", actor_id=admin)
    ledger.set_status(accounts[0], "active", actor_id=admin)
    seen, cursor = [], None
    while True:
        page = ledger.audit_events(limit=2, cursor=cursor, actor_id=admin)
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [(item["action"], item["target_id"]) for item in seen] == (
        [("account.unfrozen", accounts[0])]
        + [("account.frozen", account) for account in reversed(accounts)])
    assert {item["service"] for item in seen} == {"ledger"}
    only = ledger.audit_events(actor_id=admin, action="account.unfrozen")["items"]
    assert [item["target_id"] for item in only] == [accounts[0]]
    assert ledger.audit_events(target_id=accounts[3])["items"][0]["actor_id"] == admin


@pytest.mark.parametrize("arguments, field", [
    ({"cursor": "not-a-cursor"}, "cursor"), ({"limit": 0}, "limit"),
    ({"action": ""}, "action"), ({"actor_id": 5}, "actor_id"),
    ({"target_id": "x" * 201}, "target_id"),
])
def test_a_malformed_page_request_is_refused(ledger, arguments, field):
    with pytest.raises(ValidationFailed) as refused:
        ledger.audit_events(**arguments)
    assert field in refused.value.errors


def test_the_services_pages_merge_into_one_trail_newest_first_without_gaps(
        ledger, auth, worker, engine):
    # What GET /v1/audit-events does: the same page request to every service, merged.
    actor = new_id()
    made = []
    for _ in range(3):
        account = open_account(ledger)
        ledger.set_status(account, "frozen", actor_id=actor)
        made.append(account)
        hook = worker.create_webhook(actor, URL, ["transaction.completed"])
        made.append(hook["id"])
        worker.delete_webhook(actor, hook["id"])
        made.append(hook["id"])
    by_name = {"ledger": ledger, "notifications": worker, "auth": auth}
    merged, cursor = [], None
    while True:
        pages = [by_name[name].audit_events(limit=2, cursor=cursor, actor_id=actor)
                 for name in audit.SERVICES]
        page = audit.merge_pages(pages, 2)
        assert len(page["items"]) <= 2
        merged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [item["target_id"] for item in merged] == list(reversed(made))
    assert [item["occurred_at"] for item in merged] == sorted(
        (item["occurred_at"] for item in merged), reverse=True)
    assert len({item["id"] for item in merged}) == 9


def test_merging_pages_keeps_the_newest_and_a_cursor_when_any_service_has_more():
    def item(moment, record_id):
        return {"occurred_at": "2026-11-30T10:00:0{}.000000Z".format(moment),
                "id": "00000000-0000-0000-0000-00000000000{}".format(record_id)}

    pages = [{"items": [item(5, 1), item(2, 2)], "next_cursor": None},
             {"items": [item(4, 3)], "next_cursor": None},
             {"items": [item(5, 4), item(1, 5)], "next_cursor": "more"}]
    merged = audit.merge_pages(pages, 3)
    assert merged["items"] == [item(5, 4), item(5, 1), item(4, 3)]
    assert audit.decode_cursor(merged["next_cursor"])[1] == item(4, 3)["id"]
    assert audit.merge_pages([{"items": [], "next_cursor": None}] * 3, 3) == {
        "items": [], "next_cursor": None}
    last = audit.merge_pages([{"items": [item(1, 1)], "next_cursor": None}], 3)
    assert last["next_cursor"] is None
