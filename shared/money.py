"""Money is an integer count of a currency's minor unit; never a float."""
import uuid

# Money enters and leaves the books through one settlement account per currency
# (deposits debit it, withdrawals credit it), so every posting balances.
SETTLEMENT_NAMESPACE = uuid.UUID("6f1c1b0e-7a52-5d0c-9a51-3f0f8a1d2c40")

# ISO 4217 minor-unit exponents of the currencies accounts may hold.
MINOR_UNIT_EXPONENT = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "KRW": 0,
    "KWD": 3,
    "BHD": 3,
}
CURRENCIES = tuple(sorted(MINOR_UNIT_EXPONENT))

# Every kind of money movement: the contract's transaction types.
TRANSACTION_TYPES = ("deposit", "withdrawal", "transfer", "payment", "capture", "refund")

MIN_AMOUNT_MINOR = 1
MAX_AMOUNT_MINOR = 10**15


def is_amount(value):
    """A valid amount: a true integer (not a bool, not a float) in the accepted range."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and MIN_AMOUNT_MINOR <= value <= MAX_AMOUNT_MINOR
    )


def available_balance(balance, held, overdraft_limit):
    """What an account may still spend: its posted money, less what authorizations hold,
    plus its overdraft limit. The one definition every service uses."""
    return balance - held + overdraft_limit


def settlement_account_id(currency):
    """The settlement account of ``currency``: the same id in every process, forever."""
    return str(uuid.uuid5(SETTLEMENT_NAMESPACE, "settlement:" + currency))
