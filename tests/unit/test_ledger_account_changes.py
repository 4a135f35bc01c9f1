"""Changing the ledger's accounts against a real PostgreSQL: status and overdraft limit
change under the account's row lock, each change bumping the version an ``expected_version``
is checked against, a closed account not at all; changes racing each other queue on the lock,
and of those expecting one version exactly one wins."""
import uuid

import eventlet
import psycopg2.extensions
import pytest
from nameko.testing.services import worker_factory

from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from shared.errors import Conflict, NotFound, ValidationFailed
from tests.support.concurrency import run_together
from tests.support.ledger import (  # noqa: F401 - fixtures
    deposit,
    insert_directly,
    new_id,
    rejected,
    service,
    set_overdraft_limit,
    stored,
)
from tests.support.ledger_locks import PausedDatabase, is_lock, wait_for_a_lock_wait


# --- set_status ----------------------------------------------------------------------------


def test_freeze_and_unfreeze_bump_the_version_each_time(service, engine):
    account = service.create_account(new_id(), "USD")
    frozen = service.set_status(account["id"], "frozen")
    assert (frozen["status"], frozen["version"]) == ("frozen", 2)
    active = service.set_status(account["id"], "active")
    assert (active["status"], active["version"]) == ("active", 3)
    assert stored(engine, account["id"]).version == 3
    assert {k: v for k, v in active.items() if k not in ("status", "version")} == {
        k: v for k, v in account.items() if k not in ("status", "version")}


def test_setting_the_status_it_already_has_changes_nothing(service, engine):
    account = service.create_account(new_id(), "USD")
    assert service.set_status(account["id"], "active") == account
    frozen = service.set_status(account["id"], "frozen")
    assert service.set_status(account["id"], "frozen") == frozen
    assert service.set_status(account["id"], "frozen", expected_version=2) == frozen
    assert stored(engine, account["id"]).version == 2


def test_a_closed_account_cannot_change(service, engine):
    closed = insert_directly(engine, status="closed", version=4)
    for status in ("frozen", "active"):
        with pytest.raises(Conflict) as raised:
            service.set_status(closed.id, status)
        assert raised.value.code == "account_closed"
    with pytest.raises(Conflict) as raised:
        set_overdraft_limit(service, closed.id, 100)
    assert raised.value.code == "account_closed"
    row = stored(engine, closed.id)
    assert (row.status, row.version, row.overdraft_limit) == ("closed", 4, 0)


@pytest.mark.parametrize("status", ["closed", "deleted", "", None, "FROZEN"])
def test_set_status_refuses_other_statuses(service, engine, status):
    account = service.create_account(new_id(), "USD")
    with pytest.raises(ValidationFailed) as raised:
        service.set_status(account["id"], status)
    assert set(raised.value.errors) == {"status"}
    assert stored(engine, account["id"]).status == "active"


@pytest.mark.parametrize("account_id", ["nope", None, str(uuid.uuid4())])
def test_set_status_of_an_unknown_or_malformed_account_is_not_found(service, account_id):
    with pytest.raises(NotFound):
        service.set_status(account_id, "frozen")


def test_a_stale_expected_version_is_a_version_conflict(service, engine):
    account = service.create_account(new_id(), "USD")
    service.set_status(account["id"], "frozen", expected_version=1)
    with pytest.raises(Conflict) as raised:
        service.set_status(account["id"], "active", expected_version=1)
    assert raised.value.code == "version_conflict"
    with pytest.raises(Conflict) as raised:
        set_overdraft_limit(service, account["id"], 10, expected_version=1)
    assert raised.value.code == "version_conflict"
    row = stored(engine, account["id"])
    assert (row.status, row.version, row.overdraft_limit) == ("frozen", 2, 0)
    assert service.set_status(account["id"], "active", expected_version=2)["version"] == 3


@pytest.mark.parametrize("expected_version", [0, -1, True, "1", 1.0])
def test_a_malformed_expected_version_is_refused(service, expected_version):
    account = service.create_account(new_id(), "USD")
    with pytest.raises(ValidationFailed) as raised:
        service.set_status(account["id"], "frozen", expected_version=expected_version)
    assert set(raised.value.errors) == {"expected_version"}


def test_a_freeze_stops_the_postings_and_an_unfreeze_lets_them_through(service):
    account = service.create_account(new_id(), "USD")["id"]
    service.set_status(account, "frozen")
    refused = deposit(account, 10)
    assert service.post([refused]) == [rejected(refused, "account_frozen")]
    service.set_status(account, "active")
    assert service.post([refused])[0]["status"] == "posted"
    assert service.get_account(account)["balance"] == 10


# --- overdraft limits (no RPC: set as the account RPCs change an account) --------------------


