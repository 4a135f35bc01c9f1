"""Authorization holds in the ledger against a real, migrated PostgreSQL database: a hold
lowers the available money (balance - held) but not the balance, a capture moves (part of)
it and frees the rest, a release frees it; each exactly once, a hold settles once."""
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from services.ledger import rules
from services.ledger.entries import entries
from services.ledger.holds import holds
from services.ledger.postings import postings
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from tests.support.concurrency import run_together
from tests.unit.test_ledger_postings import (
    count, deposit, new_id, open_account, post, posting, rejected, set_overdraft_limit,
    stored_result, withdrawal,
)


@pytest.fixture
def service(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


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


# --- capturing ---------------------------------------------------------------------------


def test_a_full_capture_moves_the_money_and_clears_the_hold(service, engine):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 80)
    post(service, one)
    taking = capture(payer, merchant, 80, one["transaction_id"])
    result = post(service, taking)
    assert result["status"] == "posted"
    assert [(e["account_id"], e["amount"], e["balance_after"]) for e in result["entries"]] == [
        (payer, -80, 20), (merchant, 80, 80)]
    assert state(service, payer, merchant) == [
        {"balance": 20, "held": 0}, {"balance": 80, "held": 0}]
    row = hold_row(engine, one["transaction_id"])
    assert row.status == "captured" and row.settled_by == taking["transaction_id"]
    assert row.settled_at is not None
    # Exactly once, like any posting.
    assert post(service, taking) == result
    assert stored_result(engine, taking["transaction_id"]) == result
    assert state(service, payer, merchant) == [
        {"balance": 20, "held": 0}, {"balance": 80, "held": 0}]


def test_a_partial_capture_moves_part_and_releases_the_rest(service, engine):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 80)
    post(service, one)
    assert post(service, capture(payer, merchant, 30, one["transaction_id"]))["status"] == "posted"
    assert state(service, payer, merchant) == [
        {"balance": 70, "held": 0}, {"balance": 30, "held": 0}]
    # The rest is available again.
    assert post(service, withdrawal(payer, 70))["status"] == "posted"


def test_the_capture_counts_the_money_held_for_it(service):
    # Everything available is held: the capture still goes through, the hold being its own.
    payer, merchant = funded(service, 50)
    one = authorization(payer, merchant, 50)
    other = authorization(payer, merchant, 1)
    assert post(service, one)["status"] == "held"
    assert post(service, other)["reason"] == "insufficient_funds"
    assert post(service, capture(payer, merchant, 50, one["transaction_id"]))["status"] == "posted"
    assert state(service, payer, merchant) == [
        {"balance": 0, "held": 0}, {"balance": 50, "held": 0}]


def test_a_capture_beyond_the_money_after_the_hold_is_rejected_and_keeps_the_hold(
        service, engine, monkeypatch):
    # The balance fell below the hold (the overdraft limit it was placed on lowered since):
    # the capture is refused as a whole, the hold stays.
    payer, merchant = funded(service, 100)
    set_overdraft_limit(service, payer, 50)
    one = authorization(payer, merchant, 100)
    post(service, one)
    assert post(service, withdrawal(payer, 50))["status"] == "posted"
    assert state(service, payer) == [{"balance": 50, "held": 100}]
    set_overdraft_limit(service, payer, 0)
    taking = capture(payer, merchant, 100, one["transaction_id"])
    assert post(service, taking)["reason"] == "insufficient_funds"
    assert hold_row(engine, one["transaction_id"]).status == "held"
    assert state(service, payer) == [{"balance": 50, "held": 100}]
    # Even when only the database's constraint is there to refuse it.
    monkeypatch.setattr(rules, "available_balance", lambda balance, held, limit: 10**18)
    with pytest.raises(IntegrityError, match="balance_within_overdraft"):
        post(service, taking)
    assert hold_row(engine, one["transaction_id"]).status == "held"
    assert count(engine, postings, transaction_id=taking["transaction_id"]) == 0
    assert state(service, payer, merchant) == [
        {"balance": 50, "held": 100}, {"balance": 0, "held": 0}]


