"""The ledger's account RPCs (services/ledger/account_rpcs.py) against a real, migrated
PostgreSQL database: accounts live beside their money, answer with it, and change state
under the same row lock as the postings. Also the migration that brought them here."""
import base64
import os
import re
import uuid

import eventlet
import psycopg2.extensions
import pytest
from alembic import command
from nameko.exceptions import deserialize, serialize
from nameko.testing.services import worker_factory
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from services.ledger import accounts as records
from services.ledger.balances import balances
from services.ledger.service import LedgerService
from shared.catalog import BY_NAME
from shared.db import DatabaseAccess, sqlalchemy_url
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.money import settlement_account_id
from tests.support.concurrency import run_together
from tests.support.databases import ADMIN_DSN
from tests.unit.test_ledger_concurrency import PausedDatabase, is_lock, wait_for_a_lock_wait
from tests.unit.test_ledger_postings import deposit, posting, rejected, set_overdraft_limit

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
VIEW_KEYS = {"id", "owner_id", "name", "currency", "status", "balance", "available_balance",
             "overdraft_limit", "version", "created_at"}


@pytest.fixture
def service(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


def new_id():
    return str(uuid.uuid4())


def insert_rows(connection, **values):
    """An account written straight into the tables, with the balances row every account
    has (states no RPC produces, e.g. closed)."""
    row = dict(id=new_id(), owner_id=new_id(), currency="USD", status="active", version=1)
    row.update(values)
    inserted = connection.execute(
        insert(records.accounts).values(**row).returning(records.accounts)).one()
    connection.execute(insert(balances).values(account_id=inserted.id,
                                               currency=inserted.currency))
    return inserted


def insert_directly(engine, **values):
    with engine.begin() as connection:
        return insert_rows(connection, **values)


def stored(engine, account_id):
    with engine.connect() as connection:
        return connection.execute(
            select(records.accounts).where(records.accounts.c.id == account_id)
        ).one()


def money_row(engine, account_id):
    with engine.connect() as connection:
        return connection.execute(
            select(balances).where(balances.c.account_id == account_id)).one_or_none()


# --- create ------------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["JPY", "USD"])
def test_create_opens_an_active_account_at_version_one(service, engine, currency):
    owner = new_id()
    account = service.create_account(owner, currency, name="Savings")
    assert set(account) == VIEW_KEYS
    assert uuid.UUID(account["id"])
    assert account["owner_id"] == owner
    assert account["name"] == "Savings"
    assert account["currency"] == currency
    assert account["status"] == "active"
    assert (account["balance"], account["available_balance"]) == (0, 0)
    assert account["overdraft_limit"] == 0
    assert account["version"] == 1
    assert RFC3339_UTC.match(account["created_at"]), account["created_at"]
    row = stored(engine, account["id"])
    assert (row.owner_id, row.currency, row.status, row.version) == (owner, currency, "active", 1)
    # Its balances row comes with it: the row whose lock guards the account.
    money = money_row(engine, account["id"])
    assert (money.currency, money.balance, money.held, money.is_settlement) == (
        currency, 0, 0, False)


def test_create_without_a_name_stores_none(service):
    assert service.create_account(new_id(), "EUR")["name"] is None


@pytest.mark.parametrize("currency", ["XXX", "usd", "", None, 840, "USDX"])
def test_create_refuses_an_unknown_currency(service, engine, currency):
    owner = new_id()
    with pytest.raises(ValidationFailed) as raised:
        service.create_account(owner, currency)
    assert raised.value.code == "validation_error"
    assert set(raised.value.errors) == {"currency"}
    assert service.list_accounts(owner)["items"] == []


@pytest.mark.parametrize("owner", ["not-a-uuid", None, 7])
def test_create_refuses_a_malformed_owner(service, owner):
    with pytest.raises(ValidationFailed) as raised:
        service.create_account(owner, "USD")
    assert set(raised.value.errors) == {"owner_id"}


@pytest.mark.parametrize("name", ["", "x" * 101, 5])
def test_create_refuses_a_bad_name(service, name):
    with pytest.raises(ValidationFailed) as raised:
        service.create_account(new_id(), "USD", name=name)
    assert set(raised.value.errors) == {"name"}


def test_the_validation_error_crosses_rpc_with_its_field_errors(service):
    with pytest.raises(ValidationFailed) as raised:
        service.create_account(new_id(), "XXX")
    received = deserialize(serialize(raised.value))
    assert type(received) is ValidationFailed
    assert received.errors == raised.value.errors


# --- money ----------------------------------------------------------------------------------


def test_an_account_answers_with_its_money_everywhere(service):
    owner = new_id()
    account = service.create_account(owner, "USD")["id"]
    set_overdraft_limit(service, account, 50)
    service.post([deposit(account, 100)])
    hold = posting(account, service.create_account(new_id(), "USD")["id"], 30,
                   type="payment", hold=True)
    assert service.post([hold])[0]["status"] == "held"
    # What may be spent: balance - held + overdraft limit.
    shown = service.get_account(account)
    assert (shown["balance"], shown["available_balance"], shown["overdraft_limit"],
            shown["version"]) == (100, 120, 50, 2)
    assert service.list_accounts(owner)["items"] == [shown]
    assert service.snapshot([account]) == {account: {
        "id": account, "owner_id": owner, "currency": "USD", "status": "active",
        "overdraft_limit": 50, "version": 2, "balance": 100, "held": 30}}
    frozen = service.set_status(account, "frozen")
    assert (frozen["balance"], frozen["available_balance"]) == (100, 120)


def test_the_settlement_account_is_no_account(service, engine):
    settlement = settlement_account_id("USD")
    service.post([deposit(service.create_account(new_id(), "USD")["id"], 1)])
    with pytest.raises(NotFound):
        service.get_account(settlement)
    with pytest.raises(NotFound):
        service.set_status(settlement, "frozen")
    with pytest.raises(NotFound):
        set_overdraft_limit(service, settlement, 5)
    assert service.snapshot([settlement]) == {}
    assert money_row(engine, settlement).overdraft_limit == 0


# --- list --------------------------------------------------------------------------------


def test_list_pages_through_the_owners_accounts_oldest_first(service):
    owner = new_id()
    created = [service.create_account(owner, "USD", name="a{}".format(i)) for i in range(5)]
    service.create_account(new_id(), "USD")  # someone else's: never listed

    seen, cursor, pages = [], None, 0
    while True:
        page = service.list_accounts(owner, limit=2, cursor=cursor)
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
        ids = [insert_rows(connection, owner_id=owner, currency="GBP").id for _ in range(4)]
    seen, cursor = [], None
    while True:
        page = service.list_accounts(owner, limit=1, cursor=cursor)
        seen.extend(a["id"] for a in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids)


def test_list_with_a_limit_that_fits_exactly_has_no_next_cursor(service):
    owner = new_id()
    for _ in range(3):
        service.create_account(owner, "USD")
    page = service.list_accounts(owner, limit=3)
    assert len(page["items"]) == 3
    assert page["next_cursor"] is None


def test_list_of_an_owner_without_accounts_is_empty(service):
    assert service.list_accounts(new_id()) == {"items": [], "next_cursor": None}


def test_list_defaults_to_fifty(service):
    owner = new_id()
    for _ in range(51):
        service.create_account(owner, "USD")
    page = service.list_accounts(owner)
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None
    assert len(service.list_accounts(owner, cursor=page["next_cursor"])["items"]) == 1


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
        service.list_accounts(new_id(), cursor=cursor)
    assert set(raised.value.errors) == {"cursor"}


@pytest.mark.parametrize("limit", [0, 201, -1, True, 2.0, "10", None])
def test_list_refuses_a_limit_outside_1_to_200(service, limit):
    with pytest.raises(ValidationFailed) as raised:
        service.list_accounts(new_id(), limit=limit)
    assert set(raised.value.errors) == {"limit"}


def test_list_accepts_the_extremes_of_the_limit(service):
    assert service.list_accounts(new_id(), limit=1)["items"] == []
    assert service.list_accounts(new_id(), limit=200)["items"] == []


@pytest.mark.parametrize("owner", ["not-a-uuid", None, 7])
def test_list_refuses_a_malformed_owner(service, owner):
    with pytest.raises(ValidationFailed) as raised:
        service.list_accounts(owner)
    assert set(raised.value.errors) == {"owner_id"}


# --- get -----------------------------------------------------------------------------------


def test_get_returns_the_account(service):
    owner = new_id()
    account = service.create_account(owner, "JPY")
    assert service.get_account(account["id"]) == account
    assert service.get_account(account["id"], owner_id=owner) == account
    assert service.get_account(account["id"].upper(), owner_id=owner.upper()) == account


def test_get_of_another_owners_account_is_not_found(service):
    account = service.create_account(new_id(), "USD", name="private")
    with pytest.raises(NotFound) as raised:
        service.get_account(account["id"], owner_id=new_id())
    assert raised.value.code == "not_found"
    assert account["id"] not in str(raised.value) and "private" not in str(raised.value)


@pytest.mark.parametrize("account_id", ["not-a-uuid", "", None, 12, "1; DROP TABLE x", "0" * 5000])
def test_get_of_a_malformed_id_is_not_found(service, account_id):
    with pytest.raises(NotFound) as raised:
        service.get_account(account_id)
    assert raised.value.code == "not_found"


def test_get_of_an_unknown_id_is_not_found(service):
    with pytest.raises(NotFound):
        service.get_account(new_id())
    with pytest.raises(NotFound):
        service.get_account(new_id(), owner_id=new_id())


def test_get_with_a_malformed_owner_is_not_found(service):
    account = service.create_account(new_id(), "USD")
    with pytest.raises(NotFound):
        service.get_account(account["id"], owner_id="someone")


# --- snapshot ------------------------------------------------------------------------------


def test_snapshot_answers_those_that_exist_each_once(service):
    first = service.create_account(new_id(), "USD")
    second = service.create_account(new_id(), "EUR")
    service.post([deposit(second["id"], 700, currency="EUR")])
    found = service.snapshot([second["id"].upper(), new_id(), "junk", None, first["id"],
                              second["id"]])
    assert found == {
        first["id"]: {"id": first["id"], "owner_id": first["owner_id"], "currency": "USD",
                      "status": "active", "overdraft_limit": 0, "version": 1,
                      "balance": 0, "held": 0},
        second["id"]: {"id": second["id"], "owner_id": second["owner_id"], "currency": "EUR",
                       "status": "active", "overdraft_limit": 0, "version": 1,
                       "balance": 700, "held": 0},
    }
    assert service.snapshot([]) == {}


@pytest.mark.parametrize("account_ids", ["abc", None, {"a": 1}, [new_id()] * 1001])
def test_snapshot_refuses_what_is_not_a_list_of_at_most_1000(service, account_ids):
    with pytest.raises(ValidationFailed) as raised:
        service.snapshot(account_ids)
    assert set(raised.value.errors) == {"account_ids"}


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


# --- schema ----------------------------------------------------------------------------------


def test_the_table_refuses_what_no_account_may_be(engine):
    for values in ({"status": "gone"}, {"overdraft_limit": -1}, {"currency": "usd"},
                   {"version": 0}):
        row = dict(id=new_id(), owner_id=new_id(), currency="USD", status="active")
        row.update(values)
        with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
            connection.execute(insert(records.accounts).values(row))
        assert "violates check constraint" in str(raised.value)


def test_the_owner_index_exists(engine):
    with engine.connect() as connection:
        definition = connection.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'ledger' "
            "AND indexname = 'accounts_owner_created_id'")).scalar_one()
    assert "(owner_id, created_at, id)" in definition


