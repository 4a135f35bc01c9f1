"""A validator's settings: the limits and rules it votes by (the pool itself is shared)."""
from decimal import Decimal

from shared.settings import (
    CommaList, NonNegativeInt, PositiveInt, Section, ServiceSettings, setting)


class ValidatorSection(Section):
    max_amount_minor: PositiveInt = setting(
        "Largest amount of one transaction, in the currency's minor units")
    daily_limit_minor: PositiveInt = setting(
        "Most an account may send in a day, in the currency's minor units")
    # A Decimal, read as an exact Fraction: "2.5" in the environment stays exact.
    fraud_multiplier: Decimal = setting(
        "Fraud: an amount this many times above the account's usual (once over the floor)",
        gt=0)
    fraud_floor_minor: NonNegativeInt = setting(
        "Fraud: amounts up to this are never flagged as unusual")
    new_counterparties_per_10_min: PositiveInt = setting(
        "Fraud: more new counterparties than this within ten minutes")
    redis_timeout_ms: PositiveInt = setting(
        "A risk-state read Redis has not answered by then is skipped (the stateless rules "
        "still decide)")
    blocked_accounts: CommaList = setting(
        "Compliance: account ids that may not move money (comma-separated)")
    blocked_users: CommaList = setting(
        "Compliance: user ids that may not move money (comma-separated)")

    @property
    def redis_timeout_s(self):
        return self.redis_timeout_ms / 1000


class ValidatorSettings(ServiceSettings):
    validator: ValidatorSection
