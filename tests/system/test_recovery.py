"""Recovery and consensus failures, over the real RabbitMQ, PostgreSQL, Redis and Kafka.

Each test makes one failure the consensus protocol must survive, with the chaos tools (a
process killed or kept down) or a test-only fault (shared/faults.py: a ledger that
refuses to post or loses its reply, a slow validator, a forged vote), watches what a
client sees, and then has the bank checker (harness/bank_checker.py) read the books: money
conserved, no balance negative, entries equal to balances, each transfer exactly once or
not at all, nothing left pending, and the Kafka mirror equal to the ledger.

The module runs a system of its own, with the fault hook armed and recovery windows a
test can wait out: a vote round may outlast recovery's re-run of it, and what is left
undecided fails soon after."""
import os
import threading
import time
import uuid

import pytest

from harness import process_faults
from harness.sandbox import System
from harness.bank import INITIAL_BALANCE, Operation
from harness.servers import wait_for
from tests.support.books import (
    account, assert_books_right, current, deposit, entries_of, finished, open_bank, send_transfer,
)
from tests.support.recovery import (
    IDEMPOTENCY_LEASE_S, ORIGINAL_ROUND_DELAY_MS, RECOVERY_WAIT_S, UNDECIDED_TIMEOUT_S,
    VOTE_DEADLINE_MS, approvals, assert_moved_nothing, assert_moved_once, crash_and_keep_down,
    decision_wait_s, delayed_votes, refused_postings, round_ended, rpc_timeout_ms,
    seconds_since_epoch,
)


pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """This module's own system (the other tests keep the production-like windows)."""
    running = System("recovery_{}".format(os.getpid()), tmp_path_factory.mktemp("recovery"),
                     redis_db=10, faults=True, env={
                         "PAYSYS_UNDECIDED_TIMEOUT_S": str(UNDECIDED_TIMEOUT_S),
                         "PAYSYS_VOTE_DEADLINE_MS": str(VOTE_DEADLINE_MS),
                         "PAYSYS_IDEMPOTENCY_LEASE_S": str(IDEMPOTENCY_LEASE_S),
                     })
    with running:
        yield running


@pytest.fixture
def set_faults(system):
    """Switch faults on for the test; off again after it, whatever happened."""
    yield system.set_faults
    system.set_faults({})


@pytest.fixture
def bank(system):
    return open_bank(system)


# --- approved, then the posting fails --------------------------------------------------


def test_an_approved_transfer_the_ledger_refuses_to_post_completes_once_it_posts_again(
        system, set_faults, bank, admin):
    alice, bob = bank.clients
    refused_before = refused_postings(system)
    set_faults({"ledger": {"refuse_posting": True}})
    operation, response = send_transfer(bank, alice, alice.accounts[0], bob.accounts[0], 1_000)
    assert response.status_code == 202, response.text
    pending = response.json()
    assert pending["status"] == "pending"
    assert len(approvals(pending)) >= 2  # approved; the posting is what failed
    # Recovery posts it again after REPOST_AFTER_S; while the ledger still refuses, it
    # stays pending (neither failed nor lost) and recovery keeps trying.
    wait_for(lambda: refused_postings(system) >= refused_before + 2, RECOVERY_WAIT_S,
             interval_s=0.5, what="recovery's posting refused too")
    assert current(alice, operation)["status"] == "pending"
    assert_moved_nothing(bank, pending)
    set_faults({})
    transaction = finished(alice, operation, timeout_s=RECOVERY_WAIT_S)
    assert (transaction["status"], transaction["failure_reason"]) == ("completed", None)
    assert_moved_once(bank, transaction)
    assert_books_right(bank, admin)


def test_a_posting_committed_whose_reply_was_lost_completes_exactly_once(
        system, set_faults, bank, admin):
    alice, bob = bank.clients
    source, amount = alice.accounts[0], 1_500
    # The ledger commits, then answers after the caller's RPC deadline has passed.
    set_faults({"ledger": {"lose_posting_reply_ms": rpc_timeout_ms(system) + 2_000}})
    operation, response = send_transfer(bank, alice, source, bob.accounts[0], amount)
    assert response.status_code == 202, response.text
    wait_for(lambda: account(alice, source)["balance"] == INITIAL_BALANCE - amount, 10,
             what="the posting committed")
    assert current(alice, operation)["status"] == "pending"  # the ledger's answer is lost
    set_faults({})
    # Recovery posts it again; the ledger answers what it did the first time.
    transaction = finished(alice, operation, timeout_s=RECOVERY_WAIT_S)
    assert (transaction["status"], transaction["failure_reason"]) == ("completed", None)
    assert_moved_once(bank, transaction)
    assert_books_right(bank, admin)


# --- undecided: the vote round lost --------------------------------------------------------


