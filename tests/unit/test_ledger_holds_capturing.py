"""Capturing authorization holds in the ledger against a real PostgreSQL: a capture
moves (part of) the held money and frees the rest, exactly once; a capture above its hold,
beyond the money, from a frozen account, in another currency or of a hold not active is
refused and keeps the hold."""
import pytest
from sqlalchemy.exc import IntegrityError

from services.ledger import rules
from services.ledger.entries import entries
from services.ledger.postings import postings
from tests.support.ledger import (  # noqa: F401 - fixtures
    authorization,
    capture,
    count,
    deposit,
    funded,
    hold_row,
    new_id,
    post,
    rejected,
    service,
    set_overdraft_limit,
    state,
    stored_result,
    withdrawal,
)


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
