"""The validator's rules as pure functions: no Redis, no clock."""
import copy
import uuid
from fractions import Fraction

import pytest

from services.validator import rules
from shared.money import TRANSACTION_TYPES, available_balance
from services.validator.rules import Policy
from services.validator.settings import ValidatorSection

POLICY = Policy(
    max_amount_minor=100_000,
    daily_limit_minor=1_000_000,
    fraud_multiplier=Fraction(50),
    fraud_floor_minor=10_000,
    new_counterparties_per_10_min=3,
)


def new_id():
    return str(uuid.uuid4())


def account(currency="USD", balance=10_000, held=0, overdraft_limit=0, status="active"):
    return {"id": new_id(), "owner_id": new_id(), "currency": currency, "status": status,
            "overdraft_limit": overdraft_limit, "balance": balance, "held": held}


def transaction(type_="transfer", amount=1_000, currency="USD", source="default",
                destination="default"):
    if source == "default":
        source = None if type_ == "deposit" else account(currency)
    if destination == "default":
        destination = None if type_ == "withdrawal" else account(currency)
    return {"id": new_id(), "type": type_, "amount": amount, "currency": currency,
            "initiator_id": new_id(), "source": source, "destination": destination,
            "created_at": "2026-03-01T12:00:00.000000Z"}


# --- shape -----------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", sorted(TRANSACTION_TYPES))
def test_every_type_in_its_shape_is_well_formed(type_):
    assert rules.is_well_formed(transaction(type_))


def broken(change):
    tx = transaction()
    change(tx)
    return tx


@pytest.mark.parametrize("tx", [
    None, [], "tx", {},
    broken(lambda tx: tx.pop("id")),
    broken(lambda tx: tx.update(id="not-a-uuid")),
    broken(lambda tx: tx.update(type="gift")),
    broken(lambda tx: tx.update(amount=10.5)),
    broken(lambda tx: tx.update(amount="1000")),
    broken(lambda tx: tx.update(amount=True)),
    broken(lambda tx: tx.update(amount=0)),
    broken(lambda tx: tx.update(amount=-5)),
    broken(lambda tx: tx.update(currency="XXX")),
    broken(lambda tx: tx.update(currency=None)),
    broken(lambda tx: tx.pop("initiator_id")),
    broken(lambda tx: tx.update(created_at="yesterday")),
    broken(lambda tx: tx.update(created_at=None)),
    broken(lambda tx: tx.update(source=None)),  # a transfer needs a source
    broken(lambda tx: tx.update(destination=None)),
    broken(lambda tx: tx["source"].pop("balance")),
    broken(lambda tx: tx["source"].update(balance="100")),
    broken(lambda tx: tx["source"].update(held=-1)),
    broken(lambda tx: tx["destination"].update(overdraft_limit=None)),
    broken(lambda tx: tx["destination"].update(status=None)),
    broken(lambda tx: tx["destination"].update(id=7)),
    broken(lambda tx: tx.update(source="account")),
], ids=repr)
def test_malformed_items_are_recognised(tx):
    assert not rules.is_well_formed(tx)


def test_a_deposit_has_no_source_and_a_withdrawal_no_destination():
    assert not rules.is_well_formed(transaction("deposit", source=account()))
    assert not rules.is_well_formed(transaction("withdrawal", destination=account()))
    assert not rules.is_well_formed(transaction("deposit", destination=None))
    assert not rules.is_well_formed(transaction("withdrawal", source=None))


def test_the_id_a_vote_names():
    tx = transaction()
    assert rules.transaction_id(tx) == tx["id"]
    assert rules.transaction_id({"id": 5}) is None
    assert rules.transaction_id("garbage") is None


# --- insufficient_funds ----------------------------------------------------------------------


def test_available_balance_is_balance_less_held_plus_overdraft():
    assert available_balance(1_000, 300, 50) == 750


@pytest.mark.parametrize("balance, held, overdraft, amount, short", [
    (1_000, 0, 0, 1_000, False),  # exactly enough
    (1_000, 0, 0, 1_001, True),
    (1_000, 200, 0, 800, False),
    (1_000, 200, 0, 801, True),  # a hold lowers what may be spent
    (0, 0, 500, 500, False),  # the overdraft may be spent
    (0, 0, 500, 501, True),
    (-100, 0, 500, 400, False),  # already overdrawn, within the limit
    (-100, 0, 500, 401, True),
])
def test_insufficient_funds(balance, held, overdraft, amount, short):
    tx = transaction(amount=amount,
                     source=account(balance=balance, held=held, overdraft_limit=overdraft))
    assert rules.insufficient_funds(tx) is short
    assert (rules.INSUFFICIENT_FUNDS in rules.stateless_reasons(tx, POLICY)) is short