def test_a_capture_from_a_frozen_account_is_refused_and_keeps_the_hold(service, engine):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 60)
    post(service, one)
    service.set_status(payer, "frozen")
    taking = capture(payer, merchant, 60, one["transaction_id"])
    assert post(service, taking) == rejected(taking, "account_frozen")
    assert hold_row(engine, one["transaction_id"]).status == "held"
    assert state(service, payer, merchant) == [
        {"balance": 100, "held": 60}, {"balance": 0, "held": 0}]
    service.set_status(payer, "active")
    assert post(service, taking)["status"] == "posted"


def test_a_capture_above_the_hold_is_rejected(service, engine):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 40)
    post(service, one)
    taking = capture(payer, merchant, 41, one["transaction_id"])
    assert post(service, taking) == {"transaction_id": taking["transaction_id"],
                                     "status": "rejected", "reason": "amount_exceeds_hold"}
    assert hold_row(engine, one["transaction_id"]).status == "held"
    assert state(service, payer, merchant) == [
        {"balance": 100, "held": 40}, {"balance": 0, "held": 0}]
    # A rejected capture leaves nothing: the same transaction may capture later.
    taking["amount"] = 40
    assert post(service, taking)["status"] == "posted"


def test_captures_of_unknown_or_foreign_holds_are_rejected(service):
    payer, merchant = funded(service, 100)
    assert post(service, capture(payer, merchant, 10, new_id()))["reason"] == "hold_not_found"
    other, _ = funded(service, 100)
    theirs = authorization(other, merchant, 10)
    post(service, theirs)
    result = post(service, capture(payer, merchant, 10, theirs["transaction_id"]))
    assert result["reason"] == "hold_not_found"
    assert state(service, payer, other, merchant) == [
        {"balance": 100, "held": 0}, {"balance": 100, "held": 10}, {"balance": 0, "held": 0}]


def test_a_capture_in_another_currency_than_its_hold_is_refused_and_keeps_the_hold(
        service, engine):
    payer, merchant = funded(service, 100)
    assert post(service, deposit(merchant, 1))["status"] == "posted"  # a USD account too
    one = authorization(payer, merchant, 60)
    post(service, one)
    taking = capture(payer, merchant, 60, one["transaction_id"])
    taking["currency"] = "EUR"
    assert post(service, taking) == {"transaction_id": taking["transaction_id"],
                                     "status": "rejected", "reason": "currency_mismatch"}
    # Nothing moved, nothing settled: the hold still holds.
    assert hold_row(engine, one["transaction_id"]).status == "held"
    assert state(service, payer, merchant) == [
        {"balance": 100, "held": 60}, {"balance": 1, "held": 0}]
    assert count(engine, entries, transaction_id=taking["transaction_id"]) == 0
    assert count(engine, postings, transaction_id=taking["transaction_id"]) == 0
    # In its own currency the same capture goes through.
    taking["currency"] = "USD"
    assert post(service, taking)["status"] == "posted"
    assert state(service, payer, merchant) == [
        {"balance": 40, "held": 0}, {"balance": 61, "held": 0}]


def test_a_captured_or_released_hold_cannot_be_captured(service):
    payer, merchant = funded(service, 100)
    captured, released = authorization(payer, merchant, 10), authorization(payer, merchant, 20)
    post(service, captured)
    post(service, released)
    assert post(service, capture(payer, merchant, 5, captured["transaction_id"]))["status"] \
        == "posted"
    assert service.release_hold(released["transaction_id"])["status"] == "released"
    for hold_id in (captured["transaction_id"], released["transaction_id"]):
        result = post(service, capture(payer, merchant, 5, hold_id))
        assert result["reason"] == "hold_not_active"
    assert state(service, payer, merchant) == [
        {"balance": 95, "held": 0}, {"balance": 5, "held": 0}]


