"""Money is an integer count of a currency's minor unit; never a float."""

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

MIN_AMOUNT_MINOR = 1
MAX_AMOUNT_MINOR = 10**15


def is_amount(value):
    """A valid amount: a true integer (not a bool, not a float) in the accepted range."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and MIN_AMOUNT_MINOR <= value <= MAX_AMOUNT_MINOR
    )
