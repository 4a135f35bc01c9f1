"""The ledger's postings against a real, migrated PostgreSQL database: double entry,
exactly once, overdraft limits held by the database, one commit per batch, the outbox."""
import json
import re
import uuid

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from services.ledger import balances as balance_records
from services.ledger import batches
from services.ledger.balances import balances
from services.ledger.entries import entries
from services.ledger.outbox import outbox
from services.ledger.postings import postings
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from shared.errors import ServiceUnavailable, ValidationFailed
from shared.money import settlement_account_id

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
USD_SETTLEMENT = settlement_account_id("USD")


@pytest.fixture
def service(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


def new_id():
    return str(uuid.uuid4())


def posting(debit, credit, amount, type="transfer", currency="USD", limit=0,
            transaction_id=None):
    return {
        "transaction_id": transaction_id or new_id(),
        "type": type,
        "currency": currency,
        "amount": amount,
        "debit_account_id": debit,
        "credit_account_id": credit,
        "debit_overdraft_limit": limit,
    }


def deposit(account, amount, currency="USD", **more):
    return posting(None, account, amount, type="deposit", currency=currency, **more)


def withdrawal(account, amount, **more):
    return posting(account, None, amount, type="withdrawal", **more)


def post(service, one):
    [result] = service.post([one])
    return result


def balance_of(service, account):
    return service.balances([account])[account]["balance"]


def row_of(engine, account):
    with engine.connect() as connection:
        return connection.execute(
            select(balances).where(balances.c.account_id == account)).one_or_none()


def count(engine, table, **where):
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()


def entries_of(engine, account):
    with engine.connect() as connection:
        return connection.execute(
            select(entries).where(entries.c.account_id == account)
            .order_by(entries.c.account_seq)).all()


def assert_posted(result, transaction_id, *lines):
    """``lines``: (account_id, amount, balance_after) of the entries, debit first."""
    assert result["status"] == "posted", result
    assert result["transaction_id"] == transaction_id
    assert set(result) == {"transaction_id", "status", "entries", "posted_at"}
    assert RFC3339_UTC.match(result["posted_at"])
    assert [(e["account_id"], e["amount"], e["balance_after"]) for e in result["entries"]] == [
        tuple(line) for line in lines]
    for entry in result["entries"]:
        assert set(entry) == {
            "id", "account_id", "transaction_id", "amount", "balance_after", "created_at"}
        assert entry["transaction_id"] == transaction_id
        assert RFC3339_UTC.match(entry["created_at"])
    assert sum(entry["amount"] for entry in result["entries"]) == 0
    json.dumps(result)  # what crosses the wire is plain JSON


# --- money movement --------------------------------------------------------------------


def test_deposit_transfer_and_withdrawal_move_exact_amounts(service, engine):
    alice, bob = new_id(), new_id()
    settlement_before = balance_of(service, USD_SETTLEMENT)

    first = deposit(alice, 10_000)
    result = post(service, first)
    assert_posted(result, first["transaction_id"],
                  (USD_SETTLEMENT, -10_000, settlement_before - 10_000),
                  (alice, 10_000, 10_000))

    second = posting(alice, bob, 2_500)
    moved = post(service, second)
    assert_posted(moved, second["transaction_id"],
                  (alice, -2_500, 7_500), (bob, 2_500, 2_500))

    third = withdrawal(bob, 1_000)
    assert_posted(post(service, third), third["transaction_id"],
                  (bob, -1_000, 1_500), (USD_SETTLEMENT, 1_000, settlement_before - 9_000))

    assert service.balances([alice, bob, USD_SETTLEMENT]) == {
        alice: {"balance": 7_500, "held": 0},
        bob: {"balance": 1_500, "held": 0},
        USD_SETTLEMENT: {"balance": settlement_before - 9_000, "held": 0},
    }
    assert [(e.amount, e.balance_after, e.account_seq) for e in entries_of(engine, alice)] == [
        (10_000, 10_000, 1), (-2_500, 7_500, 2)]
    assert [(e.amount, e.balance_after, e.account_seq) for e in entries_of(engine, bob)] == [
        (2_500, 2_500, 1), (-1_000, 1_500, 2)]
    assert row_of(engine, alice).last_seq == 2 and row_of(engine, bob).last_seq == 2
    settlement_seqs = [e.account_seq for e in entries_of(engine, USD_SETTLEMENT)]
    assert settlement_seqs == list(range(1, len(settlement_seqs) + 1))
    assert row_of(engine, USD_SETTLEMENT).last_seq == len(settlement_seqs)
    # The entries read back as the postings answered them, newest first.
    assert service.entries(alice)["items"] == [moved["entries"][0], result["entries"][1]]


def test_the_settlement_account_is_flagged_and_goes_negative_without_limit(service, engine):
    account = new_id()
    post(service, deposit(account, 10**15))
    settlement = row_of(engine, USD_SETTLEMENT)
    assert settlement.is_settlement and settlement.currency == "USD"
    assert settlement.balance <= -10**15 and settlement.overdraft_limit == 0
    customer = row_of(engine, account)
    assert not customer.is_settlement and customer.currency == "USD"
    # The balances RPC shows settlement accounts like any other.
    assert service.balances([USD_SETTLEMENT])[USD_SETTLEMENT]["balance"] == settlement.balance


def test_other_currencies_have_their_own_settlement_account(service, engine):
    account = new_id()
    result = post(service, deposit(account, 500, currency="JPY"))
    assert result["entries"][0]["account_id"] == settlement_account_id("JPY")
    assert row_of(engine, settlement_account_id("JPY")).currency == "JPY"
    assert row_of(engine, account).currency == "JPY"


def test_a_named_settlement_account_of_the_posting_currency_is_the_settlement_account(service):
    account = new_id()
    explicit = posting(USD_SETTLEMENT, account, 70, type="deposit")
    result = post(service, explicit)
    assert result["status"] == "posted"
    assert result["entries"][0]["account_id"] == USD_SETTLEMENT


# --- insufficient funds and overdrafts --------------------------------------------------


def test_insufficient_funds_are_rejected_and_nothing_moves(service, engine):
    alice, bob = new_id(), new_id()
    post(service, deposit(alice, 100))
    too_much = posting(alice, bob, 101)
    assert post(service, too_much) == {
        "transaction_id": too_much["transaction_id"],
        "status": "rejected",
        "reason": "insufficient_funds",
    }
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    assert count(engine, entries, transaction_id=too_much["transaction_id"]) == 0
    assert count(engine, outbox, transaction_id=too_much["transaction_id"]) == 0
    assert count(engine, postings, transaction_id=too_much["transaction_id"]) == 0
    assert row_of(engine, alice).last_seq == 1
    assert service.posting(too_much["transaction_id"]) is None
    # Exactly the balance is fine.
    assert post(service, posting(alice, bob, 100))["status"] == "posted"
    assert balance_of(service, alice) == 0


def test_an_account_the_ledger_has_never_seen_has_nothing_to_withdraw(service):
    assert post(service, withdrawal(new_id(), 1))["reason"] == "insufficient_funds"


def test_held_money_cannot_be_spent(service, engine):
    account = new_id()
    post(service, deposit(account, 100))
    with engine.begin() as connection:
        connection.execute(update(balances).where(balances.c.account_id == account).values(held=60))
    assert post(service, withdrawal(account, 41))["reason"] == "insufficient_funds"
    assert post(service, withdrawal(account, 40))["status"] == "posted"
    assert service.balances([account])[account] == {"balance": 60, "held": 60}


def test_an_overdraft_limit_allows_going_negative_down_to_minus_the_limit(service, engine):
    account = new_id()
    post(service, deposit(account, 100))
    result = post(service, withdrawal(account, 600, limit=500))
    assert result["status"] == "posted" and result["entries"][0]["balance_after"] == -500
    assert row_of(engine, account).overdraft_limit == 500
    assert post(service, withdrawal(account, 1, limit=500))["reason"] == "insufficient_funds"
    assert balance_of(service, account) == -500
    # The accounts service raised the limit: the posting carries it.
    assert post(service, withdrawal(account, 1, limit=501))["status"] == "posted"
    assert balance_of(service, account) == -501
    # A lowered limit below the debt refuses further debits (credits still arrive).
    assert post(service, withdrawal(account, 1, limit=100))["reason"] == "insufficient_funds"
    assert row_of(engine, account).overdraft_limit == 501  # the rejected posting left nothing
    assert post(service, deposit(account, 1))["status"] == "posted"
    assert balance_of(service, account) == -500


def test_without_an_overdraft_limit_an_account_never_goes_negative(service):
    account = new_id()
    post(service, deposit(account, 10))
    assert post(service, withdrawal(account, 11, limit=0))["reason"] == "insufficient_funds"
    no_limit_given = withdrawal(account, 11)
    del no_limit_given["debit_overdraft_limit"]  # missing counts as 0
    assert post(service, no_limit_given)["reason"] == "insufficient_funds"
    assert balance_of(service, account) == 10


# --- the database's own guarantee ------------------------------------------------------


def test_the_constraint_refuses_an_overdraft_the_sql_layer_is_asked_for(engine):
    account = new_id()
    with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
        balance_records.ensure_rows(
            connection, [{"account_id": account, "currency": "USD", "is_settlement": False}])
        balance_records.apply(connection, account, -1)
    assert raised.value.orig.pgcode == "23514"  # check_violation
    assert raised.value.orig.diag.constraint_name == "balance_within_overdraft"
    assert row_of(engine, account) is None


def test_the_constraint_refuses_a_balance_set_too_low_directly(service, engine):
    account = new_id()
    post(service, deposit(account, 5))
    with pytest.raises(IntegrityError, match="balance_within_overdraft"), \
            engine.begin() as connection:
        connection.execute(text(
            "UPDATE ledger.balances SET balance = -1 WHERE account_id = :a"), {"a": account})
    with pytest.raises(IntegrityError, match="balance_within_overdraft"), \
            engine.begin() as connection:
        connection.execute(text(
            "UPDATE ledger.balances SET overdraft_limit = 10, balance = -11 WHERE account_id = :a"),
            {"a": account})
    assert balance_of(service, account) == 5


def test_the_constraint_rejects_a_posting_the_python_check_let_through(
        service, engine, monkeypatch):
    monkeypatch.setattr(batches, "check", lambda posting, accounts: None)
    alice, bob = new_id(), new_id()
    post(service, deposit(alice, 100))
    too_much, fine = posting(alice, bob, 150), posting(alice, bob, 30)
    results = service.post([too_much, fine])
    assert results[0] == {"transaction_id": too_much["transaction_id"],
                          "status": "rejected", "reason": "insufficient_funds"}
    assert results[1]["status"] == "posted"
    assert results[1]["entries"][0]["balance_after"] == 70
    assert service.balances([alice, bob]) == {
        alice: {"balance": 70, "held": 0}, bob: {"balance": 30, "held": 0}}
    assert count(engine, entries, transaction_id=too_much["transaction_id"]) == 0
    assert [e.account_seq for e in entries_of(engine, alice)] == [1, 2]


def test_a_balance_beyond_bigint_rejects_that_posting_alone(service, engine):
    huge, other = new_id(), new_id()
    with engine.begin() as connection:
        connection.execute(balances.insert().values(
            account_id=huge, currency="USD", balance=2**63 - 10))
    try:
        results = service.post([deposit(huge, 10**15), deposit(other, 10)])
        assert results[0]["status"] == "rejected" and results[0]["reason"] == "malformed_posting"
        assert results[1]["status"] == "posted"
    finally:
        with engine.begin() as connection:  # it has no entries: keep the books reconcilable
            connection.execute(balances.delete().where(balances.c.account_id == huge))


# --- batches ---------------------------------------------------------------------------


def test_a_batch_with_bad_postings_commits_the_others(service, engine):
    alice, bob = new_id(), new_id()
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
    alice, bob = new_id(), new_id()
    results = service.post([
        deposit(alice, 50), posting(alice, bob, 50), posting(bob, alice, 20),
        posting(alice, bob, 21)])
    assert [r["status"] for r in results] == ["posted", "posted", "posted", "rejected"]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 20, "held": 0}, bob: {"balance": 30, "held": 0}}


