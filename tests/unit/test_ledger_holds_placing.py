"""Placing authorization holds in the ledger against a real, migrated PostgreSQL
database: a hold lowers the available money (balance - held) but not the balance, is
refused beyond the available money or where its capture could never land, and holds once
however often it is replayed."""
import pytest
from sqlalchemy.exc import IntegrityError

from services.ledger import rules
from services.ledger.entries import entries
from services.ledger.holds import holds
from services.ledger.postings import postings
from tests.support.ledger import (  # noqa: F401 - fixtures
    authorization,
    capture,
    count,
    funded,
    hold_row,
    new_id,
    open_account,
    post,
    rejected,
    service,
    set_overdraft_limit,
    state,
    withdrawal,
)


# --- placing a hold --------------------------------------------------------------------


def test_a_hold_lowers_available_money_but_not_the_balance(service, engine):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 70)
    assert post(service, one) == {
        "transaction_id": one["transaction_id"], "status": "held",
        "hold": {"account_id": payer, "amount": 70, "currency": "USD"}}
    assert state(service, payer, merchant) == [
        {"balance": 100, "held": 70}, {"balance": 0, "held": 0}]
    row = hold_row(engine, one["transaction_id"])
    assert (row.account_id, row.amount, row.currency, row.status) == (payer, 70, "USD", "held")
    assert row.settled_at is None and row.settled_by is None
    # No money moved: no entries, no postings row.
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 0
    assert count(engine, postings, transaction_id=one["transaction_id"]) == 0
    # What is held cannot be spent.
    assert post(service, withdrawal(payer, 31))["reason"] == "insufficient_funds"
    assert post(service, withdrawal(payer, 30))["status"] == "posted"
    assert state(service, payer) == [{"balance": 70, "held": 70}]


def test_a_hold_beyond_the_available_money_is_rejected(service, engine):
    payer, merchant = funded(service, 100)
    assert post(service, authorization(payer, merchant, 60))["status"] == "held"
    too_much = authorization(payer, merchant, 41)
    assert post(service, too_much) == {"transaction_id": too_much["transaction_id"],
                                       "status": "rejected", "reason": "insufficient_funds"}
    assert hold_row(engine, too_much["transaction_id"]) is None
    assert post(service, authorization(payer, merchant, 40))["status"] == "held"
    assert state(service, payer) == [{"balance": 100, "held": 100}]
    assert post(service, authorization(payer, merchant, 1))["reason"] == "insufficient_funds"
    # The account's overdraft limit counts as for any debit.
    set_overdraft_limit(service, payer, 5)
    assert post(service, authorization(payer, merchant, 5))["status"] == "held"
    assert state(service, payer) == [{"balance": 100, "held": 105}]
    assert service.get_account(payer)["available_balance"] == 0


def test_a_hold_on_a_frozen_account_is_refused(service, engine):
    payer, merchant = funded(service, 100)
    service.set_status(payer, "frozen")
    one = authorization(payer, merchant, 10)
    assert post(service, one) == rejected(one, "account_frozen")
    assert hold_row(engine, one["transaction_id"]) is None
    assert state(service, payer) == [{"balance": 100, "held": 0}]


@pytest.mark.parametrize("merchant_is", ["frozen", "unknown", "in another currency"])
def test_a_hold_for_a_merchant_who_cannot_be_paid_holds_nothing(service, engine, merchant_is):
    # Else the payer's money would be held for a capture that can never land.
    payer, merchant = funded(service, 100)
    if merchant_is == "frozen":
        service.set_status(merchant, "frozen")
    elif merchant_is == "unknown":
        merchant = new_id()
    else:
        merchant = open_account(service, currency="EUR")
    one = authorization(payer, merchant, 10)
    assert post(service, one)["status"] == "rejected"
    assert hold_row(engine, one["transaction_id"]) is None
    assert state(service, payer) == [{"balance": 100, "held": 0}]


def test_a_hold_on_an_account_nobody_opened_is_refused(service, engine):
    one = authorization(new_id(), open_account(service), 10)
    assert post(service, one) == rejected(one, "account_not_found")
    assert hold_row(engine, one["transaction_id"]) is None


def test_a_replayed_hold_holds_once(service, engine):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 30)
    first = post(service, one)
    assert post(service, one) == first
    assert service.post([one, one]) == [first, first]
    # A new hold replayed within one batch also holds once.
    two = authorization(payer, merchant, 20)
    second, again = service.post([two, two])
    assert second["status"] == "held" and again == second
    assert state(service, payer) == [{"balance": 100, "held": 50}]
    assert count(engine, holds, account_id=payer) == 2


def test_a_hold_replayed_after_its_capture_answers_its_first_result(service):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 30)
    first = post(service, one)
    assert post(service, capture(payer, merchant, 30, one["transaction_id"]))["status"] == "posted"
    assert post(service, one) == first
    assert state(service, payer) == [{"balance": 70, "held": 0}]


@pytest.mark.parametrize("change", [
    {"hold": "yes"},
    {"hold": 1},
    {"type": "transfer"},
    {"debit_account_id": None},  # the settlement account holds nothing
])
def test_malformed_holds_are_rejected(service, engine, change):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 10)
    one.update(change)
    assert post(service, one)["reason"] == "malformed_posting"
    assert hold_row(engine, one["transaction_id"]) is None


@pytest.mark.parametrize("change", [
    {"capture_of": "not-a-uuid"},
    {"capture_of": 7},
    {"type": "transfer"},
])
def test_malformed_captures_are_rejected(service, change):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 10)
    post(service, one)
    taking = capture(payer, merchant, 10, one["transaction_id"])
    taking.update(change)
    assert post(service, taking)["reason"] == "malformed_posting"
    assert state(service, payer) == [{"balance": 100, "held": 10}]


def test_the_constraint_refuses_over_holding_the_rules_let_through(
        service, engine, monkeypatch):
    # The balances row's CHECK behind the rules: it refuses the batch as a whole (its
    # balances are written in one statement), the hold that fitted included.
    payer, merchant = funded(service, 100)
    monkeypatch.setattr(rules, "available_balance", lambda balance, held, limit: 10**18)
    too_much, fine = authorization(payer, merchant, 101), authorization(payer, merchant, 100)
    with pytest.raises(IntegrityError) as raised:
        service.post([too_much, fine])
    assert raised.value.orig.diag.constraint_name == "balance_within_overdraft"
    assert hold_row(engine, too_much["transaction_id"]) is None
    assert hold_row(engine, fine["transaction_id"]) is None
    assert state(service, payer) == [{"balance": 100, "held": 0}]
    monkeypatch.undo()
    assert [r["status"] for r in service.post([too_much, fine])] == ["rejected", "held"]
    assert state(service, payer) == [{"balance": 100, "held": 100}]
