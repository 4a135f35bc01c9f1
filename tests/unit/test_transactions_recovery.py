"""The transactions service's recovery in-process: an approved transaction whose
posting was lost is posted once, one left undecided by a crash is failed or voted on again,
an approved atomic batch is posted whole, and a posting the ledger cannot take stalls only
itself."""
import uuid

import pytest
from sqlalchemy import text

from tests.support.ledger import stored_result
from tests.support.transactions import (  # noqa: F401 - fixtures
    Local,
    balance,
    batch,
    config,
    funded,
    steps,
    system,
    take_the_ledger_down,
    transfer,
)
from tests.support.workers import InProcessConsensus


def test_recovery_posts_an_approved_transaction_whose_posting_was_lost(system, funded, engine):
    owner, source, destination = funded
    ledger = take_the_ledger_down(system)
    transaction = transfer(system, owner, source, destination)
    assert transaction["status"] == "pending"  # approved, not posted
    system.workers["ledger"] = ledger
    with engine.begin() as connection:  # as if it had been approved a while ago
        connection.execute(text("UPDATE transactions.transactions SET decided_at = "
                                "decided_at - interval '1 minute' WHERE id = :id"),
                           {"id": transaction["id"]})
    system.recover()
    system.recover()  # and again: a second recovery posts nothing twice
    assert system.get(transaction["id"])["status"] == "completed"
    assert steps(engine, transaction["id"]) == ["posted"]  # by the recovery, once
    assert (balance(system, source), balance(system, destination)) == (9_000, 1_000)
    assert len(stored_result(engine, transaction["id"])["entries"]) == 2


def test_in_flight_lists_exactly_the_pending_transactions(system, funded, engine):
    owner, source, destination = funded

    def in_flight_and_pending():
        with engine.connect() as connection:
            listed = set(connection.execute(text(
                "SELECT transaction_id FROM transactions.in_flight")).scalars())
            pending = set(connection.execute(text(
                "SELECT id FROM transactions.transactions WHERE status = 'pending'")).scalars())
        return listed, pending

    completed = transfer(system, owner, source, destination)
    rejected = transfer(system, owner, source, destination, amount=50_000)
    ledger = take_the_ledger_down(system)
    stuck = transfer(system, owner, source, destination)
    assert [t["status"] for t in (completed, rejected, stuck)] == ["completed", "failed",
                                                                   "pending"]
    listed, pending = in_flight_and_pending()
    assert stuck["id"] in listed and listed == pending
    system.workers["ledger"] = ledger
    with engine.begin() as connection:
        connection.execute(text("UPDATE transactions.transactions SET decided_at = "
                                "decided_at - interval '1 minute' WHERE id = :id"),
                           {"id": stuck["id"]})
    system.recover()
    assert system.get(stuck["id"])["status"] == "completed"
    assert in_flight_and_pending() == (set(), set())


def test_recovery_fails_a_transaction_left_undecided_by_a_crash(system, funded, engine):
    owner, source, destination = funded
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO transactions.transactions (id, type, status, initiator_id, "
            "idempotency_key, source_account_id, destination_account_id, amount, currency, "
            "created_at) VALUES (:id, 'transfer', 'pending', :owner, :key, :s, :d, 5, 'USD', "
            "now() - interval '5 minutes')"),
            {"id": str(uuid.uuid4()), "owner": owner, "key": "crashed", "s": source,
             "d": destination})
        crashed = connection.execute(text(
            "SELECT id FROM transactions.transactions WHERE idempotency_key = 'crashed' "
            "AND initiator_id = :owner"), {"owner": owner}).scalar_one()
    system.recover()
    failed = system.get(crashed)
    assert (failed["status"], failed["failure_reason"]) == ("failed", "decision_timeout")
    assert balance(system, destination) == 0


def test_recovery_decides_again_a_transaction_whose_vote_round_died(system, funded, engine):
    owner, source, destination = funded
    with engine.begin() as connection:  # received 20 s ago by a process that then died
        stranded = connection.execute(text(
            "INSERT INTO transactions.transactions (id, type, status, initiator_id, "
            "idempotency_key, source_account_id, destination_account_id, source_owner_id, "
            "destination_owner_id, amount, currency, created_at) VALUES (:id, 'transfer', "
            "'pending', :owner, 'stranded', :s, :d, :owner, :owner, 700, 'USD', "
            "now() - interval '20 seconds') RETURNING id"),
            {"id": str(uuid.uuid4()), "owner": owner, "s": source, "d": destination},
        ).scalar_one()
    system.recover()
    system.recover()  # and again: nothing moves twice
    decided = system.get(stranded)
    assert (decided["status"], len(decided["votes"]) >= 2) == ("completed", True)
    assert (balance(system, source), balance(system, destination)) == (9_300, 700)


def test_recovery_posts_an_approved_atomic_batch_whole(system, funded, engine):
    owner, source, destination = funded
    ledger = take_the_ledger_down(system)
    pending = system.submit_batch(batch(owner, [(source, destination, 1_000)] * 2,
                                        atomic=True))
    assert pending["status"] == "pending"
    system.workers["ledger"] = ledger
    with engine.begin() as connection:  # as if approved a while ago
        connection.execute(text("UPDATE transactions.transactions SET decided_at = "
                                "decided_at - interval '1 minute' WHERE batch_id = :id"),
                           {"id": pending["id"]})
    system.recover()
    done = system.get_batch(pending["id"], owner)
    assert done["counts"] == {"completed": 2, "failed": 0, "pending": 0}
    assert balance(system, destination) == 2_000


def test_one_transaction_the_ledger_cannot_take_does_not_stall_the_recovery_of_the_rest(
        system, funded, engine):
    owner, source, destination = funded
    ledger = take_the_ledger_down(system)
    poisoned = transfer(system, owner, source, destination, 1_000)
    healthy = transfer(system, owner, source, destination, 2_000)
    assert poisoned["status"] == healthy["status"] == "pending"  # approved, not posted

    class Choking:  # a ledger that fails outright on one posting (a bug, say)
        def __getattr__(self, name):
            return getattr(ledger, name)

        def post(self, postings, atomic=False):
            if any(p["transaction_id"] == poisoned["id"] for p in postings):
                raise RuntimeError("the ledger cannot take this posting")
            return ledger.post(postings, atomic=atomic)

    system.workers["ledger"] = Choking()
    with engine.begin() as connection:  # as if approved a while ago
        connection.execute(text("UPDATE transactions.transactions SET decided_at = "
                                "decided_at - interval '1 minute' WHERE id IN (:a, :b)"),
                           {"a": poisoned["id"], "b": healthy["id"]})
    system.recover()
    assert system.get(healthy["id"])["status"] == "completed"
    assert system.get(poisoned["id"])["status"] == "pending"  # it stalls only itself
    assert balance(system, destination) == 2_000


def test_an_undecided_timeout_shorter_than_the_revote_refuses_to_start(config, engine):
    config["transactions"]["undecided_timeout_s"] = 5
    with pytest.raises(ValueError, match="undecided_timeout_s"):
        InProcessConsensus(config, engine, Local({}))
