"""The accounts service's RPCs against a real, migrated PostgreSQL database."""
import base64
import re
import threading
import uuid

import psycopg2.extensions
import pytest
from nameko.exceptions import deserialize, serialize
from nameko.testing.services import worker_factory
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from services.accounts import records
from services.accounts.service import AccountsService
from shared.db import DatabaseAccess
from shared.errors import Conflict, NotFound, ValidationFailed
from tests.support.concurrency import GatedConnection, run_together

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def service(engine):
    return worker_factory(AccountsService, db=DatabaseAccess(engine, "accounts"))


def new_id():
    return str(uuid.uuid4())


def insert_directly(engine, **values):
    """An account written straight into the table (states no RPC produces, e.g. closed)."""
    row = dict(id=new_id(), owner_id=new_id(), currency="USD", status="active", version=1)
    row.update(values)
    with engine.begin() as connection:
        return connection.execute(
            insert(records.accounts).values(**row).returning(records.accounts)
        ).one()


def stored(engine, account_id):
    with engine.connect() as connection:
        return connection.execute(
            select(records.accounts).where(records.accounts.c.id == account_id)
        ).one()


# --- create ------------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["JPY", "USD"])
def test_create_opens_an_active_account_at_version_one(service, engine, currency):
    owner = new_id()
    account = service.create(owner, currency, name="Savings")
    assert set(account) == {
        "id", "owner_id", "name", "currency", "status", "overdraft_limit", "version", "created_at"}
    assert uuid.UUID(account["id"])
    assert account["owner_id"] == owner
    assert account["name"] == "Savings"
    assert account["currency"] == currency
    assert account["status"] == "active"
    assert account["overdraft_limit"] == 0
    assert account["version"] == 1
    assert RFC3339_UTC.match(account["created_at"]), account["created_at"]
    row = stored(engine, account["id"])
    assert (row.owner_id, row.currency, row.status, row.version) == (owner, currency, "active", 1)


def test_create_without_a_name_stores_none(service):
    assert service.create(new_id(), "EUR")["name"] is None


@pytest.mark.parametrize("currency", ["XXX", "usd", "", None, 840, "USDX"])
def test_create_refuses_an_unknown_currency(service, engine, currency):
    owner = new_id()
    with pytest.raises(ValidationFailed) as raised:
        service.create(owner, currency)
    assert raised.value.code == "validation_error"
    assert set(raised.value.errors) == {"currency"}
    assert service.list(owner)["items"] == []


@pytest.mark.parametrize("owner", ["not-a-uuid", None, 7])
def test_create_refuses_a_malformed_owner(service, owner):
    with pytest.raises(ValidationFailed) as raised:
        service.create(owner, "USD")
    assert set(raised.value.errors) == {"owner_id"}


@pytest.mark.parametrize("name", ["", "x" * 101, 5])
def test_create_refuses_a_bad_name(service, name):
    with pytest.raises(ValidationFailed) as raised:
        service.create(new_id(), "USD", name=name)
    assert set(raised.value.errors) == {"name"}


def test_the_validation_error_crosses_rpc_with_its_field_errors(service):
    with pytest.raises(ValidationFailed) as raised:
        service.create(new_id(), "XXX")
    received = deserialize(serialize(raised.value))
    assert type(received) is ValidationFailed
    assert received.errors == raised.value.errors


# --- list --------------------------------------------------------------------------------


def test_list_pages_through_the_owners_accounts_oldest_first(service):
    owner = new_id()
    created = [service.create(owner, "USD", name="a{}".format(i)) for i in range(5)]
    service.create(new_id(), "USD")  # someone else's: never listed

    seen, cursor, pages = [], None, 0
    while True:
        page = service.list(owner, limit=2, cursor=cursor)
        pages += 1
        assert len(page["items"]) <= 2
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert pages == 3
    assert [a["id"] for a in seen] == [a["id"] for a in created]
    assert seen == created


