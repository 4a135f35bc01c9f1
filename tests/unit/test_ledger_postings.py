"""The ledger's postings against a real, migrated PostgreSQL database: double entry,
exactly once, only to opened accounts in their state, overdraft limits held by the
database, one commit and a fixed set of statements per batch, atomic batches, the outbox."""
import json
import re
import uuid

import eventlet
import psycopg2
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from services.ledger import balances as balance_records
from services.ledger import batches, rules
from services.ledger import postings as posting_records
from services.ledger.accounts import accounts
from services.ledger.balances import balances
from services.ledger.entries import entries
from services.ledger.outbox import outbox
from services.ledger.postings import postings
from services.ledger.service import MAX_POSTINGS, LedgerService
from shared.db import DatabaseAccess
from shared.errors import ServiceUnavailable, ValidationFailed
from shared.money import settlement_account_id
from harness.servers import wait_for

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
USD_SETTLEMENT = settlement_account_id("USD")


@pytest.fixture
def service(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


def new_id():
    return str(uuid.uuid4())


def open_account(service, currency="USD", overdraft_limit=0):
    """A new account of a new owner: the ledger posts only to accounts opened with it."""
    account = service.create_account(new_id(), currency)
    if overdraft_limit:
        set_overdraft_limit(service, account["id"], overdraft_limit)
    return account["id"]


def set_overdraft_limit(service, account_id, limit, expected_version=None):
    """No RPC sets an overdraft limit (the contract has no route for it): the tests set one
    through the change every account RPC makes (under the account's lock, bumping its
    version, ``expected_version`` checked), as ``set_status`` does."""
    return service._change(account_id, expected_version, lambda row: (
        {} if row.overdraft_limit == limit else {"overdraft_limit": limit}))


def stored_result(engine, transaction_id):
    """What the ledger answers a replay of ``transaction_id`` with, read as it reads it
    (postings.stored_results); None if it never posted."""
    with engine.connect() as connection:
        return posting_records.stored_results(connection, [transaction_id]).get(transaction_id)


def posting(debit, credit, amount, type="transfer", currency="USD", transaction_id=None,
            **more):
    return dict({
        "transaction_id": transaction_id or new_id(),
        "type": type,
        "currency": currency,
        "amount": amount,
        "debit_account_id": debit,
        "credit_account_id": credit,
    }, **more)


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


def rejected(one, reason):
    return {"transaction_id": one["transaction_id"], "status": "rejected", "reason": reason}


def nothing_posted(engine, *given):
    """No postings row, entry or outbox message exists for any of the postings ``given``."""
    for one in given:
        for table in (postings, entries, outbox):
            assert count(engine, table, transaction_id=one["transaction_id"]) == 0, (
                table.name, one)


# --- money movement --------------------------------------------------------------------


def test_deposit_transfer_and_withdrawal_move_exact_amounts(service, engine):
    alice, bob = open_account(service), open_account(service)
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
    # The account answers with its money.
    account = service.get_account(alice)
    assert (account["balance"], account["available_balance"]) == (7_500, 7_500)


def test_the_settlement_account_is_flagged_and_goes_negative_without_limit(service, engine):
    account = open_account(service)
    post(service, deposit(account, 10**15))
    settlement = row_of(engine, USD_SETTLEMENT)
    assert settlement.is_settlement and settlement.currency == "USD"
    assert settlement.balance <= -10**15 and settlement.overdraft_limit == 0
    customer = row_of(engine, account)
    assert not customer.is_settlement and customer.currency == "USD"
    # The balances RPC shows settlement accounts like any other.
    assert service.balances([USD_SETTLEMENT])[USD_SETTLEMENT]["balance"] == settlement.balance


def test_other_currencies_have_their_own_settlement_account(service, engine):
    account = open_account(service, "JPY")
    result = post(service, deposit(account, 500, currency="JPY"))
    assert result["entries"][0]["account_id"] == settlement_account_id("JPY")
    assert row_of(engine, settlement_account_id("JPY")).currency == "JPY"
    assert row_of(engine, account).currency == "JPY"


def test_a_named_settlement_account_of_the_posting_currency_is_the_settlement_account(service):
    account = open_account(service)
    explicit = posting(USD_SETTLEMENT, account, 70, type="deposit")
    result = post(service, explicit)
    assert result["status"] == "posted"
    assert result["entries"][0]["account_id"] == USD_SETTLEMENT


# --- only opened accounts ----------------------------------------------------------------


def test_a_posting_naming_an_account_nobody_opened_is_refused_and_moves_nothing(
        service, engine):
    alice, stranger = open_account(service), new_id()
    post(service, deposit(alice, 100))
    settlement_before = balance_of(service, USD_SETTLEMENT)
    refused = [deposit(stranger, 10), withdrawal(stranger, 10), posting(alice, stranger, 10),
               posting(stranger, alice, 10)]
    assert service.post(refused) == [rejected(one, "account_not_found") for one in refused]
    assert balance_of(service, alice) == 100
    assert balance_of(service, USD_SETTLEMENT) == settlement_before
    nothing_posted(engine, *refused)
    assert row_of(engine, alice).last_seq == 1
    # The ledger no longer makes a balances row for whatever id it is sent.
    assert row_of(engine, stranger) is None


def test_a_balances_row_without_an_account_is_no_account(service, engine):
    # What the ledger before accounts moved in left behind for any id it was sent.
    orphan = new_id()
    with engine.begin() as connection:
        connection.execute(balances.insert().values(account_id=orphan, currency="USD"))
    one = deposit(orphan, 10)
    assert post(service, one) == rejected(one, "account_not_found")
    assert row_of(engine, orphan).balance == 0
    nothing_posted(engine, one)


# --- the account's state ------------------------------------------------------------------


def test_a_frozen_account_refuses_postings_as_debit_and_as_credit(service, engine):
    alice, bob = open_account(service), open_account(service)
    service.post([deposit(alice, 100), deposit(bob, 100)])
    assert service.set_status(alice, "frozen")["status"] == "frozen"
    refused = [posting(alice, bob, 10), posting(bob, alice, 3), deposit(alice, 20),
               withdrawal(alice, 5)]
    assert service.post(refused) == [rejected(one, "account_frozen") for one in refused]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 100, "held": 0}}
    nothing_posted(engine, *refused)
    assert row_of(engine, alice).last_seq == 1 and row_of(engine, bob).last_seq == 1
    # Unfrozen, the same transactions post: a refusal leaves nothing behind.
    service.set_status(alice, "active")
    assert [result["status"] for result in service.post(refused)] == ["posted"] * 4
    assert service.balances([alice, bob]) == {
        alice: {"balance": 108, "held": 0}, bob: {"balance": 107, "held": 0}}