def test_two_captures_of_one_hold_in_one_batch_capture_once(service):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 60)
    post(service, one)
    first, second = service.post([capture(payer, merchant, 60, one["transaction_id"]),
                                  capture(payer, merchant, 60, one["transaction_id"])])
    assert first["status"] == "posted" and second["reason"] == "hold_not_active"
    assert state(service, payer, merchant) == [
        {"balance": 40, "held": 0}, {"balance": 60, "held": 0}]


def test_hold_and_capture_in_one_batch(service):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 60)
    held, captured = service.post([one, capture(payer, merchant, 60, one["transaction_id"])])
    assert held["status"] == "held" and captured["status"] == "posted"
    assert state(service, payer, merchant) == [
        {"balance": 40, "held": 0}, {"balance": 60, "held": 0}]


def test_an_aborted_atomic_batch_places_and_captures_no_hold(service, engine):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 60)
    post(service, one)
    placing = authorization(payer, merchant, 40)
    taking = capture(payer, merchant, 60, one["transaction_id"])
    too_much = withdrawal(payer, 1_000)
    assert service.post([placing, taking, too_much], atomic=True) == [
        rejected(placing, "batch_aborted"), rejected(taking, "batch_aborted"),
        rejected(too_much, "insufficient_funds")]
    assert hold_row(engine, placing["transaction_id"]) is None
    assert hold_row(engine, one["transaction_id"]).status == "held"
    assert count(engine, postings, transaction_id=taking["transaction_id"]) == 0
    assert state(service, payer, merchant) == [
        {"balance": 100, "held": 60}, {"balance": 0, "held": 0}]


# --- releasing ---------------------------------------------------------------------------


def test_a_release_frees_the_hold_and_is_idempotent(service, engine):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 70)
    post(service, one)
    hold_id = one["transaction_id"]
    assert service.release_hold(hold_id) == {"transaction_id": hold_id, "status": "released"}
    assert state(service, payer, merchant) == [
        {"balance": 100, "held": 0}, {"balance": 0, "held": 0}]
    row = hold_row(engine, hold_id)
    assert row.status == "released" and row.settled_at is not None and row.settled_by is None
    assert service.release_hold(hold_id) == {"transaction_id": hold_id, "status": "released"}
    assert service.release_hold(hold_id.upper())["status"] == "released"
    assert state(service, payer) == [{"balance": 100, "held": 0}]
    assert post(service, withdrawal(payer, 100))["status"] == "posted"


def test_releasing_a_captured_hold_answers_captured_and_frees_nothing(service):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 70)
    post(service, one)
    post(service, authorization(payer, merchant, 30))
    post(service, capture(payer, merchant, 70, one["transaction_id"]))
    assert service.release_hold(one["transaction_id"]) == {
        "transaction_id": one["transaction_id"], "status": "captured"}
    assert state(service, payer) == [{"balance": 30, "held": 30}]


def test_releasing_no_hold_answers_unknown(service):
    assert service.release_hold(new_id())["status"] == "unknown"
    assert service.release_hold("not-a-uuid")["status"] == "unknown"
    assert service.release_hold(None)["status"] == "unknown"


# --- settling once -----------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE ledger.holds SET status = 'held', settled_at = NULL, settled_by = NULL"
    " WHERE transaction_id = :t",
    "UPDATE ledger.holds SET status = 'captured', settled_by = gen_random_uuid()"
    " WHERE transaction_id = :t",
    "UPDATE ledger.holds SET amount = 1 WHERE transaction_id = :t",
    "DELETE FROM ledger.holds WHERE transaction_id = :t",
    "TRUNCATE ledger.holds",
])
def test_a_settled_hold_cannot_change_again(service, engine, statement):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 70)
    post(service, one)
    service.release_hold(one["transaction_id"])
    with pytest.raises(IntegrityError, match="immutable"), engine.begin() as connection:
        connection.execute(text(statement), {"t": one["transaction_id"]})
    assert hold_row(engine, one["transaction_id"]).status == "released"


