"""The books checked against themselves, in SQL: per currency the entries must sum to zero
and every balance must equal the sum of its account's entries."""
from sqlalchemy import BigInteger, Numeric, func, select, text
from sqlalchemy.dialects.postgresql import UUID

from services.ledger.balances import balances
from services.ledger.entries import entries

# A broken ledger could differ everywhere; the answer names at most this many accounts.
MAX_DISCREPANCIES = 1000

_DISCREPANCIES = text("""
    WITH sums AS (
        SELECT account_id, sum(amount) AS entries_sum FROM ledger.entries GROUP BY account_id
    )
    SELECT coalesce(b.account_id, s.account_id) AS account_id,
           coalesce(b.balance, 0) AS balance,
           coalesce(s.entries_sum, 0) AS entries_sum
    FROM ledger.balances b FULL JOIN sums s ON s.account_id = b.account_id
    WHERE coalesce(b.balance, 0) <> coalesce(s.entries_sum, 0)
    ORDER BY 1
    LIMIT :limit
""").columns(account_id=UUID(as_uuid=False), balance=BigInteger, entries_sum=Numeric)


def totals(connection):
    """Run it inside one snapshot (REPEATABLE READ), or concurrent postings land between
    the queries and the sums disagree for no fault of the books."""
    currencies = {}
    for currency, total in connection.execute(
        select(entries.c.currency, func.sum(entries.c.amount)).group_by(entries.c.currency)
    ):
        currencies.setdefault(currency, {"entries_sum": 0, "accounts_sum": 0})
        currencies[currency]["entries_sum"] = int(total)
    for currency, total in connection.execute(
        select(balances.c.currency, func.sum(balances.c.balance)).group_by(balances.c.currency)
    ):
        currencies.setdefault(currency, {"entries_sum": 0, "accounts_sum": 0})
        currencies[currency]["accounts_sum"] = int(total)
    checked = connection.execute(select(func.count()).select_from(balances)).scalar_one()
    discrepancies = [
        {"account_id": row.account_id, "balance": int(row.balance),
         "entries_sum": int(row.entries_sum)}
        for row in connection.execute(_DISCREPANCIES, {"limit": MAX_DISCREPANCIES})
    ]
    return {"currencies": currencies, "accounts_checked": checked,
            "discrepancies": discrepancies}
