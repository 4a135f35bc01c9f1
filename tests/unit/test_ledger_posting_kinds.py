"""The ledger's postings by kind against a real, migrated PostgreSQL database: deposits,
transfers and withdrawals move exact amounts by double entry, through each currency's own
settlement account, and only between accounts of the posting's currency."""
from shared.money import settlement_account_id
from tests.support.ledger import (  # noqa: F401 - fixtures
    USD_SETTLEMENT,
    assert_posted,
    balance_of,
    deposit,
    entries_of,
    open_account,
    post,
    posting,
    row_of,
    service,
    withdrawal,
)


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
