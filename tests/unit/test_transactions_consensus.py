"""The transactions service's consensus pipeline in-process (tests/support/
transactions.py says what stands in for what): an approved transfer posted, a pool that
outlives one dead validator but not a lost quorum or forged votes, a majority's rejection,
one transaction per idempotency key, one event per finished transaction, and the ledger's
own checks after the vote."""
import uuid

import pytest
from sqlalchemy import text

from services.transactions import events
from shared.errors import NotFound
from shared.event_outbox import BATCH_EVENT
from shared.outbox_relay.events import event_relay
from shared.votes import PublicKeyFiles, verify_recorded_vote
from tests.support.transactions import (  # noqa: F401 - fixtures
    Dead,
    Forger,
    MeddlingLedger,
    POOL,
    balance,
    config,
    funded,
    steps,
    system,
    transfer,
)


def test_an_approved_transfer_is_posted_and_its_row_tells_its_way(system, funded, engine):
    owner, source, destination = funded
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("completed", None)
    assert {vote["validator_id"] for vote in transaction["votes"]} <= set(POOL)
    assert len(transaction["votes"]) >= 2
    assert (balance(system, source), balance(system, destination)) == (9_000, 1_000)
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT decision, created_at <= decided_at AND decided_at <= completed_at, "
            "source_version, destination_version FROM transactions.transactions "
            "WHERE id = :id"), {"id": transaction["id"]}).one()
    assert tuple(row) == ("approve", True, 1, 1)  # the versions the validators judged
    assert steps(engine, transaction["id"]) == []  # nothing out of the ordinary


def test_every_stored_vote_verifies_against_the_signed_answer_kept_with_it(
        system, funded, engine, config):
    owner, source, destination = funded
    transaction = transfer(system, owner, source, destination)
    with engine.connect() as connection:
        (votes,) = connection.execute(text(
            "SELECT votes FROM transactions.transactions WHERE id = :id"),
            {"id": transaction["id"]}).one()
        rounds = {row.id: row._asdict() for row in connection.execute(text(
            "SELECT * FROM transactions.vote_rounds WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": [vote["round_id"] for vote in votes]})}
    keyring = PublicKeyFiles(config, POOL)  # what an auditor holds: public keys only
    assert len(votes) >= 2
    for vote in votes:
        signed = rounds[vote["round_id"]]
        assert verify_recorded_vote(keyring, transaction["id"], vote, signed) is None
        # Stored votes cannot be changed unseen: an altered decision no longer verifies.
        flipped = dict(vote, decision="reject", reasons=["insufficient_funds"])
        assert verify_recorded_vote(keyring, transaction["id"], flipped,
                                    signed) == "not in the round"
        assert verify_recorded_vote(keyring, transaction["id"], vote, dict(
            signed, signature=rounds[vote["round_id"]]["signature"][::-1])) == "bad signature"


def test_one_dead_validator_does_not_stop_the_pool(system, funded):
    owner, source, destination = funded
    system.workers["validator_3"] = Dead()
    transaction = transfer(system, owner, source, destination)
    assert transaction["status"] == "completed"
    assert {vote["validator_id"] for vote in transaction["votes"]} == {"validator_1",
                                                                       "validator_2"}


def test_without_a_quorum_the_transaction_fails_and_moves_nothing(system, funded):
    owner, source, destination = funded
    system.workers["validator_2"] = Dead()
    system.workers["validator_3"] = Dead()
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed", "no_quorum")
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)


def test_forged_votes_do_not_make_a_quorum(system, funded):
    owner, source, destination = funded
    system.workers["validator_2"] = Forger("validator_2")
    system.workers["validator_3"] = Dead()
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed", "no_quorum")
    assert [vote["validator_id"] for vote in transaction["votes"]] == ["validator_1"]
    assert balance(system, destination) == 0


def test_a_rejection_by_the_majority_fails_with_its_reason(system, funded):
    owner, source, destination = funded
    transaction = transfer(system, owner, source, destination, 10_001)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed",
                                                                      "insufficient_funds")
    assert balance(system, source) == 10_000


def test_the_same_idempotency_key_gives_the_same_transaction_and_moves_once(system, funded):
    owner, source, destination = funded
    first = transfer(system, owner, source, destination, key="k-1")
    again = transfer(system, owner, source, destination, key="k-1")
    assert again["id"] == first["id"]
    assert balance(system, destination) == 1_000


def test_another_users_source_account_is_not_found(system, funded):
    _, source, destination = funded
    with pytest.raises(NotFound):
        transfer(system, str(uuid.uuid4()), source, destination)


def test_every_finished_transaction_queues_one_event_that_the_relay_sends_once(
        system, funded, engine):
    owner, source, destination = funded
    done = transfer(system, owner, source, destination)
    refused = transfer(system, owner, source, destination, 10**6)
    sent = []
    relay = event_relay(engine, events.outbox, lambda kind, payload: sent.append((kind, payload)),
                        interval_s=0.2)
    while relay.step():
        pass
    assert {kind for kind, _ in sent} == {BATCH_EVENT}
    ours = {event["data"]["id"]: event for _, payload in sent for event in payload["events"]}
    assert ours[done["id"]]["type"] == "transaction.completed"
    assert ours[refused["id"]]["type"] == "transaction.failed"
    assert ours[done["id"]]["data"] == done
    assert ours[done["id"]]["user_ids"] == [owner]
    assert relay.step() == 0


def test_an_account_frozen_between_the_vote_and_the_posting_fails_the_transfer(
        system, funded):
    owner, source, destination = funded
    ledger = system.workers["ledger"]
    system.workers["ledger"] = MeddlingLedger(
        ledger, lambda: ledger.set_status(destination, "frozen"))
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed",
                                                                      "account_frozen")
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)


def test_an_account_changed_between_the_vote_and_the_posting_fails_the_transfer(
        system, funded):
    owner, source, destination = funded
    ledger = system.workers["ledger"]

    def freeze_and_thaw():  # active again, but not the account the validators judged
        ledger.set_status(source, "frozen")
        ledger.set_status(source, "active")

    system.workers["ledger"] = MeddlingLedger(ledger, freeze_and_thaw)
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed",
                                                                      "account_changed")
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)
