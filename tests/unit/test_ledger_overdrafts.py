"""Insufficient funds and overdraft limits in the ledger, against a real PostgreSQL: a
debit beyond the available money (balance - held + the account's own limit) is refused by
the rules, and by the balances row's CHECK constraint again when the rules let one through."""
import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from services.ledger import balances as balance_records
from services.ledger import rules
from services.ledger.balances import balances
from tests.support.ledger import (  # noqa: F401 - fixtures
    balance_of,
    deposit,
    entries_of,
    new_id,
    nothing_posted,
    open_account,
    post,
    posting,
    rejected,
    row_of,
    service,
    set_overdraft_limit,
    stored_result,
    withdrawal,
)


# --- insufficient funds and overdrafts --------------------------------------------------


def test_insufficient_funds_are_rejected_and_nothing_moves(service, engine):
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(alice, 100))
    too_much = posting(alice, bob, 101)
    assert post(service, too_much) == rejected(too_much, "insufficient_funds")
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    nothing_posted(engine, too_much)
    assert row_of(engine, alice).last_seq == 1
    assert stored_result(engine, too_much["transaction_id"]) is None
    # Exactly the balance is fine.
    assert post(service, posting(alice, bob, 100))["status"] == "posted"
    assert balance_of(service, alice) == 0


def test_a_new_account_has_nothing_to_withdraw(service):
    assert post(service, withdrawal(open_account(service), 1))["reason"] == (
        "insufficient_funds")


def test_held_money_cannot_be_spent(service, engine):
    account = open_account(service)
    post(service, deposit(account, 100))
    with engine.begin() as connection:
        connection.execute(update(balances).where(balances.c.account_id == account).values(held=60))
    assert post(service, withdrawal(account, 41))["reason"] == "insufficient_funds"
    assert post(service, withdrawal(account, 40))["status"] == "posted"
    assert service.balances([account])[account] == {"balance": 60, "held": 60}


def test_an_overdraft_limit_allows_going_negative_down_to_minus_the_limit(service, engine):
    account = open_account(service, overdraft_limit=500)
    post(service, deposit(account, 100))
    result = post(service, withdrawal(account, 600))
    assert result["status"] == "posted" and result["entries"][0]["balance_after"] == -500
    assert row_of(engine, account).overdraft_limit == 500
    assert post(service, withdrawal(account, 1))["reason"] == "insufficient_funds"
    assert balance_of(service, account) == -500
    # The account's limit raised: the next debit may use it.
    set_overdraft_limit(service, account, 501)
    assert post(service, withdrawal(account, 1))["status"] == "posted"
    assert balance_of(service, account) == -501
    # Lowered below the debt: further debits are refused, credits still arrive.
    set_overdraft_limit(service, account, 100)
    assert post(service, withdrawal(account, 1))["reason"] == "insufficient_funds"
    assert row_of(engine, account).overdraft_limit == 501  # the refused debit left the row
    assert post(service, deposit(account, 1))["status"] == "posted"
    assert balance_of(service, account) == -500
    assert service.get_account(account)["available_balance"] == -400


def test_without_an_overdraft_limit_an_account_never_goes_negative(service):
    account = open_account(service)
    post(service, deposit(account, 10))
    assert post(service, withdrawal(account, 11))["reason"] == "insufficient_funds"
    # A limit sent with the posting (the wire format before) is ignored: the account's own
    # limit counts, and an extra key makes no posting malformed.
    assert post(service, withdrawal(account, 11, debit_overdraft_limit=10**6))["reason"] == (
        "insufficient_funds")
    assert post(service, withdrawal(account, 10, debit_overdraft_limit=-1))["status"] == (
        "posted")
    assert balance_of(service, account) == 0


# --- the database's own guarantee ------------------------------------------------------


def test_the_constraint_refuses_an_overdraft_the_sql_layer_is_asked_for(engine):
    account = new_id()
    with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
        balance_records.ensure_rows(
            connection, [{"account_id": account, "currency": "USD", "is_settlement": False}])
        balance_records.apply(connection, account, -1)
    assert raised.value.orig.pgcode == "23514"  # check_violation
    assert raised.value.orig.diag.constraint_name == "balance_within_overdraft"
    assert row_of(engine, account) is None


def test_the_constraint_refuses_a_balance_set_too_low_directly(service, engine):
    account = open_account(service)
    post(service, deposit(account, 5))
    with pytest.raises(IntegrityError, match="balance_within_overdraft"), \
            engine.begin() as connection:
        connection.execute(text(
            "UPDATE ledger.balances SET balance = -1 WHERE account_id = :a"), {"a": account})
    with pytest.raises(IntegrityError, match="balance_within_overdraft"), \
            engine.begin() as connection:
        connection.execute(text(
            "UPDATE ledger.balances SET overdraft_limit = 10, balance = -11 WHERE account_id = :a"),
            {"a": account})
    assert balance_of(service, account) == 5


def test_the_constraint_refuses_a_batch_the_rules_let_an_overdraft_through(
        service, engine, monkeypatch):
    # The rules are the first guard, the balances row's CHECK the second. A batch writes
    # all its balances in one statement, so the CHECK refuses the batch as a whole:
    # nothing of it is written, not even the posting that was fine.
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(alice, 100))
    monkeypatch.setattr(rules, "available_balance", lambda balance, held, limit: 10**18)
    too_much, fine = posting(alice, bob, 150), posting(alice, bob, 30)
    with pytest.raises(IntegrityError) as raised:
        service.post([too_much, fine])
    assert raised.value.orig.diag.constraint_name == "balance_within_overdraft"
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    nothing_posted(engine, too_much, fine)
    assert [e.account_seq for e in entries_of(engine, alice)] == [1]
    monkeypatch.undo()
    assert [r["status"] for r in service.post([too_much, fine])] == ["rejected", "posted"]


def test_a_balance_beyond_bigint_rejects_that_posting_alone(service, engine):
    huge, other = open_account(service), open_account(service)
    with engine.begin() as connection:
        connection.execute(update(balances).where(balances.c.account_id == huge)
                           .values(balance=2**63 - 10))
    try:
        results = service.post([deposit(huge, 10**15), deposit(other, 10)])
        assert results[0]["status"] == "rejected" and results[0]["reason"] == "malformed_posting"
        assert results[1]["status"] == "posted"
        assert balance_of(service, huge) == 2**63 - 10
    finally:
        with engine.begin() as connection:  # it has no entries: keep the books reconcilable
            connection.execute(update(balances).where(balances.c.account_id == huge)
                               .values(balance=0))
