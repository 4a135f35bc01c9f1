"""The Money movement part of the HTTP contract, through the whole running system."""
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import process_faults
from tests.support.api import assert_problem
from harness.servers import wait_for

pytestmark = pytest.mark.system

TRANSACTION_FIELDS = {"id", "type", "status", "failure_reason", "source_account_id",
                      "destination_account_id", "amount", "currency", "description", "metadata",
                      "votes", "created_at", "completed_at"}


def move(user, path, body, key=None):
    return user.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def deposit(user, account, amount, currency="USD"):
    response = move(user, "/v1/deposits", {"account_id": account["id"], "amount": amount,
                                           "currency": currency})
    assert response.status_code == 201, response.text
    return response.json()


def transfer(user, source, destination, amount, currency="USD", **extra):
    body = {"source_account_id": source["id"], "destination_account_id": destination["id"],
            "amount": amount, "currency": currency}
    body.update(extra)
    return move(user, "/v1/transfers", body)


def balance(user, account):
    return user.get("/v1/accounts/" + account["id"]).json()["balance"]


def test_a_deposit_completes_with_the_votes_of_a_quorum(alice):
    account = alice.open_account("USD")
    transaction = deposit(alice, account, 10_000)
    assert set(transaction) == TRANSACTION_FIELDS
    assert (transaction["type"], transaction["status"], transaction["failure_reason"]) == (
        "deposit", "completed", None)
    assert (transaction["source_account_id"], transaction["destination_account_id"]) == (
        None, account["id"])
    assert len(transaction["votes"]) >= 2
    assert all(vote["decision"] == "approve" for vote in transaction["votes"])
    assert transaction["completed_at"] is not None
    assert balance(alice, account) == 10_000


def test_a_transfer_moves_money_and_both_sides_see_it(alice, bob):
    mine, theirs = alice.open_account(), bob.open_account()
    deposit(alice, mine, 5_000)
    response = transfer(alice, mine, theirs, 1_250, description="rent")
    assert response.status_code == 201, response.text
    transaction = response.json()
    assert (transaction["status"], transaction["description"]) == ("completed", "rent")
    assert response.headers["Location"] == "/v1/transfers/" + transaction["id"]
    assert (balance(alice, mine), balance(bob, theirs)) == (3_750, 1_250)
    for user in (alice, bob):
        seen = user.get("/v1/transfers/" + transaction["id"])
        assert seen.status_code == 200 and seen.json() == transaction


def test_entries_are_newest_first_with_the_balance_after_each(alice, bob):
    mine, theirs = alice.open_account(), bob.open_account()
    first = deposit(alice, mine, 5_000)
    second = transfer(alice, mine, theirs, 2_000).json()
    entries = alice.get("/v1/accounts/{}/entries".format(mine["id"])).json()["items"]
    assert [(e["transaction_id"], e["amount"], e["balance_after"]) for e in entries] == [
        (second["id"], -2_000, 3_000), (first["id"], 5_000, 5_000)]
    assert set(entries[0]) == {"id", "account_id", "transaction_id", "amount", "balance_after",
                               "created_at"}


def test_a_withdrawal_takes_money_out(alice):
    account = alice.open_account("EUR")
    deposit(alice, account, 900, "EUR")
    response = move(alice, "/v1/withdrawals", {"account_id": account["id"], "amount": 400,
                                               "currency": "EUR"})
    assert response.status_code == 201
    assert response.json()["status"] == "completed"
    assert balance(alice, account) == 500


@pytest.mark.parametrize("case", ["insufficient_funds", "currency_mismatch", "account_frozen"])
def test_a_refused_transfer_is_failed_with_its_reason_and_moves_nothing(alice, bob, admin, case):
    mine, theirs = alice.open_account("USD"), bob.open_account("USD")
    deposit(alice, mine, 1_000)
    amount, currency = 500, "USD"
    if case == "insufficient_funds":
        amount = 1_001
    elif case == "currency_mismatch":
        currency = "EUR"
    else:
        assert admin.post("/v1/accounts/{}/freeze".format(theirs["id"])).status_code == 200
    response = transfer(alice, mine, theirs, amount, currency)
    assert response.status_code == 201, response.text
    transaction = response.json()
    assert (transaction["status"], transaction["failure_reason"]) == ("failed", case)
    assert any(vote["decision"] == "reject" for vote in transaction["votes"])
    assert (balance(alice, mine), balance(bob, theirs)) == (1_000, 0)
    entries = alice.get("/v1/accounts/{}/entries".format(mine["id"])).json()["items"]
    assert transaction["id"] not in {entry["transaction_id"] for entry in entries}