def test_list_orders_by_creation_time_then_id(service, engine):
    owner = new_id()
    # Same created_at (one transaction): the id breaks the tie, and paging still sees each once.
    with engine.begin() as connection:
        ids = [
            connection.execute(insert(records.accounts).values(
                id=new_id(), owner_id=owner, currency="GBP", status="active", version=1,
            ).returning(records.accounts.c.id)).scalar_one()
            for _ in range(4)
        ]
    seen, cursor = [], None
    while True:
        page = service.list(owner, limit=1, cursor=cursor)
        seen.extend(a["id"] for a in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids)


def test_list_with_a_limit_that_fits_exactly_has_no_next_cursor(service):
    owner = new_id()
    for _ in range(3):
        service.create(owner, "USD")
    page = service.list(owner, limit=3)
    assert len(page["items"]) == 3
    assert page["next_cursor"] is None


def test_list_of_an_owner_without_accounts_is_empty(service):
    assert service.list(new_id()) == {"items": [], "next_cursor": None}


def test_list_defaults_to_fifty(service):
    owner = new_id()
    for _ in range(51):
        service.create(owner, "USD")
    page = service.list(owner)
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None
    assert len(service.list(owner, cursor=page["next_cursor"])["items"]) == 1


def _b64(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "not a cursor!",
    "%%%",
    _b64(b"\xff\xfe"),
    _b64(b"[1, 2]"),
    _b64(b'{"t": "yesterday", "i": "x"}'),
    _b64(b'{"t": "2026-01-01T00:00:00", "i": "' + str(uuid.uuid4()).encode() + b'"}'),
    _b64(b'{"t": "2026-01-01T00:00:00Z", "i": "nope"}'),
    _b64(b'{"t": 5, "i": "nope"}'),
    "x" * 1000,
    7,
])
def test_list_refuses_a_malformed_cursor(service, cursor):
    with pytest.raises(ValidationFailed) as raised:
        service.list(new_id(), cursor=cursor)
    assert set(raised.value.errors) == {"cursor"}


@pytest.mark.parametrize("limit", [0, 201, -1, True, 2.0, "10", None])
def test_list_refuses_a_limit_outside_1_to_200(service, limit):
    with pytest.raises(ValidationFailed) as raised:
        service.list(new_id(), limit=limit)
    assert set(raised.value.errors) == {"limit"}


def test_list_accepts_the_extremes_of_the_limit(service):
    assert service.list(new_id(), limit=1)["items"] == []
    assert service.list(new_id(), limit=200)["items"] == []


# --- get -----------------------------------------------------------------------------------


def test_get_returns_the_account(service):
    owner = new_id()
    account = service.create(owner, "JPY")
    assert service.get(account["id"]) == account
    assert service.get(account["id"], owner_id=owner) == account
    assert service.get(account["id"].upper(), owner_id=owner.upper()) == account


def test_get_of_another_owners_account_is_not_found(service):
    account = service.create(new_id(), "USD", name="private")
    with pytest.raises(NotFound) as raised:
        service.get(account["id"], owner_id=new_id())
    assert raised.value.code == "not_found"
    assert account["id"] not in str(raised.value) and "private" not in str(raised.value)


@pytest.mark.parametrize("account_id", ["not-a-uuid", "", None, 12, "1; DROP TABLE x", "0" * 5000])
def test_get_of_a_malformed_id_is_not_found(service, account_id):
    with pytest.raises(NotFound) as raised:
        service.get(account_id)
    assert raised.value.code == "not_found"


def test_get_of_an_unknown_id_is_not_found(service):
    with pytest.raises(NotFound):
        service.get(new_id())
    with pytest.raises(NotFound):
        service.get(new_id(), owner_id=new_id())


def test_get_with_a_malformed_owner_is_not_found(service):
    account = service.create(new_id(), "USD")
    with pytest.raises(NotFound):
        service.get(account["id"], owner_id="someone")


# --- get_many ------------------------------------------------------------------------------


def test_get_many_returns_those_that_exist_in_the_order_asked(service):
    first = service.create(new_id(), "USD")
    second = service.create(new_id(), "EUR")
    result = service.get_many([second["id"], new_id(), "junk", None, first["id"], second["id"]])
    assert result == [second, first]
    assert service.get_many([]) == []


def test_get_many_refuses_what_is_not_a_list(service):
    with pytest.raises(ValidationFailed):
        service.get_many("abc")