def test_a_closed_account_refuses_postings(service, engine):
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(bob, 100))
    with engine.begin() as connection:  # no RPC closes an account yet
        connection.execute(update(accounts).where(accounts.c.id == alice).values(status="closed"))
    refused = [deposit(alice, 10), posting(bob, alice, 10)]
    assert service.post(refused) == [rejected(one, "account_frozen") for one in refused]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 0, "held": 0}, bob: {"balance": 100, "held": 0}}
    nothing_posted(engine, *refused)


def test_a_posting_approved_on_a_version_since_changed_is_refused(service, engine):
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(alice, 100))
    assert set_overdraft_limit(service, alice, 50)["version"] == 2
    stale_debit = posting(alice, bob, 10, expected_versions={alice: 1, bob: 1})
    assert post(service, stale_debit) == rejected(stale_debit, "account_changed")
    assert set_overdraft_limit(service, bob, 1)["version"] == 2
    stale_credit = posting(alice, bob, 10, expected_versions={alice: 2, bob: 1})
    assert post(service, stale_credit) == rejected(stale_credit, "account_changed")
    # Approved on a freeze since undone: the account is active, but not as it was judged.
    service.set_status(alice, "frozen")
    before_thaw = posting(alice, bob, 10, expected_versions={alice: 3})
    assert post(service, before_thaw) == rejected(before_thaw, "account_frozen")
    service.set_status(alice, "active")
    assert post(service, before_thaw) == rejected(before_thaw, "account_changed")
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    nothing_posted(engine, stale_debit, stale_credit, before_thaw)
    # The current versions (ids in any case), or none at all, post.
    current = posting(alice, bob, 10, expected_versions={alice.upper(): 4, bob: 2})
    assert post(service, current)["status"] == "posted"
    assert post(service, posting(alice, bob, 10))["status"] == "posted"
    assert service.balances([alice, bob]) == {
        alice: {"balance": 80, "held": 0}, bob: {"balance": 20, "held": 0}}


