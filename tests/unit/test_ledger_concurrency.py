"""Postings under concurrency, against a real PostgreSQL: each greenthread has its own
connection (psycopg2 is cooperative under eventlet here, see conftest), so the row locks,
the primary key of postings and PostgreSQL's deadlock detector all really take part."""
import random

import eventlet
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from services.ledger import batches
from services.ledger.entries import entries
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from tests.support.concurrency import run_together
from tests.support.ledger import (
    books, count, deposit, new_id, open_account, posting, rejected, set_overdraft_limit,
    stored_result,
)
from tests.support.ledger_locks import (
    GatedDatabase, PausedDatabase, is_lock, reads_postings, wait_for_a_lock_wait,
)


def service_on(database):
    return worker_factory(LedgerService, db=database)


@pytest.fixture
def ledger(engine):
    return service_on(DatabaseAccess(engine, "ledger"))


def funded(ledger, *amounts):
    accounts = [open_account(ledger) for _ in amounts]
    results = ledger.post([deposit(account, amount)
                           for account, amount in zip(accounts, amounts) if amount])
    assert all(result["status"] == "posted" for result in results)
    return accounts


# --- exactly once ------------------------------------------------------------------------


def test_two_posts_of_one_transaction_started_together_post_it_once(engine, ledger):
    # Both get as far as the row locks; the one that waited for them finds the other's
    # posting under them and answers it. (Funded first, so that the settlement row exists:
    # two batches creating it would already queue on its insert.)
    [account] = funded(ledger, 5)
    one = deposit(account, 700)
    gate = GatedDatabase(engine, parties=2, before=is_lock)
    outcomes = run_together(lambda: service_on(gate).post([one]),
                            lambda: service_on(gate).post([one]))
    assert all(isinstance(outcome, list) for outcome in outcomes), outcomes
    [first], [second] = outcomes
    assert first["status"] == "posted" and second == first
    assert ledger.balances([account])[account]["balance"] == 705
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2
    assert stored_result(engine, one["transaction_id"]) == first


def test_one_transaction_id_raced_for_other_accounts_posts_once(engine, ledger):
    # No row lock is shared: both batches find the transaction unposted, and the primary
    # key of postings decides. The loser runs again and answers the winner's posting.
    alice, bob, carol, dave = funded(ledger, 100, 0, 100, 0)
    transaction_id = new_id()
    first, second = (posting(alice, bob, 10, transaction_id=transaction_id),
                     posting(carol, dave, 20, transaction_id=transaction_id))
    gate = GatedDatabase(engine, parties=2, after=reads_postings)
    outcomes = run_together(lambda: service_on(gate).post([first]),
                            lambda: service_on(gate).post([second]))
    assert all(isinstance(outcome, list) for outcome in outcomes), outcomes
    [one], [other] = outcomes
    assert one["status"] == "posted" and other == one
    assert count(engine, entries, transaction_id=transaction_id) == 2
    balances = {account: money["balance"] for account, money in
                ledger.balances([alice, bob, carol, dave]).items()}
    assert balances in ({alice: 90, bob: 10, carol: 100, dave: 0},
                        {alice: 100, bob: 0, carol: 80, dave: 20})


def test_many_concurrent_posts_of_one_transaction_post_it_once(engine, ledger):
    alice, bob = funded(ledger, 100, 0)
    transfer = posting(alice, bob, 100)
    outcomes = run_together(*[
        lambda: service_on(DatabaseAccess(engine, "ledger")).post([transfer])
        for _ in range(8)])
    assert all(isinstance(outcome, list) for outcome in outcomes), outcomes
    results = [outcome[0] for outcome in outcomes]
    assert results[0]["status"] == "posted" and all(r == results[0] for r in results)
    assert ledger.balances([alice, bob]) == {
        alice: {"balance": 0, "held": 0}, bob: {"balance": 100, "held": 0}}
    assert count(engine, entries, transaction_id=transfer["transaction_id"]) == 2


# --- locks -------------------------------------------------------------------------------


def test_concurrent_transfers_in_opposite_directions_never_deadlock(engine, ledger, monkeypatch):
    # No retry: a deadlock would surface as an error instead of being run again.
    monkeypatch.setattr(batches, "ATTEMPTS", 1)
    funding = 100_000
    alice, bob, carol = funded(ledger, funding, funding, funding)
    chooser = random.Random(20261125)
    pairs = [(alice, bob), (bob, alice), (carol, alice), (bob, carol), (alice, carol)]

    def batches_of_one_worker():
        # Each batch names the accounts in another order, as real batches would.
        return [
            [posting(*chooser.choice(pairs), chooser.randint(1, 100))
             for _ in range(chooser.randint(1, 4))]
            for _ in range(10)
        ]

    work = [batches_of_one_worker() for _ in range(8)]

    def worker(batch_list):
        service = service_on(DatabaseAccess(engine, "ledger"))
        return [service.post(batch) for batch in batch_list]

    outcomes = run_together(*[lambda b=b: worker(b) for b in work])
    errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert not errors, errors

    expected = {alice: funding, bob: funding, carol: funding}
    for batch_list, answers in zip(work, outcomes):
        for batch, results in zip(batch_list, answers):
            for given, result in zip(batch, results):
                assert result["status"] == "posted", result  # funds never ran short
                expected[given["debit_account_id"]] -= given["amount"]
                expected[given["credit_account_id"]] += given["amount"]
    balances = ledger.balances([alice, bob, carol])
    assert {account: balances[account]["balance"] for account in expected} == expected
    assert sum(expected.values()) == 3 * funding

    # Each account's history is a gapless chain: every balance_after follows from the last.
    with engine.connect() as connection:
        for account in expected:
            rows = connection.execute(
                select(entries).where(entries.c.account_id == account)
                .order_by(entries.c.account_seq)).all()
            assert [row.account_seq for row in rows] == list(range(1, len(rows) + 1))
            running = 0
            for row in rows:
                running += row.amount
                assert row.balance_after == running
            assert running == expected[account]
    totals = books(engine)
    assert all(sums["entries_sum"] == 0 for sums in totals["currencies"].values())
    assert not {d["account_id"] for d in totals["discrepancies"]} & set(expected)


