"""The validator's rules: small pure functions over one transaction (no Redis, no clock).

A transaction item is what the transactions service sends to ``vote`` (see
``is_well_formed``). Stateless rules read only the item and the policy; the stateful
ones (velocity, the usual amount, new counterparties) take the numbers the risk store
read from Redis, so every rule here can be tested with plain values.
"""
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from shared.ids import parse_id
from shared.money import MINOR_UNIT_EXPONENT, TRANSACTION_TYPES, available_balance, is_amount

# Reason codes (the transactions service reports the first as the failure_reason).
INSUFFICIENT_FUNDS = "insufficient_funds"
ACCOUNT_FROZEN = "account_frozen"
CURRENCY_MISMATCH = "currency_mismatch"
LIMIT_EXCEEDED = "limit_exceeded"
FRAUD_SUSPECTED = "fraud_suspected"
COMPLIANCE_BLOCKED = "compliance_blocked"
MALFORMED_TRANSACTION = "malformed_transaction"

ACTIVE = "active"

# Outflows of the source account that count towards its velocity, its usual amount and its
# counterparties. A capture is left out: it moves money its authorization (a "payment",
# counted when approved) already reserved, so counting it again would count it twice.
# A deposit has no source (the settlement account pays).
COUNTED_OUTFLOWS = frozenset({"withdrawal", "transfer", "payment", "refund"})

# The usual amount is an exponentially weighted moving average with weight 1/USUAL_WEIGHT
# for the newest amount, in integer minor units (no floats near money).
USUAL_WEIGHT = 8


def _ids(ids):
    """Ids (the settings' parsed comma-separated list) as a set of canonical forms."""
    return frozenset(canonical_id(part) for part in ids if str(part).strip())


def canonical_id(value):
    """UUIDs compare in canonical form (case, braces); anything else as stripped text."""
    return parse_id(value) or str(value).strip()


@dataclass(frozen=True)
class Policy:
    """The validator's limits (its settings' ``validator`` section), made once when the
    service starts."""

    max_amount_minor: int
    daily_limit_minor: int
    fraud_multiplier: Fraction  # exact, so "2.5" in the environment stays exact
    fraud_floor_minor: int
    new_counterparties_per_10_min: int
    blocked_accounts: frozenset = frozenset()
    blocked_users: frozenset = frozenset()

    @classmethod
    def from_settings(cls, section):
        """From a ``ValidatorSection`` (services/validator/settings.py)."""
        return cls(
            max_amount_minor=section.max_amount_minor,
            daily_limit_minor=section.daily_limit_minor,
            fraud_multiplier=Fraction(section.fraud_multiplier),  # exact, from a Decimal
            fraud_floor_minor=section.fraud_floor_minor,
            new_counterparties_per_10_min=section.new_counterparties_per_10_min,
            blocked_accounts=_ids(section.blocked_accounts),
            blocked_users=_ids(section.blocked_users),
        )


# --- shape ---------------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_timestamp(value):
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_account(account):
    return (
        isinstance(account, dict)
        and parse_id(account.get("id")) is not None
        and parse_id(account.get("owner_id")) is not None
        and account.get("currency") in MINOR_UNIT_EXPONENT
        and isinstance(account.get("status"), str)
        and _is_int(account.get("balance"))
        and _is_int(account.get("held")) and account["held"] >= 0
        and _is_int(account.get("overdraft_limit")) and account["overdraft_limit"] >= 0
    )


def is_well_formed(tx):
    """True if ``tx`` has every field, of the right type, and the accounts its type needs:
    a deposit has no source (the settlement account pays), a withdrawal no destination,
    every other type both."""
    if not isinstance(tx, dict):
        return False
    if not (
        parse_id(tx.get("id")) is not None
        and tx.get("type") in TRANSACTION_TYPES
        and is_amount(tx.get("amount"))
        and tx.get("currency") in MINOR_UNIT_EXPONENT
        and parse_id(tx.get("initiator_id")) is not None
        and _is_timestamp(tx.get("created_at"))
    ):
        return False
    source, destination = tx.get("source"), tx.get("destination")
    if tx["type"] == "deposit":
        return source is None and _is_account(destination)
    if tx["type"] == "withdrawal":
        return destination is None and _is_account(source)
    return _is_account(source) and _is_account(destination)


def transaction_id(tx):
    """The id a vote names: the item's id when it is text, else None (a malformed item)."""
    value = tx.get("id") if isinstance(tx, dict) else None
    return value if isinstance(value, str) else None


def accounts_of(tx):
    return [account for account in (tx["source"], tx["destination"]) if account is not None]


# --- stateless rules (well-formed items only) ------------------------------------------------


def insufficient_funds(tx):
    source = tx["source"]
    return source is not None and available_balance(
        source["balance"], source["held"], source["overdraft_limit"]) < tx["amount"]


def account_frozen(tx):
    """Frozen and closed accounts may neither pay nor be paid."""
    return any(account["status"] != ACTIVE for account in accounts_of(tx))


def currency_mismatch(tx):
    return any(account["currency"] != tx["currency"] for account in accounts_of(tx))


def over_max_amount(amount, policy):
    return amount > policy.max_amount_minor


def compliance_blocked(tx, policy):
    if not policy.blocked_accounts and not policy.blocked_users:
        return False  # no lists: nothing to compare (the common case, and a batch's many)
    accounts = accounts_of(tx)
    account_ids = {canonical_id(account["id"]) for account in accounts}
    user_ids = {canonical_id(tx["initiator_id"])}
    user_ids.update(canonical_id(account["owner_id"]) for account in accounts)
    return bool(account_ids & policy.blocked_accounts or user_ids & policy.blocked_users)


def stateless_reasons(tx, policy):
    """The reasons the item alone gives to reject it (empty: none)."""
    reasons = []
    if insufficient_funds(tx):
        reasons.append(INSUFFICIENT_FUNDS)
    if account_frozen(tx):
        reasons.append(ACCOUNT_FROZEN)
    if currency_mismatch(tx):
        reasons.append(CURRENCY_MISMATCH)
    if over_max_amount(tx["amount"], policy):
        reasons.append(LIMIT_EXCEEDED)
    if compliance_blocked(tx, policy):
        reasons.append(COMPLIANCE_BLOCKED)
    return reasons


# --- stateful rules: the numbers come from this validator's risk state ----------------------


def over_daily_limit(outflow_today, amount, policy):
    """Velocity: the source's approved outflow this UTC day, this one included, over the limit."""
    return outflow_today + amount > policy.daily_limit_minor


def unusual_amount(amount, usual, policy):
    """Far above the account's usual amount, and large in itself. No history: no signal."""
    return (
        usual is not None
        and amount > policy.fraud_multiplier * usual
        and amount > policy.fraud_floor_minor
    )


def too_many_new_counterparties(recent_new, is_new, policy):
    """Paying one more never-paid-before account than allowed within ten minutes.
    ``recent_new``: new counterparties already paid in the window."""
    return is_new and recent_new + 1 > policy.new_counterparties_per_10_min


def next_usual(usual, amount):
    """The usual amount after an approved ``amount`` (the first amount starts the average)."""
    if usual is None:
        return amount
    return usual + (amount - usual) // USUAL_WEIGHT


def stateful_reasons(amount, outflow_today, usual, recent_new, is_new, policy):
    reasons = []
    if over_daily_limit(outflow_today, amount, policy):
        reasons.append(LIMIT_EXCEEDED)
    if unusual_amount(amount, usual, policy) or too_many_new_counterparties(
            recent_new, is_new, policy):
        reasons.append(FRAUD_SUSPECTED)
    return reasons