@pytest.mark.parametrize("statement", [
    "UPDATE ledger.holds SET amount = 1 WHERE transaction_id = :t",
    "UPDATE ledger.holds SET account_id = gen_random_uuid() WHERE transaction_id = :t",
    "DELETE FROM ledger.holds WHERE transaction_id = :t",
])
def test_an_active_hold_changes_only_by_settling(service, engine, statement):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 70)
    post(service, one)
    with pytest.raises(IntegrityError, match="immutable"), engine.begin() as connection:
        connection.execute(text(statement), {"t": one["transaction_id"]})
    assert hold_row(engine, one["transaction_id"]).amount == 70


# --- races -------------------------------------------------------------------------------


@pytest.mark.parametrize("round", range(5))
def test_a_capture_and_a_release_racing_settle_the_hold_once(engine, round):
    def ledger():
        return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))

    service = ledger()
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 80)
    post(service, one)
    hold_id = one["transaction_id"]
    taking = capture(payer, merchant, 50, hold_id)
    calls = [lambda: ledger().post([taking]), lambda: ledger().release_hold(hold_id)]
    if round % 2:
        calls.reverse()
    outcomes = run_together(*calls)
    if round % 2:
        outcomes.reverse()
    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    [captured], released = outcomes
    row = hold_row(engine, hold_id)
    if captured["status"] == "posted":
        assert released["status"] == "captured" and row.status == "captured"
        assert state(service, payer, merchant) == [
            {"balance": 50, "held": 0}, {"balance": 50, "held": 0}]
    else:
        assert captured["reason"] == "hold_not_active"
        assert released["status"] == "released" and row.status == "released"
        assert state(service, payer, merchant) == [
            {"balance": 100, "held": 0}, {"balance": 0, "held": 0}]


def test_many_captures_and_releases_racing_settle_the_hold_once(engine):
    def ledger():
        return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))

    service = ledger()
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 80)
    post(service, one)
    hold_id = one["transaction_id"]
    calls = []
    for _ in range(4):
        calls.append(lambda: ledger().post([capture(payer, merchant, 80, hold_id)])[0])
        calls.append(lambda: ledger().release_hold(hold_id))
    outcomes = run_together(*calls)
    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    wins = [o for o in outcomes[0::2] if o["status"] == "posted"] + \
        [o for o in outcomes[1::2] if o["status"] == "released"]
    row = hold_row(engine, hold_id)
    assert row.status in ("captured", "released")
    # Every release answers the one outcome; at most one capture posted.
    assert all(o["status"] == row.status for o in outcomes[1::2])
    assert len([o for o in outcomes[0::2] if o["status"] == "posted"]) \
        == (1 if row.status == "captured" else 0)
    assert wins
    [payer_state] = state(service, payer)
    assert payer_state["held"] == 0
    assert payer_state["balance"] == (20 if row.status == "captured" else 100)


def test_a_capture_and_a_release_that_both_saw_the_hold_active_settle_it_once(engine):
    # Held together after their first statement: the release has read the hold as held
    # (without a lock), the capture has locked the accounts. The balances row lock and
    # the conditional settlement decide.
    from tests.unit.test_ledger_concurrency import GatedDatabase

    service = worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 80)
    post(service, one)
    hold_id = one["transaction_id"]
    gate = GatedDatabase(engine, parties=2)
    outcomes = run_together(
        lambda: worker_factory(LedgerService, db=gate).post(
            [capture(payer, merchant, 80, hold_id)]),
        lambda: worker_factory(LedgerService, db=gate).release_hold(hold_id))
    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    [captured], released = outcomes
    status = hold_row(engine, hold_id).status
    assert released["status"] == status
    assert (captured["status"] == "posted") == (status == "captured")
    [payer_state] = state(service, payer)
    assert payer_state == {"balance": 20 if status == "captured" else 100, "held": 0}
