"""The posting rules (services/ledger/rules.py) with plain values: what a posting does to
the books of its accounts under the row locks, and in which order it is refused."""
import copy
import uuid

import pytest

from services.ledger import rules
from services.ledger.postings import Posting
from services.ledger.rules import BIGINT_MAX, Book, HoldBook, Line
from shared.money import settlement_account_id

USD_SETTLEMENT = settlement_account_id("USD")


def new_id():
    return str(uuid.uuid4())


def account(balance=0, held=0, limit=0, status="active", version=1, currency="USD",
            last_seq=0, known=True):
    """A customer account's book as batches.py reads it under the lock."""
    return Book(account_id=new_id(), currency=currency, is_settlement=False, balance=balance,
                held=held, last_seq=last_seq, row_limit=0, known=known, status=status,
                version=version, overdraft_limit=limit)


def settlement(balance=0, currency="USD"):
    # No accounts row: not "known", no version, always open.
    return Book(account_id=settlement_account_id(currency), currency=currency,
                is_settlement=True, balance=balance, held=0, last_seq=0, row_limit=0,
                known=False, version=None)


def books_of(*books):
    return {book.account_id: book for book in books}


def move(debit, credit, amount, type="transfer", currency="USD", versions=None,
         capture_of=None):
    return Posting(new_id(), type, currency, amount, debit.account_id, credit.account_id,
                   capture_of=capture_of, expected_versions=versions or {})


def hold(debit, credit, amount, currency="USD"):
    return Posting(new_id(), "payment", currency, amount, debit.account_id, credit.account_id,
                   hold=True)


def apply(posting, books, holds=None):
    return rules.apply(posting, books, {} if holds is None else holds)


def refused_and_unchanged(posting, books, holds=None):
    """The reason ``posting`` is refused for; asserts it changed nothing."""
    holds = {} if holds is None else holds
    before = copy.deepcopy((books, holds))
    outcome = rules.apply(posting, books, holds)
    assert outcome.refused and outcome.lines == [] and outcome.hold is None, outcome
    assert (books, holds) == before
    return outcome.reason


# --- moving money --------------------------------------------------------------------------


def test_a_transfer_moves_the_amount_and_numbers_each_accounts_lines():
    alice, bob = account(balance=100, last_seq=4), account()
    outcome = apply(move(alice, bob, 30), books_of(alice, bob))
    assert not outcome.refused
    assert outcome.lines == [Line(alice.account_id, -30, 70, 5), Line(bob.account_id, 30, 30, 1)]
    assert (alice.balance, alice.last_seq, bob.balance, bob.last_seq) == (70, 5, 30, 1)
    assert alice.changed and bob.changed


def test_the_settlement_account_is_always_open_and_goes_negative_without_limit():
    bank, alice = settlement(balance=-5), account()
    outcome = apply(move(bank, alice, 10**15, type="deposit"), books_of(bank, alice))
    assert outcome.lines[0] == Line(USD_SETTLEMENT, -10**15, -10**15 - 5, 1)
    assert alice.balance == 10**15


def test_postings_apply_in_order_each_seeing_what_the_earlier_left():
    bank, alice, bob = settlement(), account(), account()
    books = books_of(bank, alice, bob)
    assert not apply(move(bank, alice, 100, type="deposit"), books).refused
    assert not apply(move(alice, bob, 100), books).refused
    assert (alice.balance, bob.balance) == (0, 100)
    # The other way round the transfer comes first and finds nothing to spend.
    carol = account()
    books[carol.account_id] = carol
    assert refused_and_unchanged(move(carol, bob, 100), books) == "insufficient_funds"
    assert not apply(move(bank, carol, 100, type="deposit"), books).refused


def test_the_overdraft_limit_is_the_accounts_own():
    alice, bob = account(balance=100, limit=50), account()
    books = books_of(alice, bob)
    assert refused_and_unchanged(move(alice, bob, 151), books) == "insufficient_funds"
    assert apply(move(alice, bob, 150), books).lines[0].balance_after == -50
    # The balances row's CHECK limit follows the limit the debit was judged on.
    assert alice.row_limit == 50
    assert refused_and_unchanged(move(alice, bob, 1), books) == "insufficient_funds"


def test_held_money_cannot_be_spent():
    alice, bob = account(balance=100, held=60), account()
    books = books_of(alice, bob)
    assert refused_and_unchanged(move(alice, bob, 41), books) == "insufficient_funds"
    assert not apply(move(alice, bob, 40), books).refused
    assert (alice.balance, alice.held) == (60, 60)


