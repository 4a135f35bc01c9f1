"""The ledger posts only to accounts opened with it, in the state they were judged in:
a posting naming an account nobody opened, a frozen or closed one, or one changed since the
version the posting was approved on, is refused, and the refusal leaves nothing behind."""
from sqlalchemy import update

from services.ledger.accounts import accounts
from services.ledger.balances import balances
from tests.support.ledger import (  # noqa: F401 - fixtures
    USD_SETTLEMENT,
    balance_of,
    deposit,
    new_id,
    nothing_posted,
    open_account,
    post,
    posting,
    rejected,
    row_of,
    service,
    set_overdraft_limit,
    withdrawal,
)


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