# --- insufficient funds and overdrafts --------------------------------------------------


def test_insufficient_funds_are_rejected_and_nothing_moves(service, engine):
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(alice, 100))
    too_much = posting(alice, bob, 101)
    assert post(service, too_much) == rejected(too_much, "insufficient_funds")
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    nothing_posted(engine, too_much)
    assert row_of(engine, alice).last_seq == 1
    assert stored_result(engine, too_much["transaction_id"]) is None
    # Exactly the balance is fine.
    assert post(service, posting(alice, bob, 100))["status"] == "posted"
    assert balance_of(service, alice) == 0


def test_a_new_account_has_nothing_to_withdraw(service):
    assert post(service, withdrawal(open_account(service), 1))["reason"] == (
        "insufficient_funds")


def test_held_money_cannot_be_spent(service, engine):
    account = open_account(service)
    post(service, deposit(account, 100))
    with engine.begin() as connection:
        connection.execute(update(balances).where(balances.c.account_id == account).values(held=60))
    assert post(service, withdrawal(account, 41))["reason"] == "insufficient_funds"
    assert post(service, withdrawal(account, 40))["status"] == "posted"
    assert service.balances([account])[account] == {"balance": 60, "held": 60}


def test_an_overdraft_limit_allows_going_negative_down_to_minus_the_limit(service, engine):
    account = open_account(service, overdraft_limit=500)
    post(service, deposit(account, 100))
    result = post(service, withdrawal(account, 600))
    assert result["status"] == "posted" and result["entries"][0]["balance_after"] == -500
    assert row_of(engine, account).overdraft_limit == 500
    assert post(service, withdrawal(account, 1))["reason"] == "insufficient_funds"
    assert balance_of(service, account) == -500
    # The account's limit raised: the next debit may use it.
    set_overdraft_limit(service, account, 501)
    assert post(service, withdrawal(account, 1))["status"] == "posted"
    assert balance_of(service, account) == -501
    # Lowered below the debt: further debits are refused, credits still arrive.
    set_overdraft_limit(service, account, 100)
    assert post(service, withdrawal(account, 1))["reason"] == "insufficient_funds"
    assert row_of(engine, account).overdraft_limit == 501  # the refused debit left the row
    assert post(service, deposit(account, 1))["status"] == "posted"
    assert balance_of(service, account) == -500
    assert service.get_account(account)["available_balance"] == -400


def test_without_an_overdraft_limit_an_account_never_goes_negative(service):
    account = open_account(service)
    post(service, deposit(account, 10))
    assert post(service, withdrawal(account, 11))["reason"] == "insufficient_funds"
    # A limit sent with the posting (the wire format before) is ignored: the account's own
    # limit counts, and an extra key makes no posting malformed.
    assert post(service, withdrawal(account, 11, debit_overdraft_limit=10**6))["reason"] == (
        "insufficient_funds")
    assert post(service, withdrawal(account, 10, debit_overdraft_limit=-1))["status"] == (
        "posted")
    assert balance_of(service, account) == 0


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
    account = open_account(service)
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


def test_the_constraint_refuses_a_batch_the_rules_let_an_overdraft_through(
        service, engine, monkeypatch):
    # The rules are the first guard, the balances row's CHECK the second. A batch writes
    # all its balances in one statement, so the CHECK refuses the batch as a whole:
    # nothing of it is written, not even the posting that was fine.
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(alice, 100))
    monkeypatch.setattr(rules, "available_balance", lambda balance, held, limit: 10**18)
    too_much, fine = posting(alice, bob, 150), posting(alice, bob, 30)
    with pytest.raises(IntegrityError) as raised:
        service.post([too_much, fine])
    assert raised.value.orig.diag.constraint_name == "balance_within_overdraft"
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    nothing_posted(engine, too_much, fine)
    assert [e.account_seq for e in entries_of(engine, alice)] == [1]
    monkeypatch.undo()
    assert [r["status"] for r in service.post([too_much, fine])] == ["rejected", "posted"]


