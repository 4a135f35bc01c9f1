"""The bank test for POST /v1/transfers/batch: concurrent batches over HTTP, then the books.

Money is conserved and every account's entries sum to its balance (the bank
checker's rules); every completed item is posted exactly once and every failed one moved
nothing; an atomic batch completes whole or fails whole; a batch replayed under its key
answers the same batch and moves nothing again. Then a batch caught mid-way by a killed
transactions or ledger process: the system finishes it by itself, each item once.
"""
import random
import threading
import time
import uuid

import pytest

from harness import process_faults
from harness.bank import Bank, Operation
from harness.bank_checker import check
from harness.servers import wait_for

pytestmark = pytest.mark.system

CLIENTS = 4
BATCHES_PER_CLIENT = 5
ITEMS = 20
MAX_ITEM = 4_000  # against opening balances of 60,000
UNPAYABLE = 50_000_000  # more than all the accounts hold, within the validators' limit


def post_batch(client, items, atomic, key):
    """The batch as the system ends up deciding it: POST (retried under its key while the
    system answers 'try again'), then polled at its Location until no item is pending."""
    response = client.move("/v1/transfers/batch", {"transfers": items, "atomic": atomic}, key,
                           attempts=60)
    assert response.status_code in (201, 202), response.text
    batch = response.json()
    location = "/v1/transfers/batches/" + batch["id"]
    wait_for(lambda: client.call("GET", location).json()["status"] == "completed",
             timeout_s=90, what="batch {} decided".format(batch["id"]))
    return response.status_code, client.call("GET", location).json()


def record(bank, key, batch):
    """Each decided item as an operation of the bank's history, so that its checker holds
    every item to its rules (posted exactly once if completed, nothing moved if failed)."""
    for index, item in enumerate(batch["items"]):
        operation = Operation("{}#{}".format(key, index), item["source_account_id"],
                              item["destination_account_id"], item["amount"], time.monotonic())
        operation.transaction = item
        operation.outcome = {"completed": "ok", "failed": "fail"}.get(item["status"], "unknown")
        bank.operations.append(operation)


def items_for(bank, client, rng, count=ITEMS, max_amount=MAX_ITEM):
    others = bank.all_accounts
    items = []
    for _ in range(count):
        source = rng.choice(client.accounts)
        items.append({"source_account_id": source,
                      "destination_account_id": rng.choice([a for a in others if a != source]),
                      "amount": rng.randint(1, max_amount), "currency": bank.currency})
    return items


def entries_by_transaction(bank):
    found = {}
    for client in bank.clients:
        for account in client.accounts:
            for entry in client.pages("/v1/accounts/{}/entries".format(account)):
                found.setdefault(entry["transaction_id"], []).append(entry["amount"])
    return found


def batch_problems(batch, sent, entries):
    """What is wrong with one decided batch, given the items sent and the ledger's entries."""
    problems = []
    if [(i["source_account_id"], i["destination_account_id"], i["amount"])
            for i in batch["items"]] != [(i["source_account_id"], i["destination_account_id"],
                                          i["amount"]) for i in sent]:
        problems.append("batch {} does not hold its items in request order".format(batch["id"]))
    for item in batch["items"]:
        posted = sorted(entries.get(item["id"], []))
        if item["status"] == "completed" and posted != [-item["amount"], item["amount"]]:
            problems.append("completed item {} posted as {}".format(item["id"], posted))
        if item["status"] == "failed" and posted:
            problems.append("failed item {} moved money: {}".format(item["id"], posted))
    statuses = {item["status"] for item in batch["items"]}
    if batch["atomic"] and len(statuses) != 1:
        problems.append("atomic batch {} ended partly: {}".format(batch["id"], statuses))
    if batch["atomic"] and statuses == {"failed"}:
        reasons = [item["failure_reason"] for item in batch["items"]]
        own = [reason for reason in reasons if reason != "batch_aborted"]
        if not own:
            problems.append("atomic batch {} failed with no item's own reason".format(
                batch["id"]))
    counts = {status: sum(item["status"] == status for item in batch["items"])
              for status in ("completed", "failed", "pending")}
    if batch["counts"] != counts:
        problems.append("batch {} counts {} but holds {}".format(batch["id"], batch["counts"],
                                                                counts))
    return problems