def test_an_empty_batch_answers_an_empty_list(service):
    assert service.post([]) == []


@pytest.mark.parametrize("not_a_batch", ["abc", None, {"transaction_id": "x"}, 5])
def test_what_is_not_a_list_is_refused(service, not_a_batch):
    with pytest.raises(ValidationFailed):
        service.post(not_a_batch)


def test_a_batch_too_long_is_refused(service):
    with pytest.raises(ValidationFailed):
        service.post([deposit(new_id(), 1)] * 1001)


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
    {"debit_overdraft_limit": -1},
    {"debit_overdraft_limit": 1.0},
    {"debit_overdraft_limit": False},
    {"debit_overdraft_limit": None},
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


def test_a_posting_that_is_no_object_is_rejected_in_its_place(service):
    account = new_id()
    results = service.post(["junk", deposit(account, 3), None])
    assert results[0] == {"transaction_id": None, "status": "rejected",
                          "reason": "malformed_posting"}
    assert results[1]["status"] == "posted"
    assert results[2]["reason"] == "malformed_posting"


def test_an_upper_case_transaction_id_is_answered_canonically(service):
    one = deposit(new_id(), 3)
    one["transaction_id"] = one["transaction_id"].upper()
    assert post(service, one)["transaction_id"] == one["transaction_id"].lower()


