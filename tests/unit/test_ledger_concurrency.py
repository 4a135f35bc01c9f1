"""Postings under concurrency, against a real PostgreSQL: each greenthread has its own
connection (psycopg2 is cooperative under eventlet here, see conftest), so the row locks,
the primary key of postings and PostgreSQL's deadlock detector all really take part."""
import random
import threading

from nameko.testing.services import worker_factory
from sqlalchemy import select

from services.ledger import batches
from services.ledger.entries import entries
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from tests.unit.test_ledger_postings import count, deposit, new_id, posting
from tests.support.concurrency import GatedConnection, run_together


class GatedDatabase(DatabaseAccess):
    """Holds each of the first ``parties`` batches after its first statement (the read of
    what is posted already) until all of them have made it: all then believe the
    transaction unposted and race for it."""

    def __init__(self, engine, parties):
        super().__init__(engine, "ledger")
        self.barrier = threading.Barrier(parties, timeout=10)

    def transaction(self):
        database = self

        class Gated:
            def __enter__(self):
                self.context = DatabaseAccess.transaction(database)
                return GatedConnection(self.context.__enter__(), database.barrier)

            def __exit__(self, *exc_info):
                return self.context.__exit__(*exc_info)

        return Gated()


def service_on(database):
    return worker_factory(LedgerService, db=database)


def test_two_concurrent_posts_of_one_transaction_post_it_once(engine):
    account = new_id()
    one = deposit(account, 700)
    gate = GatedDatabase(engine, parties=2)
    outcomes = run_together(lambda: service_on(gate).post([one]),
                            lambda: service_on(gate).post([one]))
    assert all(isinstance(outcome, list) for outcome in outcomes), outcomes
    [first], [second] = outcomes
    assert first["status"] == "posted" and second == first
    ledger = service_on(DatabaseAccess(engine, "ledger"))
    assert ledger.balances([account])[account]["balance"] == 700
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2
    assert ledger.posting(one["transaction_id"]) == first


def test_many_concurrent_posts_of_one_transaction_post_it_once(engine):
    alice, bob = new_id(), new_id()
    ledger = service_on(DatabaseAccess(engine, "ledger"))
    ledger.post([deposit(alice, 100)])
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


def test_concurrent_transfers_in_opposite_directions_never_deadlock(engine, monkeypatch):
    # No retry: a deadlock would surface as an error instead of being run again.
    monkeypatch.setattr(batches, "ATTEMPTS", 1)
    alice, bob, carol = new_id(), new_id(), new_id()
    ledger = service_on(DatabaseAccess(engine, "ledger"))
    funding = 100_000
    ledger.post([deposit(alice, funding), deposit(bob, funding), deposit(carol, funding)])
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
    totals = ledger.totals()
    assert all(sums["entries_sum"] == 0 for sums in totals["currencies"].values())
    assert not {d["account_id"] for d in totals["discrepancies"]} & set(expected)


def test_concurrent_spending_of_the_same_money_never_overdraws(engine):
    for _ in range(3):
        alice = new_id()
        ledger = service_on(DatabaseAccess(engine, "ledger"))
        ledger.post([deposit(alice, 100)])
        outcomes = run_together(*[
            lambda: service_on(DatabaseAccess(engine, "ledger")).post(
                [posting(alice, new_id(), 30)])
            for _ in range(8)])
        statuses = [outcome[0]["status"] for outcome in outcomes]
        assert statuses.count("posted") == 3, outcomes
        assert ledger.balances([alice])[alice]["balance"] == 10
