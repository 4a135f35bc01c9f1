"""The bank test: concurrent transfers over HTTP, then the books are checked.

Money is conserved, no balance goes negative, every account's entries sum to
its balance, every acknowledged completed transfer is posted exactly once,
every failed one moved nothing, replays answer the first transaction, and
nothing stays pending. Then the same with one validator paused (SIGSTOP) mid-run:
transfers keep completing on the quorum (a killed one: tests/system/test_chaos.py).
"""
import threading
import time

import pytest

from harness import process_faults
from harness.bank import Bank
from harness.bank_checker import check, read_books, settle
from harness.bank_rules import judge
from harness.servers import wait_for
from shared.catalog import identity_of
from tests.support.api import new_session

pytestmark = pytest.mark.system

CLIENTS = 6
TRANSFERS_PER_CLIENT = 25


def run_bank(system, fault=None, fault_after_s=1.0):
    bank = Bank(system.url, users=CLIENTS, accounts_per_user=2).open()
    injected = threading.Event()

    def inject():
        time.sleep(fault_after_s)
        fault()
        injected.set()

    injector = threading.Thread(target=inject) if fault else None
    if injector:
        injector.start()
    elapsed_s = bank.run(transfers_per_client=TRANSFERS_PER_CLIENT, replay_fraction=0.15,
                         seed=7)
    if injector:
        injector.join()
    figures = bank.figures(elapsed_s)
    print("\nbank figures: {}".format(figures))
    return bank, figures


def assert_books_right(bank, figures):
    assert check(bank) == []
    assert figures["completed"] > 0
    assert figures["unknown"] == 0, figures


def test_the_books_are_right_after_concurrent_transfers_and_replays(system):
    bank, figures = run_bank(system)
    assert_books_right(bank, figures)
    replays = [op for op in bank.operations if op.replayed_same is not None]
    assert replays and all(op.replayed_same for op in replays)


def test_transfers_complete_on_the_quorum_while_a_validator_is_paused(system):
    paused = {"pids": []}

    def pause():
        # Every process of the validator (PAYSYS_REPLICAS may give it several).
        for name, pid in system.process_ids().items():
            if identity_of(name) == "validator_2":
                process_faults.pause(pid)
                paused["pids"].append(pid)
        paused["at"] = time.monotonic()

    try:
        bank, figures = run_bank(system, fault=pause)
        after = [op for op in bank.operations if op.started_s > paused["at"]
                 and op.outcome == "ok"]
        assert after, "no transfer completed while the validator was paused"
        votes = {vote["validator_id"] for op in after for vote in op.transaction["votes"]}
        assert "validator_2" not in votes
    finally:
        for pid in paused["pids"]:
            process_faults.resume(pid)
    assert_books_right(bank, figures)


def test_the_checker_reads_every_page_of_lists_longer_than_a_page(system):
    bank = Bank(system.url, users=2, accounts_per_user=2).open()
    bank.run(transfers_per_client=6, replay_fraction=0, seed=3)
    assert settle(bank) == []
    whole = read_books(bank)  # every list in one page
    for client in bank.clients:
        client.page_size = 2
    paged = read_books(bank)
    assert max(len(entries) for entries in paged.entries.values()) > 2
    assert len(paged.transactions) > 2 * len(bank.clients)
    assert paged.entries == whole.entries
    assert paged.transactions == whole.transactions
    assert judge(bank.history(), paged) == []


def reconciliation(auditor):
    response = auditor.get("/v1/ledger/reconciliation")
    assert response.status_code == 200, response.text
    return response.json()


def balanced_reconciliation(auditor, timeout_s=60):
    """The report once the mirror has caught up (the relay publishes within a second)."""
    def balanced():
        report = reconciliation(auditor)
        return report if report["balanced"] else None

    try:
        return wait_for(balanced, timeout_s=timeout_s, interval_s=1, what="a balanced report")
    except AssertionError:
        raise AssertionError("not balanced: {}".format(reconciliation(auditor)))


def test_after_a_burst_the_books_reconcile_and_the_kafka_mirror_equals_the_ledger(system):
    bank, figures = run_bank(system)
    assert_books_right(bank, figures)
    report = balanced_reconciliation(new_session(system, role="auditor"))
    assert all(totals["entries_sum"] == 0 for totals in report["currencies"].values())
    assert report["discrepancies"] == []
    # The ledger's concurrent batches left every lane of the hash chain unbroken.
    assert report["chain"]["valid"] is True and report["chain"]["broken_links"] == 0
    assert report["chain"]["postings_checked"] > 0
    mirror = report["mirror"]
    assert (mirror["missing"], mirror["unexpected"]) == ([], [])
    assert mirror["kafka_postings"] == mirror["ledger_postings"] > 0


def test_the_mirror_is_whole_again_after_the_broker_restarts_empty_mid_run(system):
    def restart_broker():
        system.supervisorctl("stop", "kafka")
        time.sleep(2)  # transfers go on; the relay keeps their messages in the outbox
        system.supervisorctl("start", "kafka")

    bank, figures = run_bank(system, fault=restart_broker)
    assert_books_right(bank, figures)
    report = balanced_reconciliation(new_session(system, role="auditor"), timeout_s=90)
    mirror = report["mirror"]
    assert (mirror["missing"], mirror["unexpected"]) == ([], [])
    assert mirror["kafka_postings"] == mirror["ledger_postings"]


def test_reconciliation_is_for_admins_and_auditors(system):
    customer = new_session(system)
    assert customer.get("/v1/ledger/reconciliation").status_code == 403
