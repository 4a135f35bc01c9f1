"""Batches of postings in the ledger, against a real PostgreSQL: each posting answered
in its place, a bad one rejected alone and moving nothing, later postings seeing the earlier
ones; and one commit, with the same statements, for a batch of a thousand as for ten."""
import uuid

import pytest
from sqlalchemy import event, func, select

from services.ledger.entries import entries
from services.ledger.outbox import outbox
from services.ledger.postings import postings
from services.ledger.service import MAX_POSTINGS
from shared.errors import ValidationFailed
from tests.support.ledger import (  # noqa: F401 - fixtures
    USD_SETTLEMENT,
    assert_posted,
    count,
    deposit,
    entries_of,
    new_id,
    open_account,
    post,
    posting,
    rejected,
    row_of,
    service,
)


# --- batches ---------------------------------------------------------------------------


def test_a_batch_with_bad_postings_commits_the_others(service, engine):
    alice, bob = open_account(service), open_account(service)
    batch = [
        deposit(alice, 100),
        posting(alice, bob, 500),                      # more than alice has
        posting(alice, bob, 40),
        posting(alice, bob, 0),                        # malformed
        deposit(alice, 10, currency="EUR"),            # alice keeps dollars
        posting(bob, alice, 15),
    ]
    results = service.post(batch)
    assert [(r["status"], r.get("reason")) for r in results] == [
        ("posted", None),
        ("rejected", "insufficient_funds"),
        ("posted", None),
        ("rejected", "malformed_posting"),
        ("rejected", "currency_mismatch"),
        ("posted", None),
    ]
    assert [r["transaction_id"] for r in results] == [p["transaction_id"] for p in batch]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 75, "held": 0}, bob: {"balance": 25, "held": 0}}
    # The rejected postings left no gap in the accounts' sequences.
    assert [(e.amount, e.balance_after, e.account_seq) for e in entries_of(engine, alice)] == [
        (100, 100, 1), (-40, 60, 2), (15, 75, 3)]
    # All of a batch commits at once: one database transaction.
    assert len({r["posted_at"] for r in results if r["status"] == "posted"}) == 1


def test_later_postings_of_a_batch_see_the_earlier_ones(service):
    alice, bob = open_account(service), open_account(service)
    results = service.post([
        deposit(alice, 50), posting(alice, bob, 50), posting(bob, alice, 20),
        posting(alice, bob, 21)])
    assert [r["status"] for r in results] == ["posted", "posted", "posted", "rejected"]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 20, "held": 0}, bob: {"balance": 30, "held": 0}}


def test_a_deposit_then_a_transfer_of_it_in_one_batch_post_but_not_the_other_way_round(
        service):
    alice, bob, carol = (open_account(service) for _ in range(3))
    funding, spending = deposit(alice, 100), posting(alice, bob, 100)
    results = service.post([funding, spending])
    assert_posted(results[1], spending["transaction_id"], (alice, -100, 0), (bob, 100, 100))
    spending, funding = posting(carol, bob, 100), deposit(carol, 100)
    results = service.post([spending, funding])
    assert results[0] == rejected(spending, "insufficient_funds")
    assert results[1]["status"] == "posted"
    assert service.balances([alice, bob, carol]) == {
        alice: {"balance": 0, "held": 0}, bob: {"balance": 100, "held": 0},
        carol: {"balance": 100, "held": 0}}


def test_an_empty_batch_answers_an_empty_list(service):
    assert service.post([]) == []
    assert service.post([], atomic=True) == []


@pytest.mark.parametrize("not_a_batch", ["abc", None, {"transaction_id": "x"}, 5])
def test_what_is_not_a_list_is_refused(service, not_a_batch):
    with pytest.raises(ValidationFailed):
        service.post(not_a_batch)


def test_a_batch_too_long_is_refused(service):
    with pytest.raises(ValidationFailed):
        service.post([deposit(new_id(), 1)] * (MAX_POSTINGS + 1))


ACCOUNT = str(uuid.uuid4())