def test_a_deposit_needs_no_funds():
    assert not rules.insufficient_funds(transaction("deposit", amount=10**15 - 1))


def test_insufficient_funds_in_yen():
    # JPY has no minor unit: 500 is 500 yen.
    tx = transaction(amount=500, currency="JPY", source=account("JPY", balance=500),
                     destination=account("JPY"))
    assert rules.stateless_reasons(tx, POLICY) == []
    tx["amount"] = 501
    assert rules.stateless_reasons(tx, POLICY) == [rules.INSUFFICIENT_FUNDS]


# --- account_frozen --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["frozen", "closed", "unknown"])
@pytest.mark.parametrize("side", ["source", "destination"])
def test_a_frozen_or_closed_account_neither_pays_nor_is_paid(status, side):
    tx = transaction()
    tx[side]["status"] = status
    assert rules.account_frozen(tx)
    assert rules.stateless_reasons(tx, POLICY) == [rules.ACCOUNT_FROZEN]


def test_active_accounts_are_not_frozen():
    assert not rules.account_frozen(transaction())
    assert not rules.account_frozen(transaction("deposit"))
    assert not rules.account_frozen(transaction("withdrawal"))


def test_a_deposit_into_a_frozen_account_is_refused():
    assert rules.account_frozen(transaction("deposit", destination=account(status="frozen")))


# --- currency_mismatch -----------------------------------------------------------------------


@pytest.mark.parametrize("side", ["source", "destination"])
def test_currency_mismatch(side):
    tx = transaction(currency="USD")
    tx[side]["currency"] = "EUR"
    assert rules.currency_mismatch(tx)
    assert rules.stateless_reasons(tx, POLICY) == [rules.CURRENCY_MISMATCH]


def test_same_currency_everywhere_matches():
    assert not rules.currency_mismatch(transaction(currency="JPY"))
    assert not rules.currency_mismatch(transaction("withdrawal", currency="GBP"))


# --- limit_exceeded --------------------------------------------------------------------------


def test_the_maximum_amount_is_allowed_and_one_more_is_not():
    assert not rules.over_max_amount(100_000, POLICY)
    assert rules.over_max_amount(100_001, POLICY)
    tx = transaction("deposit", amount=100_001)
    assert rules.stateless_reasons(tx, POLICY) == [rules.LIMIT_EXCEEDED]


def test_the_daily_limit_counts_todays_outflow_and_this_one():
    assert not rules.over_daily_limit(0, 1_000_000, POLICY)
    assert not rules.over_daily_limit(999_000, 1_000, POLICY)  # reaches the limit exactly
    assert rules.over_daily_limit(999_000, 1_001, POLICY)
    assert rules.stateful_reasons(1_001, 999_000, None, 0, False, POLICY) == [
        rules.LIMIT_EXCEEDED]


# --- fraud_suspected -------------------------------------------------------------------------


def test_no_history_gives_no_fraud_signal():
    assert not rules.unusual_amount(100_000, None, POLICY)


def test_an_amount_far_above_the_usual_and_above_the_floor_is_suspect():
    # usual 300: 50 × 300 = 15,000 is still usual; above it, and above the 10,000 floor, not.
    assert not rules.unusual_amount(15_000, 300, POLICY)
    assert rules.unusual_amount(15_001, 300, POLICY)
    assert rules.stateful_reasons(15_001, 0, 300, 0, False, POLICY) == [rules.FRAUD_SUSPECTED]


def test_small_amounts_are_never_suspect_however_unusual():
    # usual 10: 50 × 10 = 500, but the floor is 10,000.
    assert not rules.unusual_amount(10_000, 10, POLICY)
    assert rules.unusual_amount(10_001, 10, POLICY)


def test_a_fractional_multiplier_stays_exact():
    policy = Policy.from_settings(config_section(fraud_multiplier="2.5", fraud_floor_minor=0))
    assert policy.fraud_multiplier == Fraction(5, 2)
    assert not rules.unusual_amount(250, 100, policy)
    assert rules.unusual_amount(251, 100, policy)