def test_a_balance_beyond_bigint_rejects_that_posting_alone(service, engine):
    huge, other = open_account(service), open_account(service)
    with engine.begin() as connection:
        connection.execute(update(balances).where(balances.c.account_id == huge)
                           .values(balance=2**63 - 10))
    try:
        results = service.post([deposit(huge, 10**15), deposit(other, 10)])
        assert results[0]["status"] == "rejected" and results[0]["reason"] == "malformed_posting"
        assert results[1]["status"] == "posted"
        assert balance_of(service, huge) == 2**63 - 10
    finally:
        with engine.begin() as connection:  # it has no entries: keep the books reconcilable
            connection.execute(update(balances).where(balances.c.account_id == huge)
                               .values(balance=0))


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


# --- atomic batches ----------------------------------------------------------------------


def test_an_atomic_batch_with_one_refused_posting_moves_nothing(service, engine):
    alice, bob, carol = (open_account(service) for _ in range(3))
    post(service, deposit(alice, 100))
    settlement_before = balance_of(service, USD_SETTLEMENT)
    batch = [deposit(bob, 50), posting(alice, bob, 30), posting(alice, carol, 500),
             withdrawal(bob, 10)]
    assert service.post(batch, atomic=True) == [
        rejected(batch[0], "batch_aborted"), rejected(batch[1], "batch_aborted"),
        rejected(batch[2], "insufficient_funds"), rejected(batch[3], "batch_aborted")]
    assert service.balances([alice, bob, carol, USD_SETTLEMENT]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0},
        carol: {"balance": 0, "held": 0},
        USD_SETTLEMENT: {"balance": settlement_before, "held": 0}}
    nothing_posted(engine, *batch)
    assert row_of(engine, alice).last_seq == 1 and row_of(engine, bob).last_seq == 0
    # Not atomic, the same batch posts what it can: the aborted left nothing behind.
    assert [r["status"] for r in service.post(batch)] == [
        "posted", "posted", "rejected", "posted"]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 70, "held": 0}, bob: {"balance": 70, "held": 0}}


def test_an_atomic_batch_with_a_malformed_posting_moves_nothing(service, engine):
    account = open_account(service)
    batch = [deposit(account, 50), deposit(account, 0)]
    assert service.post(batch, atomic=True) == [
        rejected(batch[0], "batch_aborted"), rejected(batch[1], "malformed_posting")]
    assert balance_of(service, account) == 0
    nothing_posted(engine, batch[0])


def test_an_atomic_batch_posts_whole_and_its_replay_answers_the_stored_results(
        service, engine):
    alice, bob = open_account(service), open_account(service)
    batch = [deposit(alice, 100), posting(alice, bob, 60), withdrawal(bob, 20)]
    first = service.post(batch, atomic=True)
    assert [r["status"] for r in first] == ["posted"] * 3
    assert len({r["posted_at"] for r in first}) == 1
    # Redelivered, it answers what it answered and moves nothing (alice could not pay 60
    # again).
    assert service.post(batch, atomic=True) == first
    assert service.post(batch) == first
    assert [stored_result(engine, one["transaction_id"]) for one in batch] == first
    assert service.balances([alice, bob]) == {
        alice: {"balance": 40, "held": 0}, bob: {"balance": 40, "held": 0}}
    for one in batch:
        assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


def test_replays_stand_as_they_were_in_an_atomic_batch_that_is_aborted(service, engine):
    alice, bob = open_account(service), open_account(service)
    done = deposit(alice, 100)
    first = post(service, done)
    fresh, too_much = posting(alice, bob, 10), posting(alice, bob, 1_000)
    assert service.post([done, fresh, too_much], atomic=True) == [
        first, rejected(fresh, "batch_aborted"), rejected(too_much, "insufficient_funds")]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    nothing_posted(engine, fresh, too_much)
    assert count(engine, entries, transaction_id=done["transaction_id"]) == 2