@pytest.mark.parametrize("change", [
    {"transaction_id": "not-a-uuid"},
    {"transaction_id": None},
    {"type": "gift"},
    {"type": None},
    {"currency": "usd"},
    {"currency": "XXX"},
    {"amount": 0},
    {"amount": -5},
    {"amount": 1.5},
    {"amount": True},
    {"amount": "10"},
    {"amount": 10**15 + 1},
    {"debit_account_id": "nope"},
    {"credit_account_id": 7},
    {"debit_account_id": ACCOUNT, "credit_account_id": ACCOUNT},
    {"debit_account_id": None, "credit_account_id": None},
    {"debit_account_id": None, "credit_account_id": USD_SETTLEMENT},
    {"expected_versions": "1"},
    {"expected_versions": [1]},
    {"expected_versions": {"not-a-uuid": 1}},
    {"expected_versions": {ACCOUNT: 1}},  # an account the posting does not name
])
def test_malformed_postings_are_rejected_and_move_nothing(service, engine, change):
    good = posting(None, new_id(), 10, type="deposit")
    bad = dict(good, **change)
    result = post(service, bad)
    expected_id = good["transaction_id"] if "transaction_id" not in change else (
        change["transaction_id"])
    assert result == {"transaction_id": expected_id, "status": "rejected",
                      "reason": "malformed_posting"}
    assert count(engine, postings, transaction_id=good["transaction_id"]) == 0


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0, None])
def test_an_expected_version_that_is_no_positive_integer_is_malformed(service, version):
    account = open_account(service)
    one = deposit(account, 10, expected_versions={account: version})
    assert post(service, one) == rejected(one, "malformed_posting")
    assert post(service, dict(one, expected_versions={account: 1}))["status"] == "posted"


def test_a_posting_that_is_no_object_is_rejected_in_its_place(service):
    account = open_account(service)
    results = service.post(["junk", deposit(account, 3), None])
    assert results[0] == {"transaction_id": None, "status": "rejected",
                          "reason": "malformed_posting"}
    assert results[1]["status"] == "posted"
    assert results[2]["reason"] == "malformed_posting"


def test_an_upper_case_transaction_id_is_answered_canonically(service):
    one = deposit(open_account(service), 3)
    one["transaction_id"] = one["transaction_id"].upper()
    assert post(service, one)["transaction_id"] == one["transaction_id"].lower()


# --- set-based writes ----------------------------------------------------------------------


def sent_to_postgresql(engine, call):
    """``(call's result, statements, commits)``: what ``call`` sent through ``engine``."""
    seen = {"statements": 0, "commits": 0}

    def on_statement(*args):
        seen["statements"] += 1

    def on_commit(*args):
        seen["commits"] += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    try:
        result = call()
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)
    return result, seen["statements"], seen["commits"]


def paid_transfers(people, size):
    """``size`` postings among ``people``: deposits, each followed by a transfer it pays."""
    batch = []
    for index in range(size // 2):
        source, target = people[index % len(people)], people[(index + 1) % len(people)]
        batch += [deposit(source, 7), posting(source, target, 5)]
    return batch


def test_a_batch_of_a_thousand_postings_takes_the_statements_of_a_batch_of_ten(
        service, engine):
    people = [open_account(service) for _ in range(10)]
    small, large = paid_transfers(people, 10), paid_transfers(people, MAX_POSTINGS)
    small_results, small_statements, small_commits = sent_to_postgresql(
        engine, lambda: service.post(small))
    large_results, large_statements, large_commits = sent_to_postgresql(
        engine, lambda: service.post(large))
    assert all(result["status"] == "posted" for result in small_results + large_results)
    # One commit each, and the same statements however many postings the batch holds.
    assert small_commits == large_commits == 1
    assert large_statements == small_statements, (small_statements, large_statements)
    # And every posting is in the books, exactly.
    expected = dict.fromkeys(people, 0)
    for one in small + large:
        if one["debit_account_id"] is not None:
            expected[one["debit_account_id"]] -= one["amount"]
        expected[one["credit_account_id"]] += one["amount"]
    assert {account: money["balance"]
            for account, money in service.balances(people).items()} == expected
    ids = [one["transaction_id"] for one in large]
    with engine.connect() as connection:
        for table, per_posting in ((postings, 1), (entries, 2), (outbox, 2)):
            found = connection.execute(select(func.count()).select_from(table).where(
                table.c.transaction_id.in_(ids))).scalar_one()
            assert found == per_posting * len(large), table.name
    for account in people:
        seqs = [entry.account_seq for entry in entries_of(engine, account)]
        assert seqs == list(range(1, len(seqs) + 1)) and row_of(engine, account).last_seq == (
            len(seqs))