# --- the migration from the accounts service ----------------------------------------------

# The accounts service's schema as its migrations (accounts_0001, accounts_0002) left it.
ACCOUNTS_SERVICE_SCHEMA = """
    CREATE SCHEMA accounts;
    CREATE TABLE accounts.alembic_version (version_num varchar(32) PRIMARY KEY);
    INSERT INTO accounts.alembic_version VALUES ('accounts_0002');
    CREATE TABLE accounts.accounts (
        id uuid PRIMARY KEY,
        owner_id uuid NOT NULL,
        name text,
        currency char(3) NOT NULL,
        status text NOT NULL DEFAULT 'active',
        overdraft_limit bigint NOT NULL DEFAULT 0,
        version integer NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT known_status CHECK (status IN ('active', 'frozen', 'closed')),
        CONSTRAINT overdraft_limit_not_negative CHECK (overdraft_limit >= 0),
        CONSTRAINT version_positive CHECK (version >= 1),
        CONSTRAINT currency_iso_4217 CHECK (currency ~ '^[A-Z]{3}$')
    );
    CREATE INDEX accounts_owner_created_id ON accounts.accounts (owner_id, created_at, id);
"""


@pytest.fixture
def scratch_url():
    """An empty database of this test's own (the shared one is migrated already)."""
    from harness.servers import drop_database
    from paysys.database import ensure_database

    name = "paysys_unit_migration_{}".format(os.getpid())
    url = "postgresql://postgres@127.0.0.1:5432/{}".format(name)
    drop_database(ADMIN_DSN, name)
    ensure_database(url)
    try:
        yield url
    finally:
        drop_database(ADMIN_DSN, name)


