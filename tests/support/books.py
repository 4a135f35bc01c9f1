"""The bank checker (harness/bank_checker.py) for a system test's own few transfers: a small bank
of users and funded accounts, each transfer the test makes recorded as the checker's
operation, then the checker's verdict on the books and the Kafka mirror's."""
import time
import uuid

from harness.bank import Bank, Operation
from harness.bank_checker import check
from harness.servers import wait_for


def open_bank(system, users=2, accounts_per_user=2):
    """Users with ``accounts_per_user`` accounts each, every one funded with
    ``harness.bank.INITIAL_BALANCE``."""
    return Bank(system.url, users=users, accounts_per_user=accounts_per_user).open()


def send_transfer(bank, client, source, destination, amount, request_id=None):
    """POST the transfer once, as the checker's operation: ``(operation, response)``."""
    operation = Operation(str(uuid.uuid4()), source, destination, amount, time.monotonic())
    bank.operations.append(operation)
    headers = {"Idempotency-Key": operation.key}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    response = client.call("POST", "/v1/transfers", headers=headers, json={
        "source_account_id": source, "destination_account_id": destination,
        "amount": amount, "currency": bank.currency})
    operation.status_code = response.status_code
    if response.status_code in (201, 202):
        operation.transaction = response.json()
    else:
        operation.outcome = "fail" if 400 <= response.status_code < 500 else "unknown"
    return operation, response


def finished(client, operation, timeout_s=60):
    """The transaction once it is no longer pending (a service that is restarting answers
    503 meanwhile), recorded as the operation's outcome."""
    path = "/v1/transfers/" + operation.transaction["id"]

    def decided():
        response = client.call("GET", path)
        if response.status_code == 200 and response.json()["status"] != "pending":
            return response.json()
        return None

    transaction = wait_for(decided, timeout_s, interval_s=0.25,
                           what="transaction {} decided".format(operation.transaction["id"]))
    operation.transaction = transaction
    operation.outcome = {"completed": "ok", "failed": "fail"}[transaction["status"]]
    return transaction


def current(client, operation):
    """The transaction as it stands now."""
    response = client.call("GET", "/v1/transfers/" + operation.transaction["id"])
    assert response.status_code == 200, response.text
    return response.json()


def account(client, account_id):
    response = client.call("GET", "/v1/accounts/" + account_id)
    assert response.status_code == 200, response.text
    return response.json()


def entries_of(client, account_id, transaction_id):
    """The account's entries made by ``transaction_id``."""
    return [entry for entry in client.pages("/v1/accounts/{}/entries".format(account_id))
            if entry["transaction_id"] == transaction_id]


def deposit(bank, client, account_id, amount):
    """Money in from outside, counted as deposited for the conservation rule."""
    response = client.move("/v1/deposits", {"account_id": account_id, "amount": amount,
                                            "currency": bank.currency}, str(uuid.uuid4()))
    assert response.status_code == 201 and response.json()["status"] == "completed", (
        response.status_code, response.text)
    bank.deposited += amount
    return response.json()


def assert_books_right(bank, auditor, settle_timeout_s=60):
    """The bank checker finds nothing wrong (conserved, nothing negative, entries equal to
    balances, each transfer exactly once or not at all, nothing pending), and the Kafka
    mirror holds exactly the ledger's postings. ``auditor``: an admin or auditor session."""
    assert check(bank, settle_timeout_s=settle_timeout_s) == []

    def balanced():
        response = auditor.get("/v1/ledger/reconciliation")
        assert response.status_code == 200, response.text
        report = response.json()
        return report if report["balanced"] else None

    report = wait_for(balanced, timeout_s=60, interval_s=1, what="a balanced reconciliation")
    mirror = report["mirror"]
    assert (mirror["missing"], mirror["unexpected"]) == ([], [])
    assert mirror["kafka_postings"] == mirror["ledger_postings"] > 0
