"""The ledger's totals (the books checked in SQL) against a real PostgreSQL database.

Other tests of this process share the database (and its settlement accounts), and some
write balances rows directly; so these tests compare totals before and after, and look
at their own accounts, rather than expect the whole database to be pristine."""
import json

import pytest
from nameko.testing.services import worker_factory

from services.ledger import reconciliation
from services.ledger.balances import balances
from paysys_mirror import MirrorContents
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from shared.money import settlement_account_id
from tests.support.ledger import books, deposit, new_id, open_account, posting, withdrawal


@pytest.fixture
def service(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


def sums(totals, currency):
    return totals["currencies"].get(currency, {"entries_sum": 0, "accounts_sum": 0})


def test_totals_have_the_promised_shape(service, engine):
    service.post([deposit(open_account(service), 1)])
    totals = books(engine)
    assert set(totals) == {"currencies", "accounts_checked", "discrepancies"}
    assert set(totals["currencies"]["USD"]) == {"entries_sum", "accounts_sum"}
    assert all(type(value) is int
               for cur in totals["currencies"].values() for value in cur.values())
    assert type(totals["accounts_checked"]) is int
    json.dumps(totals)  # what crosses the wire is plain JSON


def test_postings_keep_every_currency_balanced(service, engine):
    before = books(engine)
    alice, bob, yen = open_account(service), open_account(service), open_account(service, "JPY")
    results = service.post([
        deposit(alice, 5_000), posting(alice, bob, 1_200), withdrawal(bob, 200),
        posting(bob, alice, 10_000),  # rejected
        deposit(yen, 300, currency="JPY"), withdrawal(yen, 100) | {"currency": "JPY"},
    ])
    assert [r["status"] for r in results] == ["posted"] * 3 + ["rejected"] + ["posted"] * 2
    for result in results:
        if result["status"] == "posted":
            assert sum(entry["amount"] for entry in result["entries"]) == 0
    after = books(engine)
    for currency in ("USD", "JPY"):
        # Per currency all entries ever posted sum to zero; so do the balances they made.
        assert sums(after, currency)["entries_sum"] == 0
        assert (sums(after, currency)["accounts_sum"] - sums(before, currency)["accounts_sum"]
                == 0)
    mine = {alice, bob, yen, settlement_account_id("USD"), settlement_account_id("JPY")}
    assert not mine & {d["account_id"] for d in after["discrepancies"]}
    # Three new accounts seen, plus the JPY settlement account if it was new.
    assert after["accounts_checked"] - before["accounts_checked"] in (3, 4)


def test_a_balance_that_differs_from_its_entries_is_a_discrepancy(service, engine):
    account = open_account(service)
    service.post([deposit(account, 50)])
    with engine.begin() as connection:  # balances are not immutable; entries are
        connection.execute(balances.update().where(balances.c.account_id == account)
                           .values(balance=55))
    try:
        totals = books(engine)
        assert {"account_id": account, "balance": 55, "entries_sum": 50} in (
            totals["discrepancies"])
        json.dumps(totals)
    finally:
        with engine.begin() as connection:
            connection.execute(balances.update().where(balances.c.account_id == account)
                               .values(balance=50))
    assert account not in {d["account_id"] for d in books(engine)["discrepancies"]}


def test_entries_without_a_balances_row_are_a_discrepancy(service, engine):
    account = open_account(service, "GBP")
    service.post([deposit(account, 80, currency="GBP")])
    with engine.begin() as connection:
        row = connection.execute(balances.select().where(balances.c.account_id == account)).one()
        connection.execute(balances.delete().where(balances.c.account_id == account))
    try:
        totals = books(engine)
        assert {"account_id": account, "balance": 0, "entries_sum": 80} in (
            totals["discrepancies"])
        assert sums(totals, "GBP")["entries_sum"] == 0
    finally:
        with engine.begin() as connection:
            connection.execute(balances.insert().values(**row._mapping))
    assert account not in {d["account_id"] for d in books(engine)["discrepancies"]}


def test_a_balance_without_entries_is_a_discrepancy(service, engine):
    account = new_id()
    with engine.begin() as connection:
        connection.execute(balances.insert().values(
            account_id=account, currency="CHF", balance=9))
    try:
        totals = books(engine)
        assert {"account_id": account, "balance": 9, "entries_sum": 0} in (
            totals["discrepancies"])
        assert sums(totals, "CHF")["accounts_sum"] - sums(totals, "CHF")["entries_sum"] >= 9
    finally:
        with engine.begin() as connection:
            connection.execute(balances.delete().where(balances.c.account_id == account))


def test_reconciliation_leaves_its_connection_fit_for_postings(database_url):
    # Reconciliation reads the totals in a REPEATABLE READ, read-only transaction; the
    # connection must come back to the pool as it was, or the next posting on it would be
    # refused.
    from sqlalchemy import create_engine

    from shared.db import sqlalchemy_url

    one_connection = create_engine(sqlalchemy_url(database_url), pool_size=1, max_overflow=0)
    try:
        db = DatabaseAccess(one_connection, "ledger")
        reconciliation.reconcile(db, lambda: MirrorContents("paysys.ledger"), wait_s=0)
        ledger = worker_factory(LedgerService, db=db)
        [result] = ledger.post([deposit(open_account(ledger), 5)])
        assert result["status"] == "posted"
    finally:
        one_connection.dispose()