def test_concurrent_spending_of_the_same_money_never_overdraws(engine, ledger):
    for _ in range(3):
        [alice] = funded(ledger, 100)
        payees = [open_account(ledger) for _ in range(8)]
        outcomes = run_together(*[
            lambda payee=payee: service_on(DatabaseAccess(engine, "ledger")).post(
                [posting(alice, payee, 30)])
            for payee in payees])
        statuses = [outcome[0]["status"] for outcome in outcomes]
        assert statuses.count("posted") == 3, outcomes
        assert ledger.balances([alice])[alice]["balance"] == 10


# --- a freeze racing a posting ------------------------------------------------------------


def test_a_posting_waits_for_a_freeze_holding_the_lock_and_is_then_refused(engine, ledger):
    alice, bob = funded(ledger, 100, 0)
    freezing = PausedDatabase(engine, after=is_lock)
    freeze = eventlet.spawn(service_on(freezing).set_status, alice, "frozen")
    freezing.wait_until_paused()  # the freeze holds alice's lock, not yet committed
    transfer = posting(alice, bob, 30)
    moving = eventlet.spawn(service_on(DatabaseAccess(engine, "ledger")).post, [transfer])
    wait_for_a_lock_wait(engine)
    assert not moving.dead  # it waits for the freeze
    freezing.resume()
    assert freeze.wait()["status"] == "frozen"
    assert moving.wait() == [rejected(transfer, "account_frozen")]
    assert ledger.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    assert count(engine, entries, transaction_id=transfer["transaction_id"]) == 0


def test_a_freeze_waits_for_a_posting_holding_the_lock_and_sees_its_money(engine, ledger):
    alice, bob = funded(ledger, 100, 0)
    transfer = posting(alice, bob, 30)
    moving_db = PausedDatabase(engine, after=is_lock)
    moving = eventlet.spawn(service_on(moving_db).post, [transfer])
    moving_db.wait_until_paused()  # the posting holds alice's lock, not yet committed
    freeze = eventlet.spawn(service_on(DatabaseAccess(engine, "ledger")).set_status,
                            alice, "frozen")
    wait_for_a_lock_wait(engine)
    assert not freeze.dead  # it waits for the posting
    moving_db.resume()
    [result] = moving.wait()
    assert result["status"] == "posted"
    frozen = freeze.wait()
    # The freeze came after the posting: its view of the account has the money moved.
    assert (frozen["status"], frozen["version"], frozen["balance"]) == ("frozen", 2, 70)
    later = posting(alice, bob, 1)
    assert ledger.post([later]) == [rejected(later, "account_frozen")]


@pytest.mark.parametrize("round", range(6))
def test_a_freeze_and_a_posting_racing_never_let_the_posting_land_after_the_freeze(
        engine, ledger, round):
    # Either the posting commits before the freeze takes the lock (the freeze's view of
    # the account then shows its money moved) or it sees the freeze and is refused.
    alice, bob = funded(ledger, 100, 0)
    transfer = posting(alice, bob, 30, expected_versions={alice: 1, bob: 1})
    calls = [lambda: service_on(DatabaseAccess(engine, "ledger")).post([transfer]),
             lambda: service_on(DatabaseAccess(engine, "ledger")).set_status(alice, "frozen")]
    if round % 2:
        calls.reverse()
    outcomes = run_together(*calls)
    if round % 2:
        outcomes.reverse()
    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    [result], frozen = outcomes
    assert (frozen["status"], frozen["version"]) == ("frozen", 2)
    balances = ledger.balances([alice, bob])
    if result["status"] == "posted":
        assert frozen["balance"] == 70
        assert balances == {alice: {"balance": 70, "held": 0}, bob: {"balance": 30, "held": 0}}
    else:
        assert result == rejected(transfer, "account_frozen")
        assert frozen["balance"] == 100
        assert balances == {alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
        assert count(engine, entries, transaction_id=transfer["transaction_id"]) == 0


@pytest.mark.parametrize("round", range(4))
def test_a_lowered_limit_racing_a_debit_never_lets_the_debit_use_the_old_limit(
        engine, ledger, round):
    # The same lock orders a change of overdraft limit with the postings.
    alice, bob = funded(ledger, 0, 0)
    set_overdraft_limit(ledger, alice, 100)
    spend = posting(alice, bob, 60)
    calls = [lambda: service_on(DatabaseAccess(engine, "ledger")).post([spend]),
             lambda: set_overdraft_limit(service_on(DatabaseAccess(engine, "ledger")), alice, 0)]
    if round % 2:
        calls.reverse()
    outcomes = run_together(*calls)
    if round % 2:
        outcomes.reverse()
    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    [result], lowered = outcomes
    assert lowered["overdraft_limit"] == 0
    balance = ledger.balances([alice])[alice]["balance"]
    if result["status"] == "posted":
        # Debited on the old limit, before the change took the lock: the change saw it.
        assert balance == lowered["balance"] == -60
    else:
        assert result == rejected(spend, "insufficient_funds")
        assert balance == lowered["balance"] == 0