def test_a_transfer_left_undecided_by_a_crash_fails_once_past_the_undecided_timeout(
        system, set_faults, bank, admin):
    alice, bob = bank.clients
    crashed = system.process_ids()["transactions"]
    set_faults(delayed_votes(8_000))  # no validator answers while the process lives
    operation, response = send_transfer(bank, alice, alice.accounts[0], bob.accounts[0], 700)
    assert response.status_code == 202, response.text
    pending = response.json()
    assert (pending["status"], pending["votes"]) == ("pending", [])
    crash_and_keep_down(system, "transactions", crashed)
    set_faults({})
    # Down until the transaction is older than the timeout: recovery's first run on start
    # must fail it rather than vote again.
    time.sleep(max(0.0, seconds_since_epoch(pending["created_at"]) + UNDECIDED_TIMEOUT_S + 1
                   - time.time()))
    system.supervisorctl("start", "transactions")
    transaction = finished(alice, operation, timeout_s=RECOVERY_WAIT_S)
    assert (transaction["status"], transaction["failure_reason"]) == (
        "failed", "decision_timeout")
    assert transaction["votes"] == []
    assert_moved_nothing(bank, transaction)
    assert_books_right(bank, admin)


def test_a_vote_round_cut_short_by_a_crash_is_run_again_and_the_transfer_completes_once(
        system, set_faults, bank, admin):
    alice, bob = bank.clients
    crashed = system.process_ids()["transactions"]
    set_faults(delayed_votes(8_000))  # the round is still open when the process dies
    operation, response = send_transfer(bank, alice, alice.accounts[0], bob.accounts[0], 900)
    assert response.status_code == 202, response.text
    assert response.json()["votes"] == []
    process_faults.kill(crashed)
    set_faults({})
    # supervisord starts it again; its recovery runs the vote round again.
    transaction = finished(alice, operation, timeout_s=RECOVERY_WAIT_S)
    assert system.process_ids()["transactions"] != crashed
    assert (transaction["status"], transaction["failure_reason"]) == ("completed", None)
    assert len(approvals(transaction)) >= 2
    assert_moved_once(bank, transaction)
    assert_books_right(bank, admin)


def test_when_a_rerun_vote_round_races_the_original_the_first_decision_recorded_stands(
        system, set_faults, bank, admin):
    alice, bob = bank.clients
    source = alice.accounts[0]
    amount = INITIAL_BALANCE + INITIAL_BALANCE // 2  # more than the source holds when sent
    request_id = uuid.uuid4().hex
    # The original round judges the balance as it was (a rejection), but only after
    # recovery has run the round again on the balance as it is then (an approval).
    set_faults(delayed_votes(ORIGINAL_ROUND_DELAY_MS))
    operation, response = send_transfer(bank, alice, source, bob.accounts[0], amount,
                                        request_id=request_id)
    assert response.status_code == 202, response.text
    assert response.json()["votes"] == []
    set_faults({})
    deposit(bank, alice, source, INITIAL_BALANCE)
    transaction = finished(alice, operation, timeout_s=RECOVERY_WAIT_S)
    assert (transaction["status"], transaction["failure_reason"]) == ("completed", None)
    assert len(approvals(transaction)) >= 2
    # The original round ends now, with its rejection: too late, the transaction keeps
    # the decision recorded first, and its one posting.
    wait_for(lambda: round_ended(system, request_id), VOTE_DEADLINE_MS / 1000 + 10,
             interval_s=0.5, what="the original vote round ended")
    assert current(alice, operation) == transaction
    assert [entry["amount"] for entry in entries_of(alice, source, transaction["id"])] == [
        -amount]
    assert account(alice, source)["balance"] == 2 * INITIAL_BALANCE - amount
    assert account(bob, bob.accounts[0])["balance"] == INITIAL_BALANCE + amount
    assert_books_right(bank, admin)


# --- votes that must not count ----------------------------------------------------------------


def test_a_forged_vote_is_not_counted(system, set_faults, bank, admin):
    alice, bob = bank.clients
    # validator_3 signs with a key that is not its own. validator_2 answers last, so the
    # forged vote arrives while the round is open: counted, it would decide the round.
    set_faults({"validator_2": {"vote_delay_ms": 1_500},
                "validator_3": {"forge_votes": "key"}})
    operation, response = send_transfer(bank, alice, alice.accounts[0], bob.accounts[0], 600)
    assert response.status_code in (201, 202), response.text
    transaction = finished(alice, operation)
    assert (transaction["status"], transaction["failure_reason"]) == ("completed", None)
    assert sorted(approvals(transaction)) == ["validator_1", "validator_2"]
    assert_moved_once(bank, transaction)
    assert_books_right(bank, admin)


def test_with_two_validators_forged_there_is_no_quorum_and_nothing_moves(
        system, set_faults, bank, admin):
    alice, bob = bank.clients
    # One signs with a key not its own, the other claims validator_1's name.
    set_faults({"validator_2": {"forge_votes": "key"},
                "validator_3": {"forge_votes": "as:validator_1"}})
    operation, response = send_transfer(bank, alice, alice.accounts[0], bob.accounts[0], 600)
    assert response.status_code in (201, 202), response.text
    transaction = finished(alice, operation)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed", "no_quorum")
    assert [(vote["validator_id"], vote["decision"]) for vote in transaction["votes"]] == [
        ("validator_1", "approve")]
    assert_moved_nothing(bank, transaction)
    assert_books_right(bank, admin)


