"""Fixtures and helpers for the ledger's tests (test_ledger_*.py, and the tests that post
through the ledger): a worker on the real, migrated database, accounts opened with it,
postings of each kind, holds and their captures, and what the books hold afterwards, read
as the ledger reads them."""
import json
import re
import uuid

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, insert, select

from services.ledger import accounts as records
from services.ledger import postings as posting_records
from services.ledger.balances import balances
from services.ledger.entries import entries
from services.ledger.holds import holds
from services.ledger.outbox import outbox
from services.ledger.postings import postings
from services.ledger.service import LedgerService
from services.ledger.totals import totals as books_totals
from shared.db import DatabaseAccess
from shared.money import settlement_account_id

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
USD_SETTLEMENT = settlement_account_id("USD")


@pytest.fixture
def service(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


def new_id():
    return str(uuid.uuid4())


def open_account(service, currency="USD", overdraft_limit=0):
    """A new account of a new owner: the ledger posts only to accounts opened with it."""
    account = service.create_account(new_id(), currency)
    if overdraft_limit:
        set_overdraft_limit(service, account["id"], overdraft_limit)
    return account["id"]


def set_overdraft_limit(service, account_id, limit, expected_version=None):
    """No RPC sets an overdraft limit (the contract has no route for it): the tests set one
    through the change every account RPC makes (under the account's lock, bumping its
    version, ``expected_version`` checked), as ``set_status`` does."""
    return service._change(account_id, expected_version, lambda row: (
        {} if row.overdraft_limit == limit else {"overdraft_limit": limit}))


def stored_result(engine, transaction_id):
    """What the ledger answers a replay of ``transaction_id`` with, read as it reads it
    (postings.stored_results); None if it never posted."""
    with engine.connect() as connection:
        return posting_records.stored_results(connection, [transaction_id]).get(transaction_id)


def posting(debit, credit, amount, type="transfer", currency="USD", transaction_id=None,
            **more):
    return dict({
        "transaction_id": transaction_id or new_id(),
        "type": type,
        "currency": currency,
        "amount": amount,
        "debit_account_id": debit,
        "credit_account_id": credit,
    }, **more)


def deposit(account, amount, currency="USD", **more):
    return posting(None, account, amount, type="deposit", currency=currency, **more)


def withdrawal(account, amount, **more):
    return posting(account, None, amount, type="withdrawal", **more)


def post(service, one):
    [result] = service.post([one])
    return result


def balance_of(service, account):
    return service.balances([account])[account]["balance"]


def row_of(engine, account):
    with engine.connect() as connection:
        return connection.execute(
            select(balances).where(balances.c.account_id == account)).one_or_none()


def count(engine, table, **where):
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()


def entries_of(engine, account):
    with engine.connect() as connection:
        return connection.execute(
            select(entries).where(entries.c.account_id == account)
            .order_by(entries.c.account_seq)).all()


def assert_posted(result, transaction_id, *lines):
    """``lines``: (account_id, amount, balance_after) of the entries, debit first."""
    assert result["status"] == "posted", result
    assert result["transaction_id"] == transaction_id
    assert set(result) == {"transaction_id", "status", "entries", "posted_at"}
    assert RFC3339_UTC.match(result["posted_at"])
    assert [(e["account_id"], e["amount"], e["balance_after"]) for e in result["entries"]] == [
        tuple(line) for line in lines]
    for entry in result["entries"]:
        assert set(entry) == {
            "id", "account_id", "transaction_id", "amount", "balance_after", "created_at"}
        assert entry["transaction_id"] == transaction_id
        assert RFC3339_UTC.match(entry["created_at"])
    assert sum(entry["amount"] for entry in result["entries"]) == 0
    json.dumps(result)  # what crosses the wire is plain JSON


def rejected(one, reason):
    return {"transaction_id": one["transaction_id"], "status": "rejected", "reason": reason}


def nothing_posted(engine, *given):
    """No postings row, entry or outbox message exists for any of the postings ``given``."""
    for one in given:
        for table in (postings, entries, outbox):
            assert count(engine, table, transaction_id=one["transaction_id"]) == 0, (
                table.name, one)


# --- the books, as reconciliation reads them -----------------------------------------


def books(engine):
    """The books' totals (services/ledger/totals.py) in one REPEATABLE READ snapshot, as
    reconciliation reads them."""
    with engine.connect() as connection:
        connection.execution_options(isolation_level="REPEATABLE READ",
                                     postgresql_readonly=True)
        with connection.begin():
            return books_totals(connection)


# --- accounts written straight into the tables ----------------------------------------


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


# --- holds -------------------------------------------------------------------------------


def authorization(payer, merchant, amount, transaction_id=None):
    return posting(payer, merchant, amount, type="payment", transaction_id=transaction_id,
                   hold=True)


def capture(payer, merchant, amount, hold_id, transaction_id=None):
    return posting(payer, merchant, amount, type="capture", transaction_id=transaction_id,
                   capture_of=hold_id)


def funded(service, amount):
    payer, merchant = open_account(service), open_account(service)
    if amount:
        assert post(service, deposit(payer, amount))["status"] == "posted"
    return payer, merchant


def hold_row(engine, transaction_id):
    with engine.connect() as connection:
        return connection.execute(
            select(holds).where(holds.c.transaction_id == transaction_id)).one_or_none()


def state(service, *accounts):
    found = service.balances(list(accounts))
    return [found[account] for account in accounts]
