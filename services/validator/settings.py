"""A validator's settings: the limits and rules it votes by (the pool itself is shared)."""
from fractions import Fraction

from pydantic import field_validator

from shared.settings import (
    CommaList, NonNegativeInt, PositiveInt, Section, ServiceSettings, setting)


class ValidatorSection(Section):
    max_amount_minor: PositiveInt = setting(
        "Largest amount of one transaction, in the currency's minor units")
    daily_limit_minor: PositiveInt = setting(
        "Most an account may send in a day, in the currency's minor units")
    fraud_multiplier: str = setting(
        "Fraud: an amount this many times above the account's usual (once over the floor)")
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

    @field_validator("fraud_multiplier", mode="before")
    @classmethod
    def _exact_positive_number(cls, value):
        # Kept as text, read as an exact Fraction: "2.5" in the environment stays exact.
        try:
            number = Fraction(str(value))
        except (ValueError, ZeroDivisionError):
            raise ValueError("must be a number, e.g. 50 or 2.5") from None
        if number <= 0:
            raise ValueError("must be greater than 0")
        return str(value)

    @property
    def redis_timeout_s(self):
        return self.redis_timeout_ms / 1000


class ValidatorSettings(ServiceSettings):
    validator: ValidatorSection
