"""The bank checker checks itself: it is fed a run and the books that run should leave, then
the same with one rule broken at a time, and must name that rule and nothing else.

The checker (harness/bank_rules.py) decides whether every chaos experiment passes; a rule
that never fires would pass a broken system. Each world below is consistent (balances follow the
entries, money is conserved) except for the one thing a test breaks."""
import copy

import pytest

from harness.bank import History, Operation, Payment, read_pages
from harness.bank_checker import Books
from harness.bank_rules import check_reconciliation, judge

INITIAL = 1_000
ALICE_1, ALICE_2, BOB_1, BOB_2 = "acc-alice-1", "acc-alice-2", "acc-bob-1", "acc-bob-2"


class World:
    """A small run and its books, kept consistent as postings are added."""

    def __init__(self):
        self.operations = []
        self.payments = []
        self.accounts = {}
        self.entries = {}
        self.transactions = {}
        self.deposited = 0
        self._ids = 0
        for account in (ALICE_1, ALICE_2, BOB_1, BOB_2):
            self.accounts[account] = {"id": account, "balance": 0, "available_balance": 0}
            self.entries[account] = []
            self.deposited += INITIAL
            self.post("deposit", None, account, INITIAL, transaction_id="dep-" + account)

    def post(self, kind, source, destination, amount, transaction_id, status="completed",
             record=True):
        """A transaction in the list and, if it moved money, its entries and balances."""
        if record:
            self.transactions[transaction_id] = {
                "id": transaction_id, "type": kind, "status": status, "amount": amount,
                "source_account_id": source, "destination_account_id": destination}
        if status == "completed" and kind != "payment":
            self.move(transaction_id, source, destination, amount)
        return self.transactions.get(transaction_id)

    def move(self, transaction_id, source, destination, amount):
        """Entries and balances only: money moving under ``transaction_id``."""
        for account, signed in ((source, -amount), (destination, amount)):
            if account in self.accounts:
                self._ids += 1
                self.entries[account].append({"id": "e{}".format(self._ids),
                                              "transaction_id": transaction_id,
                                              "account_id": account, "amount": signed})
                self.accounts[account]["balance"] += signed
                self.accounts[account]["available_balance"] += signed

    def unmove(self, transaction_id):
        """Take a transaction's entries (and their effect on balances) out of the books."""
        for account, entries in self.entries.items():
            for entry in [e for e in entries if e["transaction_id"] == transaction_id]:
                entries.remove(entry)
                self.accounts[account]["balance"] -= entry["amount"]
                self.accounts[account]["available_balance"] -= entry["amount"]

    def hold(self, account, amount):
        self.accounts[account]["available_balance"] -= amount

    def transfer(self, key, source, destination, amount, outcome="ok", status="completed",
                 answered=True, replayed_same=None):
        transaction_id = "tx-" + key
        transaction = self.post("transfer", source, destination, amount, transaction_id,
                                status=status)
        operation = Operation(key, source, destination, amount, started_s=0.0,
                              outcome=outcome, status_code=201 if answered else 0,
                              transaction=dict(transaction) if answered else None,
                              replayed_same=replayed_same)
        self.operations.append(operation)
        return operation

    def history(self):
        return History(self.deposited, self.operations, self.payments)

    def books(self, pending=(), payments=None, payment_errors=None):
        return Books(list(pending), self.accounts, self.entries, self.transactions,
                     payments if payments is not None else self.seen_payments,
                     payment_errors or {})


def a_run():
    """Transfers that completed, failed, and got no answer (one made its transaction, one
    did not); a payment captured in part, one still authorized, one whose authorization got
    no answer but holds its money."""
    world = World()
    world.transfer("completed", ALICE_1, BOB_1, 100, replayed_same=True)
    world.transfer("refused", ALICE_2, BOB_2, 5_000, outcome="fail", status="failed")
    world.transfer("unanswered-made", BOB_1, ALICE_1, 50, outcome="unknown", answered=False)
    world.transfer("unanswered-none", BOB_2, ALICE_2, 70, outcome="unknown", answered=False,
                   status=None)
    del world.transactions["tx-unanswered-none"]  # the system never made it

    captured = Payment(None, BOB_1, None, ALICE_1, 300, 200, payment_id="pay-captured",
                       authorized="ok", captured="ok")
    world.post("payment", BOB_1, ALICE_1, 300, "auth-captured")
    world.post("capture", BOB_1, ALICE_1, 200, "cap-captured")
    open_one = Payment(None, BOB_2, None, ALICE_2, 150, 100, payment_id="pay-open",
                       authorized="ok", captured="invoke")
    world.post("payment", BOB_2, ALICE_2, 150, "auth-open")
    world.hold(BOB_2, 150)
    unanswered = Payment(None, ALICE_2, None, BOB_1, 80, 10, authorized="unknown")
    world.hold(ALICE_2, 80)
    world.payments = [captured, open_one, unanswered]
    world.seen_payments = {
        "pay-captured": {"id": "pay-captured", "status": "captured", "amount": 300,
                         "captured_amount": 200, "transactions": ["auth-captured",
                                                                  "cap-captured"]},
        "pay-open": {"id": "pay-open", "status": "authorized", "amount": 150,
                     "captured_amount": 0, "transactions": ["auth-open"]},
    }
    return world


