"""The bank checker's reading: once the bank workload (harness/bank.py) has run, wait for its
transactions to settle, read the books through the API as the clients who own them, and
judge them with the rules of harness/bank_rules.py.

Reading and judging are apart: ``read_books`` reads what the system shows into ``Books``;
the rules are pure functions of the run's ``History`` and those books, so a known-bad
history can be fed to them (their own tests).
"""
import time
from dataclasses import dataclass, field

from harness.bank_rules import judge


@dataclass
class Books:
    """The system as the API shows it after the run."""

    pending: list  # transactions still pending when the wait for them ended
    accounts: dict  # account id -> the account (balance, available_balance)
    entries: dict  # account id -> every entry of the account, all pages
    transactions: dict  # transaction id -> the transaction, from every client's list
    payments: dict  # payment id -> the payment, for those that answered 200
    payment_errors: dict = field(default_factory=dict)  # payment id -> status of its GET

    @property
    def entries_by_transaction(self):
        found = {}
        for entries in self.entries.values():
            for entry in entries:
                found.setdefault(entry["transaction_id"], []).append(entry)
        return found


def settle(bank, timeout_s=90):
    """Wait until none of the bank's transactions is pending. The ones still pending."""
    deadline = time.monotonic() + timeout_s
    while True:
        pending = [tx for client in bank.clients
                   for tx in client.pages("/v1/transactions", {"status": "pending"})]
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(1)


def check(bank, settle_timeout_s=90):
    """Read the books through the API; a list of problems (empty: the books are right)."""
    pending = settle(bank, settle_timeout_s)
    return judge(bank.history(), read_books(bank, pending))


def read_books(bank, pending=()):
    """Everything the rules judge, read through the API by the clients who own it."""
    payments, payment_errors = {}, {}
    for payment in bank.payments:
        if payment.payment_id is None:
            continue
        response = payment.payer.fetch("/v1/payments/" + payment.payment_id)
        if response.status_code == 200:
            payments[payment.payment_id] = response.json()
        else:
            payment_errors[payment.payment_id] = response.status_code
    accounts, entries = {}, {}
    for client in bank.clients:
        for account_id in client.accounts:
            accounts[account_id] = client.read("/v1/accounts/" + account_id)
            entries[account_id] = client.pages("/v1/accounts/{}/entries".format(account_id))
    transactions = {tx["id"]: tx for client in bank.clients
                    for tx in client.pages("/v1/transactions")}
    return Books(list(pending), accounts, entries, transactions, payments, payment_errors)