def test_set_overdraft_limit_stores_it_and_bumps_the_version(service, engine):
    account = service.create_account(new_id(), "USD")
    changed = set_overdraft_limit(service, account["id"], 10_000)
    assert (changed["overdraft_limit"], changed["version"]) == (10_000, 2)
    assert changed["available_balance"] == 10_000
    changed = set_overdraft_limit(service, account["id"], 0, expected_version=2)
    assert (changed["overdraft_limit"], changed["version"]) == (0, 3)
    assert set_overdraft_limit(service, account["id"], 0) == changed  # no change, no bump
    row = stored(engine, account["id"])
    assert (row.overdraft_limit, row.version) == (0, 3)


def test_a_frozen_account_may_get_an_overdraft_limit(service):
    account = service.create_account(new_id(), "USD")
    service.set_status(account["id"], "frozen")
    changed = set_overdraft_limit(service, account["id"], 5)
    assert (changed["status"], changed["overdraft_limit"], changed["version"]) == ("frozen", 5, 3)


def test_set_overdraft_limit_of_an_unknown_account_is_not_found(service):
    with pytest.raises(NotFound):
        set_overdraft_limit(service, new_id(), 5)


# --- changes racing each other -------------------------------------------------------------


def test_psycopg2_is_cooperative_in_these_tests():
    # Otherwise a writer waiting for a row lock would block the one greenthread that holds it.
    assert psycopg2.extensions.get_wait_callback() is not None


def ledger_on(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


def test_a_change_waits_for_another_holding_the_lock_then_sees_the_version_it_made(engine):
    # Both callers read version 1; the second waits on the first's lock (no optimistic
    # retry any more) and then finds its view stale.
    account = insert_directly(engine)
    first_db = PausedDatabase(engine, after=is_lock)
    first = eventlet.spawn(worker_factory(LedgerService, db=first_db).set_status,
                           account.id, "frozen", expected_version=1)
    first_db.wait_until_paused()
    second = eventlet.spawn(set_overdraft_limit, ledger_on(engine), account.id, 100,
                            expected_version=1)
    wait_for_a_lock_wait(engine)
    assert not second.dead
    first_db.resume()
    assert first.wait()["version"] == 2
    with pytest.raises(Conflict) as raised:
        second.wait()
    assert raised.value.code == "version_conflict"
    row = stored(engine, account.id)
    assert (row.status, row.overdraft_limit, row.version) == ("frozen", 0, 2)


def test_two_concurrent_changes_with_the_same_expected_version_exactly_one_wins(engine):
    account = insert_directly(engine)
    outcomes = run_together(
        lambda: ledger_on(engine).set_status(account.id, "frozen", expected_version=1),
        lambda: ledger_on(engine).set_status(account.id, "frozen", expected_version=1),
    )
    wins = [o for o in outcomes if isinstance(o, dict)]
    losses = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(wins) == 1 and len(losses) == 1, outcomes
    assert wins[0]["version"] == 2 and wins[0]["status"] == "frozen"
    assert losses[0].code == "version_conflict"
    assert stored(engine, account.id).version == 2


def test_many_concurrent_changes_with_the_same_expected_version_exactly_one_wins(engine):
    account = insert_directly(engine)
    services = [ledger_on(engine) for _ in range(8)]
    outcomes = run_together(*[
        lambda s=s, i=i: set_overdraft_limit(s, account.id, 100 + i, expected_version=1)
        for i, s in enumerate(services)
    ])
    wins = [o for o in outcomes if isinstance(o, dict)]
    assert len(wins) == 1, outcomes
    assert all(isinstance(o, Conflict) and o.code == "version_conflict"
               for o in outcomes if not isinstance(o, dict))
    row = stored(engine, account.id)
    assert (row.version, row.overdraft_limit) == (2, wins[0]["overdraft_limit"])


def test_concurrent_changes_without_an_expected_version_queue_and_all_apply(engine):
    account = insert_directly(engine)
    first_db = PausedDatabase(engine, after=is_lock)
    first = eventlet.spawn(worker_factory(LedgerService, db=first_db).set_status,
                           account.id, "frozen")
    first_db.wait_until_paused()
    second = eventlet.spawn(set_overdraft_limit, ledger_on(engine), account.id, 500)
    wait_for_a_lock_wait(engine)
    first_db.resume()
    assert first.wait()["version"] == 2
    # The second applied on top of the first, and its view shows both.
    changed = second.wait()
    assert (changed["status"], changed["overdraft_limit"], changed["version"]) == (
        "frozen", 500, 3)
    row = stored(engine, account.id)
    assert (row.status, row.overdraft_limit, row.version) == ("frozen", 500, 3)


def test_many_concurrent_changes_without_an_expected_version_all_apply(engine):
    account = insert_directly(engine)
    outcomes = run_together(*[
        lambda i=i: set_overdraft_limit(ledger_on(engine), account.id, 100 + i)
        for i in range(6)])
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert sorted(o["version"] for o in outcomes) == list(range(2, 8))
    last = max(outcomes, key=lambda o: o["version"])
    row = stored(engine, account.id)
    assert (row.version, row.overdraft_limit) == (7, last["overdraft_limit"])