@pytest.fixture
def world():
    return a_run()


def the_one_problem(world, **books):
    problems = judge(world.history(), world.books(**books))
    assert len(problems) == 1, problems
    return problems[0]


def test_a_run_whose_books_are_right_passes(world):
    assert judge(world.history(), world.books()) == []


# --- transfers ------------------------------------------------------------------------------


def test_an_acknowledged_transfer_lost_from_the_books_is_named(world):
    world.unmove("tx-completed")
    del world.transactions["tx-completed"]
    assert the_one_problem(world) == "transaction tx-completed missing from the list"


def test_an_acknowledged_transfer_that_later_failed_is_named(world):
    world.unmove("tx-completed")
    world.transactions["tx-completed"]["status"] = "failed"
    assert the_one_problem(world) == "acknowledged tx-completed is now failed"


def test_a_transfer_posted_twice_is_named(world):
    world.move("tx-completed", ALICE_1, BOB_1, 100)
    assert the_one_problem(world) == "completed tx-completed posted as [-100, -100, 100, 100]"


def test_a_completed_transfer_posted_for_another_amount_is_named(world):
    world.unmove("tx-completed")
    world.move("tx-completed", ALICE_1, BOB_1, 90)
    assert the_one_problem(world) == "completed tx-completed posted as [-90, 90]"


def test_a_failed_transfer_that_moved_money_is_named(world):
    world.transfer("refused-but-moved", ALICE_2, BOB_2, 30, outcome="fail", status="failed")
    world.move("tx-refused-but-moved", ALICE_2, BOB_2, 30)
    problem = the_one_problem(world)
    assert problem.startswith("failed tx-refused-but-moved moved money")


def test_a_replay_answered_with_another_transaction_is_named(world):
    world.operations[0].replayed_same = False
    assert the_one_problem(world) == "replay of completed answered another transaction"


def test_an_unanswered_transfer_made_twice_is_named(world):
    # The unanswered operation may have made one transaction; a second is nobody's.
    world.post("transfer", BOB_1, ALICE_1, 50, "tx-unanswered-made-again")
    assert the_one_problem(world) == (
        "transfer tx-unanswered-made-again was made by no operation of the run")


def test_a_transfer_nobody_asked_for_is_named(world):
    world.post("transfer", BOB_2, ALICE_1, 5, "tx-from-nowhere")
    assert the_one_problem(world) == "transfer tx-from-nowhere was made by no operation of the run"


def test_a_transaction_left_pending_is_named(world):
    pending = {"id": "tx-stuck", "status": "pending"}
    assert the_one_problem(world, pending=[pending]) == (
        "1 transactions still pending: ['tx-stuck']")


# --- balances -------------------------------------------------------------------------------


def test_a_negative_balance_is_named(world):
    world.transfer("overdrawn", BOB_1, BOB_2, 1_000)  # 850 there: 150 below zero
    assert the_one_problem(world) == "account acc-bob-1 is negative: -150"


def test_a_balance_its_entries_do_not_add_up_to_is_named(world):
    # Money moved between two balances without entries.
    for account, change in ((ALICE_1, 10), (ALICE_2, -10)):
        world.accounts[account]["balance"] += change
        world.accounts[account]["available_balance"] += change
    problems = judge(world.history(), world.books())
    assert problems == [
        "account acc-alice-1: entries sum to 1150, balance is 1160",
        "account acc-alice-2: entries sum to 1000, balance is 990",
    ]


def test_money_that_appeared_from_nowhere_is_named(world):
    world.post("deposit", None, ALICE_1, 10, "dep-nobody-made")
    assert the_one_problem(world) == "money not conserved: 4000 deposited, 4010 in the accounts"


# --- payments -------------------------------------------------------------------------------


def test_a_payment_that_does_not_answer_is_named(world):
    seen = dict(world.seen_payments)
    del seen["pay-captured"]
    problem = the_one_problem(world, payments=seen, payment_errors={"pay-captured": 404})
    assert problem == "payment pay-captured answers 404"