def test_replays_stand_as_they_were_in_an_atomic_batch_with_a_malformed_posting(
        service, engine):
    # Answering batch_aborted for a posting that is in the books would have its
    # transaction marked failed while its money moved.
    alice, bob = open_account(service), open_account(service)
    done = deposit(alice, 100)
    first = post(service, done)
    fresh, broken = posting(alice, bob, 10), posting(alice, bob, 0)
    assert service.post([done, fresh, broken], atomic=True) == [
        first, rejected(fresh, "batch_aborted"), rejected(broken, "malformed_posting")]
    assert service.balances([alice, bob]) == {
        alice: {"balance": 100, "held": 0}, bob: {"balance": 0, "held": 0}}
    nothing_posted(engine, fresh)


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


# --- currencies ------------------------------------------------------------------------


def test_a_posting_in_another_currency_than_the_account_is_rejected(service, engine):
    dollars, euros = open_account(service), open_account(service, "EUR")
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
    account = open_account(service)
    sneaky = posting(settlement_account_id("EUR"), account, 10, type="deposit")
    assert post(service, sneaky)["reason"] == "currency_mismatch"
    assert balance_of(service, account) == 0


# --- exactly once ----------------------------------------------------------------------


def test_replaying_a_posted_transaction_answers_the_same_and_moves_nothing(service, engine):
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(alice, 100))
    transfer = posting(alice, bob, 100)
    first = post(service, transfer)
    assert first["status"] == "posted"
    # alice has nothing left: a second move would be refused, a replay is not.
    assert post(service, transfer) == first
    assert service.post([transfer, deposit(bob, 1), transfer])[0::2] == [first, first]
    assert stored_result(engine, transfer["transaction_id"]) == first
    assert service.balances([alice, bob]) == {
        alice: {"balance": 0, "held": 0}, bob: {"balance": 101, "held": 0}}
    assert count(engine, entries, transaction_id=transfer["transaction_id"]) == 2
    assert count(engine, outbox, transaction_id=transfer["transaction_id"]) == 2
    assert row_of(engine, alice).last_seq == 2


def test_a_posting_made_before_a_freeze_replays_as_it_was(service):
    alice, bob = open_account(service), open_account(service)
    post(service, deposit(alice, 100))
    transfer = posting(alice, bob, 60, expected_versions={alice: 1})
    first = post(service, transfer)
    service.set_status(alice, "frozen")
    assert post(service, transfer) == first
    assert service.balances([alice, bob]) == {
        alice: {"balance": 40, "held": 0}, bob: {"balance": 60, "held": 0}}


def test_the_same_transaction_twice_in_one_batch_posts_once(service, engine):
    account = open_account(service)
    one = deposit(account, 40)
    results = service.post([one, dict(one)])
    assert results[0]["status"] == "posted" and results[1] == results[0]
    assert balance_of(service, account) == 40
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


def test_a_replay_with_other_content_still_answers_the_original(service):
    account = open_account(service)
    one = deposit(account, 40)
    first = post(service, one)
    assert post(service, dict(one, amount=999)) == first
    assert balance_of(service, account) == 40


def test_a_rejected_transaction_can_post_later(service):
    alice, bob = open_account(service), open_account(service)
    transfer = posting(alice, bob, 10)
    assert post(service, transfer)["reason"] == "insufficient_funds"
    post(service, deposit(alice, 10))
    assert post(service, transfer)["status"] == "posted"


def test_a_replay_racing_its_original_is_decided_by_the_primary_key(
        service, engine, monkeypatch):
    # As if the replay check had missed the original (a transaction id reused for other
    # accounts can race past it): the insert's primary key finds the original, the batch
    # runs again, and the check then answers it.
    account = open_account(service)
    one = deposit(account, 25)
    first = post(service, one)
    calls = []
    monkeypatch.setattr(batches.posting_records, "stored_results",
                        _blind_first_call(batches.posting_records.stored_results, calls))
    assert post(service, one) == first
    assert len(calls) == 2  # the batch ran again
    assert balance_of(service, account) == 25
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