# --- currencies ------------------------------------------------------------------------


def test_a_posting_in_another_currency_than_the_account_is_rejected(service, engine):
    dollars, euros = new_id(), new_id()
    post(service, deposit(dollars, 100))
    post(service, deposit(euros, 100, currency="EUR"))
    mixed = posting(dollars, euros, 10)
    assert post(service, mixed)["reason"] == "currency_mismatch"
    assert post(service, posting(dollars, euros, 10, currency="EUR"))["reason"] == (
        "currency_mismatch")
    assert service.balances([dollars, euros]) == {
        dollars: {"balance": 100, "held": 0}, euros: {"balance": 100, "held": 0}}
    assert row_of(engine, euros).currency == "EUR"


def test_another_currencys_settlement_account_is_a_currency_mismatch(service):
    account = new_id()
    sneaky = posting(settlement_account_id("EUR"), account, 10, type="deposit")
    assert post(service, sneaky)["reason"] == "currency_mismatch"
    assert balance_of(service, account) == 0


# --- exactly once ----------------------------------------------------------------------


def test_replaying_a_posted_transaction_answers_the_same_and_moves_nothing(service, engine):
    alice, bob = new_id(), new_id()
    post(service, deposit(alice, 100))
    transfer = posting(alice, bob, 100)
    first = post(service, transfer)
    assert first["status"] == "posted"
    # alice has nothing left: a second move would be refused, a replay is not.
    assert post(service, transfer) == first
    assert service.post([transfer, deposit(bob, 1), transfer])[0::2] == [first, first]
    assert service.posting(transfer["transaction_id"]) == first
    assert service.balances([alice, bob]) == {
        alice: {"balance": 0, "held": 0}, bob: {"balance": 101, "held": 0}}
    assert count(engine, entries, transaction_id=transfer["transaction_id"]) == 2
    assert count(engine, outbox, transaction_id=transfer["transaction_id"]) == 2
    assert row_of(engine, alice).last_seq == 2


