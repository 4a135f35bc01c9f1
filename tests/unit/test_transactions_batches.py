"""Many movements at once in the transactions service, in-process: submit_many answers
each movement on its own; a batch applies its items in order, an atomic one all or nothing,
a replay answers the same batch, and a batch naming another's account is refused whole."""
import uuid

import pytest

from shared.errors import NotFound
from tests.support.transactions import (  # noqa: F401 - fixtures
    MeddlingLedger,
    balance,
    batch,
    config,
    funded,
    movement,
    open_account,
    system,
)


# --- many movements at once ---------------------------------------------------------------


def test_submit_many_answers_each_movement_on_its_own(system, funded):
    owner, source, destination = funded
    stranger = str(uuid.uuid4())
    answers = system.submit_many([
        movement("transfer", owner, source, destination, 1_000).to_wire(),
        movement("transfer", stranger, source, destination, 1_000).to_wire(),  # not theirs
        dict(movement("transfer", owner, source, destination).to_wire(), amount=0),
        movement("transfer", owner, source, destination, 50_000).to_wire(),  # too much
    ])
    assert answers[0]["transaction"]["status"] == "completed"
    assert answers[1]["error"]["exc_type"] == "NotFound"
    assert answers[2]["error"]["exc_type"] == "ValidationFailed"
    assert (answers[3]["transaction"]["status"],
            answers[3]["transaction"]["failure_reason"]) == ("failed", "insufficient_funds")
    assert (balance(system, source), balance(system, destination)) == (9_000, 1_000)


def test_a_batch_applies_its_items_in_order(system, funded):
    owner, source, destination = funded
    third = open_account(system, owner)
    # The second item spends what the first brings: only in this order can it complete.
    done = system.submit_batch(batch(owner, [(source, destination, 6_000),
                                             (destination, third, 5_000),
                                             (source, third, 9_000)]))
    assert done["status"] == "completed" and done["atomic"] is False
    assert [item["status"] for item in done["items"]] == ["completed", "completed", "failed"]
    assert done["items"][2]["failure_reason"] == "insufficient_funds"
    assert done["counts"] == {"completed": 2, "failed": 1, "pending": 0}
    assert [balance(system, account) for account in (source, destination, third)] == [
        4_000, 1_000, 5_000]


def test_an_atomic_batch_moves_all_or_nothing(system, funded):
    owner, source, destination = funded
    refused = system.submit_batch(batch(owner, [(source, destination, 1_000),
                                                (source, destination, 20_000)], atomic=True))
    assert [(item["status"], item["failure_reason"]) for item in refused["items"]] == [
        ("failed", "batch_aborted"), ("failed", "insufficient_funds")]
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)
    done = system.submit_batch(batch(owner, [(source, destination, 1_000),
                                             (destination, source, 500)], atomic=True))
    assert [item["status"] for item in done["items"]] == ["completed", "completed"]
    assert (balance(system, source), balance(system, destination)) == (9_500, 500)


def test_an_atomic_batch_the_ledger_refuses_moves_nothing(system, funded):
    owner, source, destination = funded
    ledger = system.workers["ledger"]
    third = open_account(system, owner)
    # Approved on the snapshot, refused under the ledger's lock: the freeze lands between.
    system.workers["ledger"] = MeddlingLedger(
        ledger, lambda: ledger.set_status(destination, "frozen"))
    refused = system.submit_batch(batch(owner, [(source, third, 1_000),
                                                (source, destination, 1_000)], atomic=True))
    assert [(item["status"], item["failure_reason"]) for item in refused["items"]] == [
        ("failed", "batch_aborted"), ("failed", "account_frozen")]
    assert [balance(system, account) for account in (source, destination, third)] == [
        10_000, 0, 0]


def test_a_replayed_batch_answers_the_same_batch_and_moves_nothing_again(system, funded):
    owner, source, destination = funded
    wire = batch(owner, [(source, destination, 1_000)] * 3, key="batch-1")
    first = system.submit_batch(wire)
    again = system.submit_batch(wire)
    assert again == first
    assert system.get_batch(first["id"], owner) == first
    assert balance(system, destination) == 3_000


def test_a_batch_naming_anothers_account_is_refused_whole(system, funded):
    owner, source, destination = funded
    stranger_account = open_account(system, str(uuid.uuid4()))
    with pytest.raises(NotFound) as raised:
        system.submit_batch(batch(owner, [(source, destination, 1_000),
                                          (stranger_account, destination, 1_000)]))
    assert raised.value.detail.startswith("transfers.1:")
    assert balance(system, destination) == 0
    with pytest.raises(NotFound):
        system.get_batch(str(uuid.uuid4()), owner)