# --- refusals ------------------------------------------------------------------------------


def test_refusals_come_in_order_not_found_currency_frozen_version_funds():
    # Everything is wrong with alice; each fix reveals the next reason.
    alice = account(balance=0, status="frozen", version=2, currency="EUR")
    bob = account()
    posting = move(alice, bob, 10, versions={alice.account_id: 1})
    assert refused_and_unchanged(posting, books_of(bob)) == "account_not_found"
    alice.known = False  # a balances row nobody opened an account for
    assert refused_and_unchanged(posting, books_of(alice, bob)) == "account_not_found"
    alice.known = True
    assert refused_and_unchanged(posting, books_of(alice, bob)) == "currency_mismatch"
    alice.currency = "USD"
    assert refused_and_unchanged(posting, books_of(alice, bob)) == "account_frozen"
    alice.status = "active"
    assert refused_and_unchanged(posting, books_of(alice, bob)) == "account_changed"
    alice.version = 1
    assert refused_and_unchanged(posting, books_of(alice, bob)) == "insufficient_funds"
    alice.balance = 10
    assert not apply(posting, books_of(alice, bob)).refused


def test_a_missing_account_on_either_side_comes_before_anything_wrong_on_the_other():
    alice = account(balance=100, status="frozen", currency="EUR")
    stranger = account()
    assert refused_and_unchanged(move(alice, stranger, 10), books_of(alice)) == (
        "account_not_found")
    assert refused_and_unchanged(move(stranger, alice, 10), books_of(alice)) == (
        "account_not_found")


@pytest.mark.parametrize("side", ["debit", "credit"])
@pytest.mark.parametrize("status", ["frozen", "closed"])
def test_an_account_not_active_refuses_postings_on_either_side(side, status):
    alice, bob = account(balance=100), account(balance=100)
    (alice if side == "debit" else bob).status = status
    assert refused_and_unchanged(move(alice, bob, 10), books_of(alice, bob)) == (
        "account_frozen")


@pytest.mark.parametrize("side", ["debit", "credit"])
def test_a_currency_other_than_the_accounts_is_refused_on_either_side(side):
    alice, bob = account(balance=100), account(balance=100)
    (alice if side == "debit" else bob).currency = "EUR"
    assert refused_and_unchanged(move(alice, bob, 10), books_of(alice, bob)) == (
        "currency_mismatch")


@pytest.mark.parametrize("side", ["debit", "credit"])
def test_a_version_other_than_the_one_approved_on_is_refused(side):
    alice, bob = account(balance=100, version=3), account(version=5)
    named = alice if side == "debit" else bob
    stale = move(alice, bob, 10, versions={named.account_id: named.version - 1})
    assert refused_and_unchanged(stale, books_of(alice, bob)) == "account_changed"
    # Only the accounts named are checked.
    current = move(alice, bob, 10, versions={named.account_id: named.version})
    assert not apply(current, books_of(alice, bob)).refused


# --- holds ---------------------------------------------------------------------------------


def test_a_hold_reserves_money_without_moving_it():
    alice, shop = account(balance=100, held=10, limit=5, last_seq=3), account()
    holds = {}
    one = hold(alice, shop, 95)
    outcome = apply(one, books_of(alice, shop), holds)
    assert outcome.lines == [] and not outcome.refused
    assert outcome.hold == HoldBook(one.transaction_id, alice.account_id, "USD", 95, new=True)
    assert holds == {one.transaction_id: outcome.hold}
    assert (alice.balance, alice.held, alice.last_seq, alice.row_limit) == (100, 105, 3, 5)
    assert alice.changed and not shop.changed
    # The same funds check as a debit: nothing is left.
    assert refused_and_unchanged(hold(alice, shop, 1), books_of(alice, shop), holds) == (
        "insufficient_funds")


def test_a_hold_on_a_frozen_account_is_refused():
    alice, shop = account(balance=100, status="frozen"), account()
    assert refused_and_unchanged(hold(alice, shop, 10), books_of(alice, shop)) == (
        "account_frozen")


def test_a_hold_beyond_bigint_is_malformed():
    alice = account(balance=BIGINT_MAX, held=BIGINT_MAX - 5, limit=10**15)
    shop = account()
    assert refused_and_unchanged(hold(alice, shop, 10), books_of(alice, shop)) == (
        "malformed_posting")


def held(alice, shop, amount, holds):
    one = hold(alice, shop, amount)
    assert apply(one, books_of(alice, shop), holds).hold is not None
    return holds[one.transaction_id]