def test_the_same_transaction_twice_in_one_batch_posts_once(service, engine):
    account = new_id()
    one = deposit(account, 40)
    results = service.post([one, dict(one)])
    assert results[0]["status"] == "posted" and results[1] == results[0]
    assert balance_of(service, account) == 40
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


def test_a_replay_with_other_content_still_answers_the_original(service):
    account = new_id()
    one = deposit(account, 40)
    first = post(service, one)
    assert post(service, dict(one, amount=999)) == first
    assert balance_of(service, account) == 40


def test_a_rejected_transaction_can_post_later(service):
    alice, bob = new_id(), new_id()
    transfer = posting(alice, bob, 10)
    assert post(service, transfer)["reason"] == "insufficient_funds"
    post(service, deposit(alice, 10))
    assert post(service, transfer)["status"] == "posted"


def test_posting_answers_none_for_unknown_or_malformed_ids(service):
    assert service.posting(new_id()) is None
    assert service.posting("nope") is None
    assert service.posting(None) is None


def test_a_replay_racing_its_original_is_decided_by_the_primary_key(
        service, engine, monkeypatch):
    # As if the pre-read had missed the original (it committed just after): the claim
    # in the savepoint finds it and answers it.
    account = new_id()
    one = deposit(account, 25)
    first = post(service, one)
    monkeypatch.setattr(batches.posting_records, "stored_results",
                        _blind_first_call(batches.posting_records.stored_results))
    assert post(service, one) == first
    assert balance_of(service, account) == 25
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


