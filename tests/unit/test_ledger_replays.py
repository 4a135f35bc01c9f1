"""Exactly once in the ledger, against a real PostgreSQL: a transaction posted answers
every replay (in a later batch, twice in one, with other content, after a freeze) with its
stored result and moves nothing again; a replay racing its original is decided by the
primary key."""
from services.ledger import batches
from services.ledger.entries import entries
from services.ledger.outbox import outbox
from tests.support.ledger import (  # noqa: F401 - fixtures
    balance_of,
    count,
    deposit,
    open_account,
    post,
    posting,
    row_of,
    service,
    stored_result,
)


# --- exactly once ----------------------------------------------------------------------


def test_replaying_a_posted_transaction_answers_the_same_and_moves_nothing(service, engine):
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(alice, 100))
    transfer = posting(alice, bob, 100)
    first = post(service, transfer)
    assert first["status"] == "posted"
    # alice has nothing left: a second move would be refused, a replay is not.
    assert post(service, transfer) == first
    assert service.post([transfer, deposit(bob, 1), transfer])[0::2] == [first, first]
    assert stored_result(engine, transfer["transaction_id"]) == first
    assert service.balances([alice, bob]) == {
        alice: {"balance": 0, "held": 0}, bob: {"balance": 101, "held": 0}}
    assert count(engine, entries, transaction_id=transfer["transaction_id"]) == 2
    assert count(engine, outbox, transaction_id=transfer["transaction_id"]) == 2
    assert row_of(engine, alice).last_seq == 2


def test_a_posting_made_before_a_freeze_replays_as_it_was(service):
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(alice, 100))
    transfer = posting(alice, bob, 60, expected_versions={alice: 1})
    first = post(service, transfer)
    service.set_status(alice, "frozen")
    assert post(service, transfer) == first
    assert service.balances([alice, bob]) == {
        alice: {"balance": 40, "held": 0}, bob: {"balance": 60, "held": 0}}


def test_the_same_transaction_twice_in_one_batch_posts_once(service, engine):
    account = open_account(service)
    one = deposit(account, 40)
    results = service.post([one, dict(one)])
    assert results[0]["status"] == "posted" and results[1] == results[0]
    assert balance_of(service, account) == 40
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


def test_a_replay_with_other_content_still_answers_the_original(service):
    account = open_account(service)
    one = deposit(account, 40)
    first = post(service, one)
    assert post(service, dict(one, amount=999)) == first
    assert balance_of(service, account) == 40


def test_a_rejected_transaction_can_post_later(service):
    alice, bob = open_account(service), open_account(service)
    transfer = posting(alice, bob, 10)
    assert post(service, transfer)["reason"] == "insufficient_funds"
    post(service, deposit(alice, 10))
    assert post(service, transfer)["status"] == "posted"


def test_a_replay_racing_its_original_is_decided_by_the_primary_key(
        service, engine, monkeypatch):
    # As if the replay check had missed the original (a transaction id reused for other
    # accounts can race past it): the insert's primary key finds the original, the batch
    # runs again, and the check then answers it.
    account = open_account(service)
    one = deposit(account, 25)
    first = post(service, one)
    calls = []
    monkeypatch.setattr(batches.posting_records, "stored_results",
                        _blind_first_call(batches.posting_records.stored_results, calls))
    assert post(service, one) == first
    assert len(calls) == 2  # the batch ran again
    assert balance_of(service, account) == 25
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


def _blind_first_call(real, calls):
    def stored_results(connection, transaction_ids):
        calls.append(transaction_ids)
        return {} if len(calls) == 1 else real(connection, transaction_ids)

    return stored_results