def test_concurrent_batches_move_each_item_once_and_atomic_ones_whole(system):
    bank = Bank(system.url, users=CLIENTS, accounts_per_user=2).open()
    decided, replays, lock = [], [], threading.Lock()

    def client_loop(client, rng):
        for number in range(BATCHES_PER_CLIENT):
            items, atomic, key = items_for(bank, client, rng), number % 2 == 1, str(uuid.uuid4())
            if number in (2, 3):  # an item no account can pay: it fails (and, atomic, all)
                items[ITEMS // 2]["amount"] = UNPAYABLE
            _, batch = post_batch(client, items, atomic, key)
            with lock:
                decided.append((batch, items))
                record(bank, key, batch)
            if number == 0:  # the same key and body again: the same batch, nothing more
                _, again = post_batch(client, items, atomic, key)
                with lock:
                    replays.append((batch, again))

    threads = [threading.Thread(target=client_loop, args=(client, random.Random(index)))
               for index, client in enumerate(bank.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert check(bank) == []  # conserved, entries equal balances, none negative or pending
    entries = entries_by_transaction(bank)
    problems = [problem for batch, sent in decided
                for problem in batch_problems(batch, sent, entries)]
    assert problems == []
    assert all(again == first for first, again in replays) and len(replays) == CLIENTS
    # Both outcomes were exercised: a non-atomic batch kept its good items, an atomic one
    # with the unpayable item moved nothing.
    partial = [batch for batch, _ in decided if not batch["atomic"]
               and batch["counts"]["failed"] and batch["counts"]["completed"]]
    aborted = [batch for batch, _ in decided if batch["atomic"] and batch["counts"]["failed"]]
    assert partial and aborted
    assert all(sorted({item["failure_reason"] for item in batch["items"]}) == [
        "batch_aborted", "insufficient_funds"] for batch in aborted)
    some_item = decided[0][0]["items"][0]
    owner = bank.clients[0]
    for client in bank.clients:
        if some_item["source_account_id"] in client.accounts:
            owner = client
    assert owner.call("GET", "/v1/transfers/" + some_item["id"]).json() == some_item


VALIDATORS = ("validator_1", "validator_2", "validator_3")


@pytest.mark.parametrize("killed", ["transactions", "ledger"])
def test_a_batch_caught_by_a_killed_process_is_finished_by_the_system_each_item_once(
        system, killed):
    # Atomic, the hardest case: recovery must take the batch whole (tests/system/
    # test_chaos.py kills processes under single transfers).
    atomic = True
    bank = Bank(system.url, users=2, accounts_per_user=2).open()
    client = bank.clients[0]
    items = items_for(bank, client, random.Random(3), count=200, max_amount=500)
    pids = system.process_ids()
    answer = {}

    def send():
        key = str(uuid.uuid4())
        answer["batch"] = post_batch(client, items, atomic, key)
        record(bank, key, answer["batch"][1])

    sender = threading.Thread(target=send)
    # Paused validators hold the batch in its vote round, recorded but undecided (the
    # round's deadline is seconds away: the steps below take well under one).
    with process_faults.paused(*[pids[name] for name in VALIDATORS]):
        sender.start()
        wait_for(lambda: client.pages("/v1/transactions", {"status": "pending"}),
                 timeout_s=30, interval_s=0.05, what="the batch recorded pending")
        if killed == "transactions":
            process_faults.kill(pids["transactions"])  # mid vote round
        else:
            process_faults.pause(pids["ledger"])  # the votes go on; the posting will hang
    if killed == "ledger":
        time.sleep(1)  # approved, and the posting call is with the paused ledger
        process_faults.kill(pids["ledger"])  # mid posting (its commit never made)
    sender.join(timeout=150)
    assert not sender.is_alive(), "the batch was never decided"
    _, batch = answer["batch"]

    assert check(bank) == []
    assert batch_problems(batch, items, entries_by_transaction(bank)) == []
    assert batch["counts"]["pending"] == 0
    assert len({item["status"] for item in batch["items"]}) == 1
    wait_for(lambda: system.process_ids().get(killed) not in (None, pids[killed]),
             timeout_s=30, what="{} started again".format(killed))