# --- set_status ----------------------------------------------------------------------------


def test_freeze_and_unfreeze_bump_the_version_each_time(service, engine):
    account = service.create(new_id(), "USD")
    frozen = service.set_status(account["id"], "frozen")
    assert (frozen["status"], frozen["version"]) == ("frozen", 2)
    active = service.set_status(account["id"], "active")
    assert (active["status"], active["version"]) == ("active", 3)
    assert stored(engine, account["id"]).version == 3
    assert {k: v for k, v in active.items() if k not in ("status", "version")} == {
        k: v for k, v in account.items() if k not in ("status", "version")}


def test_setting_the_status_it_already_has_changes_nothing(service, engine):
    account = service.create(new_id(), "USD")
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
        service.set_overdraft_limit(closed.id, 100)
    assert raised.value.code == "account_closed"
    row = stored(engine, closed.id)
    assert (row.status, row.version, row.overdraft_limit) == ("closed", 4, 0)


@pytest.mark.parametrize("status", ["closed", "deleted", "", None, "FROZEN"])
def test_set_status_refuses_other_statuses(service, engine, status):
    account = service.create(new_id(), "USD")
    with pytest.raises(ValidationFailed) as raised:
        service.set_status(account["id"], status)
    assert set(raised.value.errors) == {"status"}
    assert stored(engine, account["id"]).status == "active"


@pytest.mark.parametrize("account_id", ["nope", None, str(uuid.uuid4())])
def test_set_status_of_an_unknown_or_malformed_account_is_not_found(service, account_id):
    with pytest.raises(NotFound):
        service.set_status(account_id, "frozen")


def test_a_stale_expected_version_is_a_version_conflict(service, engine):
    account = service.create(new_id(), "USD")
    service.set_status(account["id"], "frozen", expected_version=1)
    with pytest.raises(Conflict) as raised:
        service.set_status(account["id"], "active", expected_version=1)
    assert raised.value.code == "version_conflict"
    with pytest.raises(Conflict) as raised:
        service.set_overdraft_limit(account["id"], 10, expected_version=1)
    assert raised.value.code == "version_conflict"
    row = stored(engine, account["id"])
    assert (row.status, row.version, row.overdraft_limit) == ("frozen", 2, 0)
    assert service.set_status(account["id"], "active", expected_version=2)["version"] == 3


@pytest.mark.parametrize("expected_version", [0, -1, True, "1", 1.0])
def test_a_malformed_expected_version_is_refused(service, expected_version):
    account = service.create(new_id(), "USD")
    with pytest.raises(ValidationFailed) as raised:
        service.set_status(account["id"], "frozen", expected_version=expected_version)
    assert set(raised.value.errors) == {"expected_version"}


class RaceGate(DatabaseAccess):
    """Holds each of the first ``parties`` transactions after its first statement (the read)
    until all of them have read: they then act on the same version. Later transactions (the
    retries) pass freely."""

    def __init__(self, engine, schema, parties):
        super().__init__(engine, schema)
        self.barrier = threading.Barrier(parties, timeout=10)
        self.ungated = parties

    def transaction(self):
        gate = self

        class Gated:
            def __enter__(self):
                self.context = DatabaseAccess.transaction(gate)
                connection = self.context.__enter__()
                if gate.ungated <= 0:
                    return connection
                gate.ungated -= 1  # greenthreads: no preemption between the test and this
                return GatedConnection(connection, gate.barrier)

            def __exit__(self, *exc_info):
                return self.context.__exit__(*exc_info)

        return Gated()


def test_psycopg2_is_cooperative_in_these_tests():
    # Otherwise a writer waiting for a row lock would block the one greenthread that holds it.
    assert psycopg2.extensions.get_wait_callback() is not None


def test_two_concurrent_changes_with_the_same_expected_version_exactly_one_wins(engine):
    account = insert_directly(engine)
    gate = RaceGate(engine, "accounts", parties=2)
    first = worker_factory(AccountsService, db=gate)
    second = worker_factory(AccountsService, db=gate)
    outcomes = run_together(
        lambda: first.set_status(account.id, "frozen", expected_version=1),
        lambda: second.set_status(account.id, "frozen", expected_version=1),
    )
    wins = [o for o in outcomes if isinstance(o, dict)]
    losses = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(wins) == 1 and len(losses) == 1, outcomes
    assert wins[0]["version"] == 2 and wins[0]["status"] == "frozen"
    assert losses[0].code == "version_conflict"
    assert stored(engine, account.id).version == 2