# --- the ledger's checks under its locks, after the vote -----------------------------------


@pytest.mark.parametrize("changes, reason", [
    (["freeze"], "account_frozen"),
    (["freeze", "unfreeze"], "account_changed"),
])
def test_an_account_changed_between_the_vote_and_the_posting_fails_the_transfer(
        system, set_faults, bank, admin, changes, reason):
    alice, bob = bank.clients
    destination = bob.accounts[0]
    # Votes come after the wait for a decision, so the change lands while they are out.
    set_faults(delayed_votes(int(decision_wait_s(system) * 1000) + 3_000))
    operation, response = send_transfer(bank, alice, alice.accounts[0], destination, 800)
    assert response.status_code == 202, response.text
    assert response.json()["votes"] == []
    for change in changes:
        changed = admin.post("/v1/accounts/{}/{}".format(destination, change))
        assert changed.status_code == 200, changed.text
    set_faults({})
    transaction = finished(alice, operation)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed", reason)
    # Approved on the account as it was: the ledger refused the posting.
    assert len(approvals(transaction)) >= 2
    assert_moved_nothing(bank, transaction)
    assert_books_right(bank, admin)


def test_of_two_transfers_approved_on_the_same_balance_the_ledger_refuses_the_second(
        system, set_faults, bank, admin):
    alice, bob = bank.clients
    source = alice.accounts[0]
    amount = INITIAL_BALANCE * 2 // 3  # the source holds enough for one, not two
    # Slow votes keep both batches in their vote rounds at once: each is judged on the
    # balance before either posting. The gateway sends each in a lane of its own.
    set_faults(delayed_votes(int(decision_wait_s(system) * 1000) + 1_000))
    sent = {}

    def send(destination, after_s):
        time.sleep(after_s)
        sent[destination] = send_transfer(bank, alice, source, destination, amount)

    threads = [threading.Thread(target=send, args=(destination, after_s))
               for destination, after_s in ((bob.accounts[0], 0.0), (bob.accounts[1], 0.5))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    set_faults({})
    outcomes = {}
    for destination, (operation, response) in sent.items():
        assert response.status_code in (201, 202), response.text
        transaction = finished(alice, operation)
        outcomes[transaction["status"]] = transaction
        # Both approved: the validators saw money for each.
        assert len(approvals(transaction)) >= 2
    assert set(outcomes) == {"completed", "failed"}
    assert outcomes["failed"]["failure_reason"] == "insufficient_funds"
    assert account(alice, source)["balance"] == INITIAL_BALANCE - amount
    assert_books_right(bank, admin)


# --- an Idempotency-Key's lease outlived ------------------------------------------------


def test_a_late_first_request_does_not_overwrite_the_answer_of_the_retry_that_took_over(
        system, set_faults, bank, admin):
    alice, bob = bank.clients
    key, amount = str(uuid.uuid4()), 700
    body = {"source_account_id": alice.accounts[0], "destination_account_id": bob.accounts[0],
            "amount": amount, "currency": bank.currency}
    wait_s = decision_wait_s(system)
    # The first request: its votes come after the decision wait (it answers 202 pending),
    # and its answer is held back past the lease before it is stored.
    set_faults(dict(delayed_votes(int((wait_s + 2) * 1000)), gateway={
        "hold_answer": {"key": key, "ms": int((wait_s + IDEMPOTENCY_LEASE_S + 3) * 1000)}}))
    first = {}
    sender = threading.Thread(target=lambda: first.setdefault("response", alice.call(
        "POST", "/v1/transfers", json=body, headers={"Idempotency-Key": key})))
    sender.start()
    time.sleep(IDEMPOTENCY_LEASE_S + 0.5)  # the first request's lease has lapsed
    retry = alice.call("POST", "/v1/transfers", json=body, headers={"Idempotency-Key": key})
    assert retry.status_code == 201 and retry.json()["status"] == "completed", retry.text
    sender.join(timeout=60)
    # The first request answers last, and what it saw then was still pending.
    assert first["response"].status_code == 202, first["response"].text
    assert first["response"].json()["id"] == retry.json()["id"]
    replay = alice.call("POST", "/v1/transfers", json=body, headers={"Idempotency-Key": key})
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert (replay.status_code, replay.json()) == (201, retry.json())  # the retry's answer
    operation = Operation(key, body["source_account_id"], body["destination_account_id"],
                          amount, time.monotonic())
    operation.transaction, operation.outcome = retry.json(), "ok"
    bank.operations.append(operation)
    assert_moved_once(bank, retry.json())
    assert_books_right(bank, admin)