def test_new_counterparties_over_the_ten_minute_allowance_are_suspect():
    # Allowance 3: the third new one passes, the fourth does not; known ones always pass.
    assert not rules.too_many_new_counterparties(2, True, POLICY)
    assert rules.too_many_new_counterparties(3, True, POLICY)
    assert not rules.too_many_new_counterparties(3, False, POLICY)
    assert rules.stateful_reasons(10, 0, None, 3, True, POLICY) == [rules.FRAUD_SUSPECTED]


def test_the_usual_amount_is_a_moving_average_in_integers():
    assert rules.next_usual(None, 1_000) == 1_000
    assert rules.next_usual(1_000, 1_800) == 1_100  # 1/8 of the way
    assert rules.next_usual(1_000, 1_000) == 1_000
    usual = 1_000
    for _ in range(100):
        usual = rules.next_usual(usual, 200)
    assert usual == 200 and isinstance(usual, int)


def test_every_stateful_reason_at_once():
    assert rules.stateful_reasons(20_000, 999_000, 10, 3, True, POLICY) == [
        rules.LIMIT_EXCEEDED, rules.FRAUD_SUSPECTED]


# --- compliance_blocked ----------------------------------------------------------------------


def config_section(**changes):
    section = {"max_amount_minor": 100_000, "redis_timeout_ms": 250,
               "daily_limit_minor": 1_000_000, "fraud_multiplier": 50,
               "fraud_floor_minor": 10_000, "new_counterparties_per_10_min": 3,
               "blocked_accounts": "", "blocked_users": ""}
    section.update(changes)
    return ValidatorSection(**section)


def test_policy_from_config_parses_the_lists_once():
    a, b, user = new_id(), new_id(), new_id()
    policy = Policy.from_settings(config_section(
        blocked_accounts=" {} ,{},".format(a.upper(), b), blocked_users=user))
    assert policy.blocked_accounts == {a, b}
    assert policy.blocked_users == {user}
    assert Policy.from_settings(config_section(blocked_users=None)).blocked_users == frozenset()
    assert policy.max_amount_minor == 100_000 and policy.new_counterparties_per_10_min == 3


def blocked(**lists):
    return Policy.from_settings(config_section(**lists))


@pytest.mark.parametrize("who", [
    "source account", "destination account", "initiator", "source owner", "destination owner"])
def test_compliance_blocks_accounts_initiators_and_owners(who):
    tx = transaction()
    policy = {
        "source account": blocked(blocked_accounts=tx["source"]["id"]),
        "destination account": blocked(blocked_accounts="{},{}".format(
            new_id(), tx["destination"]["id"])),
        "initiator": blocked(blocked_users=tx["initiator_id"].upper()),
        "source owner": blocked(blocked_users=tx["source"]["owner_id"]),
        "destination owner": blocked(blocked_users=tx["destination"]["owner_id"]),
    }[who]
    assert rules.compliance_blocked(tx, policy)
    assert rules.stateless_reasons(tx, policy) == [rules.COMPLIANCE_BLOCKED]


def test_compliance_passes_others():
    tx = transaction()
    assert not rules.compliance_blocked(tx, POLICY)
    # A user id on the account list (or the reverse) is not a match.
    assert not rules.compliance_blocked(tx, blocked(blocked_accounts=tx["initiator_id"],
                                                    blocked_users=tx["source"]["id"]))


def test_a_blocked_deposit_destination():
    tx = transaction("deposit")
    assert rules.compliance_blocked(tx, blocked(blocked_accounts=tx["destination"]["id"]))


# --- together ---------------------------------------------------------------------------------


def test_a_clean_transaction_has_no_reasons():
    for type_ in sorted(TRANSACTION_TYPES):
        assert rules.stateless_reasons(transaction(type_), POLICY) == []


def test_every_stateless_reason_is_reported_not_just_the_first():
    tx = transaction(amount=200_000, source=account(balance=0, status="frozen"),
                     destination=account("EUR"))
    policy = blocked(blocked_users=tx["initiator_id"], max_amount_minor=100_000)
    assert rules.stateless_reasons(tx, policy) == [
        rules.INSUFFICIENT_FUNDS, rules.ACCOUNT_FROZEN, rules.CURRENCY_MISMATCH,
        rules.LIMIT_EXCEEDED, rules.COMPLIANCE_BLOCKED]


def test_rules_do_not_change_the_item():
    tx = transaction()
    before = copy.deepcopy(tx)
    rules.stateless_reasons(tx, POLICY)
    rules.is_well_formed(tx)
    assert tx == before