def test_an_acknowledged_capture_that_did_not_stay_is_named(world):
    world.unmove("cap-captured")
    world.seen_payments["pay-captured"].update(status="voided", captured_amount=0)
    assert the_one_problem(world) == "acknowledged capture of pay-captured is now voided 0"


def test_a_capture_that_moved_money_twice_is_named(world):
    world.post("capture", BOB_1, ALICE_1, 200, "cap-captured-again")
    world.seen_payments["pay-captured"]["transactions"].append("cap-captured-again")
    assert the_one_problem(world) == (
        "capture of pay-captured posted as [[-200, 200], [-200, 200]]")


def test_money_held_for_no_open_authorization_is_named(world):
    world.seen_payments["pay-open"]["status"] = "voided"  # voided, yet its hold remains
    assert the_one_problem(world) == (
        "account acc-bob-2 holds 150 more than its open authorizations 0, "
        "which no unanswered ones [] add up to")


def test_money_held_beyond_the_unanswered_authorizations_is_named(world):
    world.hold(ALICE_2, 1)  # 81 held; the only unanswered authorization there is 80
    assert the_one_problem(world) == (
        "account acc-alice-2 holds 81 more than its open authorizations 0, "
        "which no unanswered ones [80] add up to")


# --- the reconciliation and the Kafka mirror -----------------------------------------------------


def balanced_report():
    return {
        "balanced": True,
        "currencies": {"USD": {"entries_sum": 0, "accounts_sum": 0}},
        "accounts_checked": 5,
        "discrepancies": [],
        "mirror": {"topic": "ledger.postings", "ledger_postings": 12, "kafka_postings": 12,
                   "missing": [], "missing_count": 0, "unexpected": [],
                   "unexpected_count": 0, "duplicates": 3, "unpublished": 0},
    }


def test_a_balanced_reconciliation_passes():
    assert check_reconciliation(balanced_report()) == []


def test_a_gap_in_the_kafka_mirror_is_named():
    report = balanced_report()
    report["balanced"] = False
    report["mirror"].update(kafka_postings=10, missing=["acc-bob-1:3", "acc-bob-1:4"],
                            missing_count=2)
    assert check_reconciliation(report) == [
        "the Kafka mirror is missing 2 postings: ['acc-bob-1:3', 'acc-bob-1:4']"]


def test_postings_in_the_mirror_the_ledger_does_not_have_are_named():
    report = balanced_report()
    report["balanced"] = False
    report["mirror"].update(unexpected=["acc-x:1"], unexpected_count=1)
    assert check_reconciliation(report) == [
        "the Kafka mirror has 1 postings the ledger does not: ['acc-x:1']"]


def test_a_ledger_that_does_not_balance_is_named():
    report = balanced_report()
    report["balanced"] = False
    report["currencies"]["USD"] = {"entries_sum": 7, "accounts_sum": 7}
    report["discrepancies"] = [{"account_id": "acc-alice-1", "balance": 10, "entries_sum": 3}]
    assert check_reconciliation(report) == [
        "USD does not sum to zero: entries 7, accounts 7",
        "ledger account acc-alice-1: entries sum to 3, balance is 10",
    ]


def test_a_report_that_says_unbalanced_without_saying_why_is_still_a_problem():
    report = balanced_report()
    report["balanced"] = False
    [problem] = check_reconciliation(report)
    assert problem.startswith("reconciliation not balanced")


# --- reading every page -------------------------------------------------------------------------


def paginated(items, page_size):
    """``fetch_page(cursor)`` over ``items``, as the API pages them; the cursors it was
    asked for."""
    asked = []

    def fetch_page(cursor):
        asked.append(cursor)
        start = int(cursor) if cursor else 0
        end = start + page_size
        return {"items": items[start:end],
                "next_cursor": str(end) if end < len(items) else None}

    return fetch_page, asked


def test_every_page_is_read_in_order():
    items = list(range(7))
    fetch_page, asked = paginated(items, page_size=3)
    assert read_pages(fetch_page) == items
    assert asked == [None, "3", "6"]


def test_a_list_of_one_page_is_read_in_one_request():
    fetch_page, asked = paginated([1, 2], page_size=3)
    assert read_pages(fetch_page) == [1, 2]
    assert asked == [None]


def test_a_list_that_leads_back_on_itself_is_an_error_not_an_endless_read():
    pages = {None: {"items": [1], "next_cursor": "a"},
             "a": {"items": [2], "next_cursor": "b"},
             "b": {"items": [3], "next_cursor": "a"}}
    with pytest.raises(RuntimeError, match="loops at cursor 'a'"):
        read_pages(lambda cursor: copy.deepcopy(pages[cursor]))