def test_the_migration_moves_the_accounts_services_table_into_the_ledger(scratch_url):
    from paysys.database import alembic_config

    config = alembic_config(BY_NAME["ledger"], scratch_url)
    command.upgrade(config, "ledger_0006")
    engine = create_engine(sqlalchemy_url(scratch_url))
    try:
        rich, frozen = new_id(), new_id()
        with engine.begin() as connection:
            connection.execute(text(ACCOUNTS_SERVICE_SCHEMA))
            connection.execute(text(
                "INSERT INTO accounts.accounts (id, owner_id, name, currency, status, "
                "overdraft_limit, version) VALUES "
                "(:rich, :owner, 'Main', 'USD', 'active', 500, 3), "
                "(:frozen, :owner, NULL, 'EUR', 'frozen', 0, 2)"),
                {"rich": rich, "frozen": frozen, "owner": new_id()})
            # The old ledger kept money for the accounts money had moved for.
            connection.execute(insert(balances).values(
                account_id=rich, currency="USD", balance=1_200, last_seq=0))
            before = connection.execute(text(
                "SELECT * FROM accounts.accounts ORDER BY id")).all()

        command.upgrade(config, "head")

        with engine.connect() as connection:
            assert connection.execute(text(
                "SELECT * FROM ledger.accounts ORDER BY id")).all() == before
            assert connection.execute(text(
                "SELECT to_regnamespace('accounts')")).scalar() is None
            # Every account has its balances row; the money there before stays.
            money = {row.account_id: (row.currency, row.balance, row.is_settlement)
                     for row in connection.execute(select(balances))}
            assert money == {rich: ("USD", 1_200, False), frozen: ("EUR", 0, False)}
            assert "(owner_id, created_at, id)" in connection.execute(text(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'ledger' "
                "AND indexname = 'accounts_owner_created_id'")).scalar_one()
        with pytest.raises(IntegrityError, match="known_status"), engine.begin() as connection:
            connection.execute(text("UPDATE ledger.accounts SET status = 'gone'"))

        # The ledger serves the accounts it was given.
        ledger = worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))
        shown = ledger.get_account(rich)
        assert (shown["balance"], shown["available_balance"], shown["version"]) == (
            1_200, 1_700, 3)
        refused = deposit(frozen, 5, currency="EUR")
        assert ledger.post([refused]) == [rejected(refused, "account_frozen")]
        assert ledger.set_status(frozen, "active")["version"] == 3
        assert ledger.post([refused])[0]["status"] == "posted"
    finally:
        engine.dispose()
