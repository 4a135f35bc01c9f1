"""Atomic batches in the ledger, against a real PostgreSQL: all of a batch posts or none
of it (the others answered batch_aborted), and what is in the books already replays as it
was, in a batch that is aborted too."""
from services.ledger.entries import entries
from tests.support.ledger import (  # noqa: F401 - fixtures
    USD_SETTLEMENT,
    balance_of,
    count,
    deposit,
    nothing_posted,
    open_account,
    post,
    posting,
    rejected,
    row_of,
    service,
    stored_result,
    withdrawal,
)


# --- atomic batches ----------------------------------------------------------------------


def test_an_atomic_batch_with_one_refused_posting_moves_nothing(service, engine):
    alice, bob, carol = (open_account(service) for _ in range(3))
    post(service, deposit(alice, 100))
    settlement_before = balance_of(service, USD_SETTLEMENT)
    batch = [deposit(bob, 50), posting(alice, bob, 30), posting(alice, carol, 500),
             withdrawal(bob, 10)]
    assert service.post(batch, atomic=True) == [
        rejected(batch[0], "batch_aborted"), rejected(batch[1], "batch_aborted"),
        rejected(batch[2], "insufficient_funds"), rejected(batch[3], "batch_aborted")]
    assert service.balances([alice, bob, carol, USD_SETTLEMENT]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0},
        carol: {"balance": 0, "held": 0},
        USD_SETTLEMENT: {"balance": settlement_before, "held": 0}}
    nothing_posted(engine, *batch)
    assert row_of(engine, alice).last_seq == 1 and row_of(engine, bob).last_seq == 0
    # Not atomic, the same batch posts what it can: the aborted left nothing behind.
    assert [r["status"] for r in service.post(batch)] == [
        "posted", "posted", "rejected", "posted"]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 70, "held": 0}, bob: {"balance": 70, "held": 0}}


def test_an_atomic_batch_with_a_malformed_posting_moves_nothing(service, engine):
    account = open_account(service)
    batch = [deposit(account, 50), deposit(account, 0)]
    assert service.post(batch, atomic=True) == [
        rejected(batch[0], "batch_aborted"), rejected(batch[1], "malformed_posting")]
    assert balance_of(service, account) == 0
    nothing_posted(engine, batch[0])


def test_an_atomic_batch_posts_whole_and_its_replay_answers_the_stored_results(
        service, engine):
    alice, bob = open_account(service), open_account(service)
    batch = [deposit(alice, 100), posting(alice, bob, 60), withdrawal(bob, 20)]
    first = service.post(batch, atomic=True)
    assert [r["status"] for r in first] == ["posted"] * 3
    assert len({r["posted_at"] for r in first}) == 1
    # Redelivered, it answers what it answered and moves nothing (alice could not pay 60
    # again).
    assert service.post(batch, atomic=True) == first
    assert service.post(batch) == first
    assert [stored_result(engine, one["transaction_id"]) for one in batch] == first
    assert service.balances([alice, bob]) == {
        alice: {"balance": 40, "held": 0}, bob: {"balance": 40, "held": 0}}
    for one in batch:
        assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


def test_replays_stand_as_they_were_in_an_atomic_batch_that_is_aborted(service, engine):
    alice, bob = open_account(service), open_account(service)
    done = deposit(alice, 100)
    first = post(service, done)
    fresh, too_much = posting(alice, bob, 10), posting(alice, bob, 1_000)
    assert service.post([done, fresh, too_much], atomic=True) == [
        first, rejected(fresh, "batch_aborted"), rejected(too_much, "insufficient_funds")]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    nothing_posted(engine, fresh, too_much)
    assert count(engine, entries, transaction_id=done["transaction_id"]) == 2


def test_replays_stand_as_they_were_in_an_atomic_batch_with_a_malformed_posting(
        service, engine):
    # Answering batch_aborted for a posting that is in the books would have its
    # transaction marked failed while its money moved.
    alice, bob = open_account(service), open_account(service)
    done = deposit(alice, 100)
    first = post(service, done)
    fresh, broken = posting(alice, bob, 10), posting(alice, bob, 0)
    assert service.post([done, fresh, broken], atomic=True) == [
        first, rejected(fresh, "batch_aborted"), rejected(broken, "malformed_posting")]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    nothing_posted(engine, fresh)