def test_yen_have_no_minor_unit_and_move_as_whole_yen(alice, bob):
    mine, theirs = alice.open_account("JPY"), bob.open_account("JPY")
    deposit(alice, mine, 1_500, "JPY")
    assert transfer(alice, mine, theirs, 999, "JPY").json()["status"] == "completed"
    assert balance(bob, theirs) == 999


# --- Who may move what -----------------------------------------------------------------


def test_one_cannot_move_money_out_of_anothers_account(alice, bob):
    theirs, mine = bob.open_account(), alice.open_account()
    deposit(bob, theirs, 1_000)
    assert_problem(transfer(alice, theirs, mine, 100), 404, "not_found")
    assert_problem(move(alice, "/v1/withdrawals", {"account_id": theirs["id"], "amount": 100,
                                                   "currency": "USD"}), 404, "not_found")
    assert balance(bob, theirs) == 1_000


def test_one_deposits_only_into_ones_own_account(alice, bob):
    theirs = bob.open_account()
    assert_problem(move(alice, "/v1/deposits", {"account_id": theirs["id"], "amount": 100,
                                                "currency": "USD"}), 404, "not_found")


def test_a_transfer_to_an_unknown_account_is_404(alice):
    mine = alice.open_account()
    deposit(alice, mine, 1_000)
    assert_problem(transfer(alice, mine, {"id": str(uuid.uuid4())}, 100), 404, "not_found")


def test_a_transfer_to_the_same_account_is_422(alice):
    mine = alice.open_account()
    assert_problem(transfer(alice, mine, mine, 100), 422, "validation_error")


def test_a_transfer_from_an_unknown_or_anothers_account_to_itself_is_404(alice, bob):
    # Unknown is unknown, whatever the destination: the 404 comes before the 422.
    theirs = bob.open_account()
    unknown = {"id": str(uuid.uuid4())}
    assert_problem(transfer(alice, unknown, unknown, 100), 404, "not_found")
    assert_problem(transfer(alice, theirs, theirs, 100), 404, "not_found")
    batch = move(alice, "/v1/transfers/batch", {"transfers": [
        {"source_account_id": theirs["id"], "destination_account_id": theirs["id"],
         "amount": 100, "currency": "USD"}]})
    assert_problem(batch, 404, "not_found")


def test_an_admin_may_move_any_account(alice, bob, admin):
    mine, theirs = alice.open_account(), bob.open_account()
    deposit(alice, mine, 1_000)
    response = transfer(admin, mine, theirs, 300)
    assert response.json()["status"] == "completed"
    assert balance(bob, theirs) == 300


def test_a_stranger_cannot_see_a_transaction(alice, bob, system):
    mine = alice.open_account()
    transaction = deposit(alice, mine, 100)
    assert_problem(bob.get("/v1/transfers/" + transaction["id"]), 404, "not_found")
    assert_problem(bob.get("/v1/transfers/" + str(uuid.uuid4())), 404, "not_found")


def test_any_transaction_is_read_by_its_id_with_its_metadata(alice, bob, admin):
    mine, theirs = alice.open_account(), bob.open_account()
    made = deposit(alice, mine, 700)
    moved = transfer(alice, mine, theirs, 300, metadata={"invoice": "INV-9"}).json()
    for transaction in (made, moved):
        seen = alice.get("/v1/transactions/" + transaction["id"])
        assert seen.status_code == 200, seen.text
        assert seen.json() == alice.get("/v1/transfers/" + transaction["id"]).json()
    assert alice.get("/v1/transactions/" + moved["id"]).json()["metadata"] == {
        "invoice": "INV-9"}
    # The destination's owner and staff see it; a stranger gets the 404 of an unknown id.
    assert bob.get("/v1/transactions/" + moved["id"]).json()["type"] == "transfer"
    assert admin.get("/v1/transactions/" + made["id"]).json()["type"] == "deposit"
    assert_problem(bob.get("/v1/transactions/" + made["id"]), 404, "not_found")
    assert_problem(bob.get("/v1/transactions/" + str(uuid.uuid4())), 404, "not_found")
    assert_problem(bob.get("/v1/transactions/not-an-id"), 404, "not_found")


# --- Lists ---------------------------------------------------------------------------