def _blind_first_call(real):
    calls = []

    def stored_results(connection, transaction_ids):
        calls.append(transaction_ids)
        return {} if len(calls) == 1 else real(connection, transaction_ids)

    return stored_results


# --- immutability ------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE ledger.entries SET amount = amount * 2 WHERE transaction_id = :t",
    "UPDATE ledger.entries SET balance_after = 0 WHERE transaction_id = :t",
    "DELETE FROM ledger.entries WHERE transaction_id = :t",
    "TRUNCATE ledger.entries",
    "UPDATE ledger.postings SET amount = 1 WHERE transaction_id = :t",
    "DELETE FROM ledger.postings WHERE transaction_id = :t",
    "TRUNCATE ledger.postings",
])
def test_posted_entries_and_postings_are_immutable(service, engine, statement):
    account = new_id()
    one = deposit(account, 30)
    result = post(service, one)
    with pytest.raises(IntegrityError, match="immutable"), engine.begin() as connection:
        connection.execute(text(statement), {"t": one["transaction_id"]})
    assert service.posting(one["transaction_id"]) == result
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


# --- the outbox --------------------------------------------------------------------------


def test_every_entry_has_one_outbox_message_in_its_account_order(service, engine):
    alice, bob = new_id(), new_id()
    batch = [deposit(alice, 100), posting(alice, bob, 30), posting(alice, bob, 500),
             withdrawal(bob, 10)]
    results = service.post(batch)
    with engine.connect() as connection:
        rows = connection.execute(
            select(outbox).where(outbox.c.transaction_id.in_(
                [p["transaction_id"] for p in batch])).order_by(outbox.c.id)).all()
    posted = [r for r in results if r["status"] == "posted"]
    assert len(rows) == 2 * len(posted) == 6
    by_entry = {row.payload["id"]: row for row in rows}
    for result, given in zip(results, batch):
        if result["status"] != "posted":
            continue
        debit, credit = result["entries"]
        for entry, counterparty in ((debit, credit["account_id"]),
                                    (credit, debit["account_id"])):
            row = by_entry[entry["id"]]
            assert row.account_id == entry["account_id"]
            assert row.transaction_id == given["transaction_id"]
            assert row.published_at is None
            assert row.payload == dict(
                entry,
                account_seq=row.account_seq,
                currency="USD",
                counterparty_account_id=counterparty,
                posting={
                    "transaction_id": given["transaction_id"],
                    "type": given["type"],
                    "currency": "USD",
                    "amount": given["amount"],
                    "debit_account_id": debit["account_id"],
                    "credit_account_id": credit["account_id"],
                    "posted_at": result["posted_at"],
                },
            )
    # The messages carry each account's sequence, gapless, in id order.
    for account in (alice, bob):
        seqs = [row.account_seq for row in rows if row.account_id == account]
        assert seqs == [e.account_seq for e in entries_of(engine, account)] == [1, 2]


def test_the_relay_finds_unpublished_messages_by_an_index(engine):
    with engine.connect() as connection:
        definition = connection.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'ledger' "
            "AND indexname = 'outbox_unpublished'")).scalar_one()
    assert "(id)" in definition and "published_at IS NULL" in definition


# --- retries of the whole batch ----------------------------------------------------------


class _Deadlock(Exception):
    pgcode = "40P01"


def test_a_batch_aborted_by_a_deadlock_runs_again(service, monkeypatch):
    real, calls = batches.post_batch, []

    def flaky(connection, given):
        calls.append(1)
        if len(calls) == 1:
            real(connection, given)  # its writes vanish with the aborted transaction
            raise OperationalError("SELECT", {}, _Deadlock())
        return real(connection, given)

    monkeypatch.setattr(batches, "post_batch", flaky)
    account = new_id()
    [result] = service.post([deposit(account, 9)])
    assert result["status"] == "posted" and len(calls) == 2
    assert balance_of(service, account) == 9


def test_other_database_errors_are_not_retried(service, monkeypatch):
    calls = []

    def broken(connection, given):
        calls.append(1)
        raise OperationalError("SELECT", {}, Exception("connection lost"))

    monkeypatch.setattr(batches, "post_batch", broken)
    # A lost connection is the caller's 503 (retry later), not a retry here.
    with pytest.raises(ServiceUnavailable):
        service.post([deposit(new_id(), 9)])
    assert len(calls) == 1
