"""The ledger's accounts table and the migration that brought it from the accounts
service, against PostgreSQL: the table's constraints and owner index, and a scratch database
of the accounts service's schema migrated to the ledger keeping every account, its money and
its state."""
import os

import pytest
from alembic import command
from nameko.testing.services import worker_factory
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from services.ledger import accounts as records
from services.ledger.balances import balances
from services.ledger.service import LedgerService
from shared.catalog import BY_NAME
from shared.db import DatabaseAccess, sqlalchemy_url
from tests.support.databases import ADMIN_DSN
from tests.support.ledger import deposit, new_id, rejected


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