def test_a_capture_frees_its_whole_hold_then_moves_the_amount():
    alice, shop = account(balance=100), account()
    holds = {}
    reserved = held(alice, shop, 80, holds)
    other = held(alice, shop, 20, holds)
    assert alice.available == 0
    taking = move(alice, shop, 30, type="capture", capture_of=reserved.transaction_id)
    outcome = apply(taking, books_of(alice, shop), holds)
    assert outcome.lines == [Line(alice.account_id, -30, 70, 1), Line(shop.account_id, 30, 30, 1)]
    assert (reserved.status, reserved.settled_by, reserved.settled) == (
        "captured", taking.transaction_id, True)
    # The other hold stays; the rest of this one is available again.
    assert other.status == "held" and not other.settled
    assert (alice.balance, alice.held, alice.available) == (70, 20, 50)


def test_a_capture_may_spend_the_money_held_for_it():
    alice, shop = account(balance=50), account()
    holds = {}
    reserved = held(alice, shop, 50, holds)
    outcome = apply(move(alice, shop, 50, type="capture", capture_of=reserved.transaction_id),
                    books_of(alice, shop), holds)
    assert not outcome.refused
    assert (alice.balance, alice.held, shop.balance) == (0, 0, 50)


def test_a_capture_beyond_its_hold_is_refused_and_keeps_the_hold():
    alice, shop = account(balance=100), account()
    holds = {}
    reserved = held(alice, shop, 40, holds)
    taking = move(alice, shop, 41, type="capture", capture_of=reserved.transaction_id)
    assert refused_and_unchanged(taking, books_of(alice, shop), holds) == "amount_exceeds_hold"
    assert reserved.status == "held" and alice.held == 40


def test_a_capture_beyond_the_money_after_its_hold_is_refused_and_keeps_the_hold():
    # The balance fell below the hold (a limit lowered after it was placed).
    alice, shop = account(balance=50, held=100), account()
    holds = {}
    reserved = HoldBook(new_id(), alice.account_id, "USD", 100)
    holds[reserved.transaction_id] = reserved
    taking = move(alice, shop, 100, type="capture", capture_of=reserved.transaction_id)
    assert refused_and_unchanged(taking, books_of(alice, shop), holds) == "insufficient_funds"


def test_captures_of_missing_foreign_settled_or_other_currency_holds_are_refused():
    alice, bob, shop = account(balance=100), account(balance=100), account()
    books = books_of(alice, bob, shop)
    holds = {}
    theirs = held(bob, shop, 10, holds)
    settled = held(alice, shop, 10, holds)
    settled.status = "released"
    euros = HoldBook(new_id(), alice.account_id, "EUR", 10)
    holds[euros.transaction_id] = euros

    def capture_of(hold_id):
        return move(alice, shop, 5, type="capture", capture_of=hold_id)

    assert refused_and_unchanged(capture_of(new_id()), books, holds) == "hold_not_found"
    assert refused_and_unchanged(capture_of(theirs.transaction_id), books, holds) == (
        "hold_not_found")
    assert refused_and_unchanged(capture_of(settled.transaction_id), books, holds) == (
        "hold_not_active")
    assert refused_and_unchanged(capture_of(euros.transaction_id), books, holds) == (
        "currency_mismatch")


def test_a_hold_is_captured_once():
    alice, shop = account(balance=100), account()
    holds = {}
    reserved = held(alice, shop, 60, holds)
    books = books_of(alice, shop)
    assert not apply(move(alice, shop, 60, type="capture",
                          capture_of=reserved.transaction_id), books, holds).refused
    again = move(alice, shop, 60, type="capture", capture_of=reserved.transaction_id)
    assert refused_and_unchanged(again, books, holds) == "hold_not_active"
    assert (alice.balance, alice.held, shop.balance) == (40, 0, 60)


# --- beyond bigint -------------------------------------------------------------------------


def test_a_credit_beyond_bigint_is_malformed():
    alice, bob = account(balance=100), account(balance=BIGINT_MAX - 5)
    assert refused_and_unchanged(move(alice, bob, 6), books_of(alice, bob)) == (
        "malformed_posting")
    assert apply(move(alice, bob, 5), books_of(alice, bob)).lines[1].balance_after == BIGINT_MAX


def test_a_settlement_debit_beyond_bigint_is_malformed():
    # -(BIGINT_MAX + 2) is below bigint's least value, -(BIGINT_MAX + 1).
    bank, alice = settlement(balance=-(BIGINT_MAX - 5)), account()
    assert refused_and_unchanged(move(bank, alice, 7, type="deposit"),
                                 books_of(bank, alice)) == "malformed_posting"