def test_transactions_list_by_account_and_status(alice, bob):
    mine, theirs = alice.open_account(), bob.open_account()
    deposit(alice, mine, 1_000)
    ok = transfer(alice, mine, theirs, 100).json()
    failed = transfer(alice, mine, theirs, 5_000).json()
    listed = alice.get("/v1/transactions", params={"account_id": mine["id"]}).json()["items"]
    assert [tx["id"] for tx in listed][:2] == [failed["id"], ok["id"]]
    failures = alice.get("/v1/transactions", params={"account_id": mine["id"],
                                                     "status": "failed"}).json()["items"]
    assert [tx["id"] for tx in failures] == [failed["id"]]
    # Bob sees the transfers to his account, but may not list Alice's account.
    bobs = {tx["id"] for tx in bob.get("/v1/transactions").json()["items"]}
    assert ok["id"] in bobs
    assert_problem(bob.get("/v1/transactions", params={"account_id": mine["id"]}), 404)


# --- Idempotency of money --------------------------------------------------------------


def funded_transfer(alice, bob):
    """Alice's account holding 1,000, Bob's account, and a transfer of 100 between them."""
    mine, theirs = alice.open_account(), bob.open_account()
    deposit(alice, mine, 1_000)
    return mine, theirs, {"source_account_id": mine["id"],
                          "destination_account_id": theirs["id"], "amount": 100,
                          "currency": "USD"}


def test_a_replayed_transfer_moves_money_once(alice, bob):
    mine, theirs, body = funded_transfer(alice, bob)
    key = str(uuid.uuid4())
    first = alice.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    again = alice.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (balance(alice, mine), balance(bob, theirs)) == (900, 100)
    other = alice.post("/v1/transfers", json=dict(body, amount=200),
                       headers={"Idempotency-Key": key})
    assert_problem(other, 422, "idempotency_key_reused")
    assert balance(alice, mine) == 900


def test_concurrent_uses_of_a_transfer_key_move_money_once(alice, bob):
    # Sent together, they meet in the gateway's money desk, which claims their keys in one
    # transaction: one holds the key, the rest are in flight (409) or replay its answer.
    mine, theirs, body = funded_transfer(alice, bob)
    key = str(uuid.uuid4())

    def attempt(_):
        return alice.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(attempt, range(6)))
    assert {response.status_code for response in responses} <= {201, 409}
    answered = [response for response in responses if response.status_code == 201]
    assert len({response.json()["id"] for response in answered}) == 1
    assert sum("Idempotent-Replayed" not in response.headers for response in answered) == 1
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "idempotency_key_in_flight")
    assert (balance(alice, mine), balance(bob, theirs)) == (900, 100)


def test_a_transfer_refused_before_it_reaches_the_desk_is_replayed_too(alice, bob):
    # From another's account to itself: the gateway's own check answers 404 before the
    # money desk would claim the key; the answer is kept under the key all the same.
    theirs = bob.open_account()
    body = {"source_account_id": theirs["id"], "destination_account_id": theirs["id"],
            "amount": 100, "currency": "USD"}
    key = str(uuid.uuid4())
    first = alice.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    again = alice.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    assert_problem(first, 404, "not_found")
    assert again.status_code == 404 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert_problem(alice.post("/v1/transfers", json=dict(body, amount=200),
                              headers={"Idempotency-Key": key}), 422, "idempotency_key_reused")


# --- When the decision takes long ---------------------------------------------------------


def test_without_a_quorum_in_time_the_answer_is_202_and_the_system_fails_it_itself(
        system, alice):
    account = alice.open_account()
    pids = system.process_ids()
    with process_faults.paused(pids["validator_1"], pids["validator_2"]):
        response = move(alice, "/v1/deposits", {"account_id": account["id"], "amount": 100,
                                                "currency": "USD"})
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        location = response.headers["Location"]
        final = wait_for(lambda: _final(alice, location), timeout_s=30, what="a decision")
        assert (final["status"], final["failure_reason"]) == ("failed", "no_quorum")
        assert balance(alice, account) == 0
    # Back to normal once the validators answer again (their breakers close).
    wait_for(lambda: move(alice, "/v1/deposits", {
        "account_id": account["id"], "amount": 1, "currency": "USD"}).json()["status"]
        == "completed", timeout_s=60, interval_s=1, what="deposits completing again")


def _final(user, location):
    transaction = user.get(location).json()
    return transaction if transaction["status"] != "pending" else None
