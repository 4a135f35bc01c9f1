"""Helpers of the recovery tests (tests/system/test_recovery.py): the recovery windows
their system runs with, faults that hold the votes back, what the processes logged, a crash
that keeps a process down, and what a transfer moved in the books."""
import json
import re
import threading
from datetime import datetime

from harness import process_faults
from harness.bank import INITIAL_BALANCE
from harness.servers import wait_for
from services.transactions.pipeline import REDRIVE_AFTER_S, REPOST_AFTER_S
from services.transactions.service import RECOVERY_INTERVAL_S
from tests.support.books import account, entries_of


VALIDATORS = ("validator_1", "validator_2", "validator_3")
# Recovery fails a transaction still undecided this long after it was received. Recovery
# re-runs an undecided round after REDRIVE_AFTER_S, at its next run (every
# RECOVERY_INTERVAL_S): that must come well before.
UNDECIDED_TIMEOUT_S = 20
# Longer than recovery takes to re-run a round (REDRIVE_AFTER_S + RECOVERY_INTERVAL_S), so
# an original round can still be open when the re-run decides.
VOTE_DEADLINE_MS = 25_000
# The original round of the race test: its votes come after the re-run's decision, inside
# its deadline.
ORIGINAL_ROUND_DELAY_MS = 20_000
# Short, so that a request can outlive its Idempotency-Key's lease and a retry take over.
IDEMPOTENCY_LEASE_S = 2
# How long recovery may take to finish something, process restarts included.
RECOVERY_WAIT_S = max(REDRIVE_AFTER_S, REPOST_AFTER_S) + 2 * RECOVERY_INTERVAL_S + 20
assert REDRIVE_AFTER_S + RECOVERY_INTERVAL_S < UNDECIDED_TIMEOUT_S
assert REDRIVE_AFTER_S + RECOVERY_INTERVAL_S + 3 < ORIGINAL_ROUND_DELAY_MS / 1000
assert ORIGINAL_ROUND_DELAY_MS < VOTE_DEADLINE_MS


def delayed_votes(delay_ms, validators=VALIDATORS):
    return {name: {"vote_delay_ms": delay_ms} for name in validators}


def decision_wait_s(system):
    return int(system.env["PAYSYS_DECISION_WAIT_MS"]) / 1000


def rpc_timeout_ms(system):
    return int(system.env["PAYSYS_RPC_TIMEOUT_MS"])


def approvals(transaction):
    return [vote["validator_id"] for vote in transaction["votes"]
            if vote["decision"] == "approve"]


def log_records(system, program):
    records = []
    for line in system.log_lines(program):
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def refused_postings(system):
    """How many ``post`` calls the ledger has refused (its log line per failed call)."""
    return sum(1 for record in log_records(system, "ledger")
               if record.get("message") == "ledger.post"
               and record.get("outcome") == "ServiceUnavailable")


def round_ended(system, request_id):
    """The transactions service logged the end of the batch that carried ``request_id``."""
    return any(request_id in (record.get("request_ids") or ())
               and str(record.get("message", "")).startswith("submit:")
               for record in log_records(system, "transactions"))


def crash_and_keep_down(system, program, pid):
    """SIGKILL ``program`` (a crash: nothing cleaned up) and keep it down. It is frozen
    first and its stop asked of supervisord, which then takes the death for the stop it
    asked for and does not start it again."""
    process_faults.pause(pid)
    stopping = threading.Thread(target=system.supervisorctl, args=("stop", program))
    stopping.start()
    wait_for(lambda: re.search(r"\b{}\s+STOPPING".format(program),
                               system.paysys("ps", check=False).stdout),
             30, what="{} stopping".format(program))
    process_faults.kill(pid)
    stopping.join()
    assert program not in system.process_ids()


def seconds_since_epoch(timestamp):
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def assert_moved_once(bank, transaction):
    """Two entries, one on each side, and each balance moved by the amount once."""
    alice, bob = bank.clients
    source, destination = transaction["source_account_id"], transaction["destination_account_id"]
    amount = transaction["amount"]
    assert [entry["amount"] for entry in entries_of(alice, source, transaction["id"])] == [
        -amount]
    assert [entry["amount"] for entry in entries_of(bob, destination, transaction["id"])] == [
        amount]
    assert account(alice, source)["balance"] == INITIAL_BALANCE - amount
    assert account(bob, destination)["balance"] == INITIAL_BALANCE + amount


def assert_moved_nothing(bank, transaction):
    alice, bob = bank.clients
    source, destination = transaction["source_account_id"], transaction["destination_account_id"]
    assert entries_of(alice, source, transaction["id"]) == []
    assert entries_of(bob, destination, transaction["id"]) == []
    assert account(alice, source)["balance"] == INITIAL_BALANCE
    assert account(bob, destination)["balance"] == INITIAL_BALANCE