def _blind_first_call(real, calls):
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
    one = deposit(open_account(service), 30)
    result = post(service, one)
    with pytest.raises(IntegrityError, match="immutable"), engine.begin() as connection:
        connection.execute(text(statement), {"t": one["transaction_id"]})
    assert stored_result(engine, one["transaction_id"]) == result
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


# --- the outbox --------------------------------------------------------------------------


def test_every_entry_has_one_outbox_message_in_its_account_order(service, engine):
    alice, bob = open_account(service), open_account(service)
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


class Rival:
    """Another database session that takes account rows' locks in the opposite order to
    the ledger's, so that PostgreSQL finds a real deadlock and aborts the ledger's batch
    (the one that has waited longer checks first, and gives way)."""

    def __init__(self, database_url, first, second):
        self.connection = psycopg2.connect(database_url, application_name="rival")
        self.cursor = self.connection.cursor()
        self.first, self.second = first, second
        self.lock(second)  # held throughout: the ledger's batch waits for it

    def lock(self, account):
        self.cursor.execute("SELECT 1 FROM ledger.balances WHERE account_id = %s FOR UPDATE",
                            (account,))

    def close_the_cycle(self):
        """Once the ledger holds ``first`` and waits for ``second``: ask for ``first``. The
        cycle is found, the ledger's batch aborted; this session keeps ``second`` only."""
        self.cursor.execute("SAVEPOINT meet")
        self.lock(self.first)
        self.cursor.execute("ROLLBACK TO SAVEPOINT meet")

    def give_way(self):
        self.connection.rollback()
        self.connection.close()


def ledger_waits_for_a_lock(engine):
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'paysys-tests' AND wait_event_type = 'Lock'")).scalar_one()


def deadlocked_post(service, engine, database_url, deadlocks):
    """A transfer between two accounts posted while a rival makes ``deadlocks`` real
    deadlocks with it; the post's outcome (a result or the error) and the accounts."""
    alice, bob = sorted([open_account(service), open_account(service)])  # lock order
    post(service, deposit(alice, 100))
    rival = Rival(database_url, alice, bob)
    outcome = {}

    def run():
        try:
            outcome["result"] = post(service, posting(alice, bob, 60))
        except Exception as error:  # noqa: BLE001 - the test looks at what it raised
            outcome["error"] = error

    poster = eventlet.spawn(run)
    try:
        for _ in range(deadlocks):
            wait_for(lambda: ledger_waits_for_a_lock(engine), timeout_s=10,
                     interval_s=0.02, what="the ledger waiting for the rival's lock")
            rival.close_the_cycle()
    finally:
        rival.give_way()
    poster.wait()
    return outcome, alice, bob


def test_a_batch_aborted_by_a_real_deadlock_runs_again(service, engine, database_url):
    outcome, alice, bob = deadlocked_post(service, engine, database_url, deadlocks=1)
    assert outcome["result"]["status"] == "posted"
    assert (balance_of(service, alice), balance_of(service, bob)) == (40, 60)
    assert len(service.entries(bob)["items"]) == 1  # posted once, not once per attempt


def test_a_batch_that_deadlocks_on_every_attempt_gives_up_and_moves_nothing(
        service, engine, database_url):
    outcome, alice, bob = deadlocked_post(service, engine, database_url,
                                          deadlocks=batches.ATTEMPTS)
    assert "result" not in outcome
    error = outcome["error"]
    assert getattr(getattr(error, "orig", None), "pgcode", None) == "40P01"  # a deadlock
    assert (balance_of(service, alice), balance_of(service, bob)) == (100, 0)
    assert service.entries(bob)["items"] == []


def test_other_database_errors_are_not_retried(service, monkeypatch):
    calls = []

    def broken(connection, given, atomic=False, look_for_replays=True):
        calls.append(1)
        raise OperationalError("SELECT", {}, Exception("connection lost"))

    monkeypatch.setattr(batches, "post_batch", broken)
    # A lost connection is the caller's 503 (retry later), not a retry here.
    with pytest.raises(ServiceUnavailable):
        service.post([deposit(new_id(), 9)])
    assert len(calls) == 1