def test_many_concurrent_changes_with_the_same_expected_version_exactly_one_wins(engine):
    account = insert_directly(engine)
    services = [
        worker_factory(AccountsService, db=DatabaseAccess(engine, "accounts")) for _ in range(8)]
    outcomes = run_together(*[
        lambda s=s, i=i: s.set_overdraft_limit(account.id, 100 + i, expected_version=1)
        for i, s in enumerate(services)
    ])
    wins = [o for o in outcomes if isinstance(o, dict)]
    assert len(wins) == 1, outcomes
    assert all(isinstance(o, Conflict) and o.code == "version_conflict"
               for o in outcomes if not isinstance(o, dict))
    row = stored(engine, account.id)
    assert (row.version, row.overdraft_limit) == (2, wins[0]["overdraft_limit"])


def test_concurrent_changes_without_an_expected_version_are_retried_and_all_apply(engine):
    account = insert_directly(engine)
    gate = RaceGate(engine, "accounts", parties=2)
    first = worker_factory(AccountsService, db=gate)
    second = worker_factory(AccountsService, db=gate)
    outcomes = run_together(
        lambda: first.set_status(account.id, "frozen"),
        lambda: second.set_overdraft_limit(account.id, 500),
    )
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    row = stored(engine, account.id)
    assert (row.status, row.overdraft_limit, row.version) == ("frozen", 500, 3)


# --- set_overdraft_limit --------------------------------------------------------------------


def test_set_overdraft_limit_stores_it_and_bumps_the_version(service, engine):
    account = service.create(new_id(), "USD")
    changed = service.set_overdraft_limit(account["id"], 10_000)
    assert (changed["overdraft_limit"], changed["version"]) == (10_000, 2)
    changed = service.set_overdraft_limit(account["id"], 0, expected_version=2)
    assert (changed["overdraft_limit"], changed["version"]) == (0, 3)
    assert service.set_overdraft_limit(account["id"], 0) == changed  # no change, no bump
    row = stored(engine, account["id"])
    assert (row.overdraft_limit, row.version) == (0, 3)


def test_a_frozen_account_may_get_an_overdraft_limit(service):
    account = service.create(new_id(), "USD")
    service.set_status(account["id"], "frozen")
    changed = service.set_overdraft_limit(account["id"], 5)
    assert (changed["status"], changed["overdraft_limit"], changed["version"]) == ("frozen", 5, 3)


@pytest.mark.parametrize("limit", [-1, True, False, 1.5, "100", None, 10**15 + 1, 2**63])
def test_set_overdraft_limit_refuses_what_is_not_a_non_negative_integer(service, engine, limit):
    account = service.create(new_id(), "USD")
    with pytest.raises(ValidationFailed) as raised:
        service.set_overdraft_limit(account["id"], limit)
    assert set(raised.value.errors) == {"overdraft_limit"}
    row = stored(engine, account["id"])
    assert (row.overdraft_limit, row.version) == (0, 1)


def test_set_overdraft_limit_of_an_unknown_account_is_not_found(service):
    with pytest.raises(NotFound):
        service.set_overdraft_limit(new_id(), 5)


# --- schema ----------------------------------------------------------------------------------


def test_the_table_refuses_what_no_account_may_be(engine):
    for values in ({"status": "gone"}, {"overdraft_limit": -1}, {"currency": "usd"}):
        row = dict(id=new_id(), owner_id=new_id(), currency="USD", status="active")
        row.update(values)
        with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
            connection.execute(insert(records.accounts).values(row))
        assert "violates check constraint" in str(raised.value)


def test_the_owner_index_exists(engine):
    with engine.connect() as connection:
        definition = connection.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'accounts' "
            "AND indexname = 'accounts_owner_created_id'")).scalar_one()
    assert "(owner_id, created_at, id)" in definition
