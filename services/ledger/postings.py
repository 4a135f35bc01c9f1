"""The postings table: one row per posted transaction. Its primary key is what makes a
transaction move money exactly once, however often it is delivered."""
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import CHAR, BigInteger, Column, DateTime, MetaData, Table, Text, func, select
from sqlalchemy.dialects.postgresql import UUID, insert

from services.ledger import entries as entry_records
from shared.ids import parse_id, rfc3339
from shared.money import CURRENCIES, MAX_AMOUNT_MINOR, is_amount, settlement_account_id

TYPES = ("deposit", "withdrawal", "transfer", "payment", "capture", "refund")

POSTED = "posted"
REJECTED = "rejected"
INSUFFICIENT_FUNDS = "insufficient_funds"
CURRENCY_MISMATCH = "currency_mismatch"
MALFORMED = "malformed_posting"

# Any currency's settlement account; naming one of another currency is a mismatch.
SETTLEMENT_CURRENCY = {settlement_account_id(currency): currency for currency in CURRENCIES}

metadata = MetaData(schema="ledger")
postings = Table(
    "postings",
    metadata,
    Column("transaction_id", UUID(as_uuid=False), primary_key=True),
    Column("type", Text, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("debit_account_id", UUID(as_uuid=False), nullable=False),
    Column("credit_account_id", UUID(as_uuid=False), nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


@dataclass(frozen=True)
class Posting:
    """A well-formed posting, its accounts resolved (a settlement account by its id)."""

    transaction_id: str
    type: str
    currency: str
    amount: int
    debit_account_id: str
    credit_account_id: str
    debit_overdraft_limit: int
    # A hold posting (type payment) places a hold on the debit account instead of
    # moving money; a capture posting (type capture) names the hold it settles.
    hold: bool = False
    capture_of: Optional[str] = None

    @property
    def accounts(self):
        if self.hold:
            return (self.debit_account_id,)
        return (self.debit_account_id, self.credit_account_id)

    def is_settlement(self, account_id):
        return account_id == settlement_account_id(self.currency)


def _is_limit(value):
    return (isinstance(value, int) and not isinstance(value, bool)
            and 0 <= value <= MAX_AMOUNT_MINOR)


def read(posting):
    """``(Posting, None)`` for a well-formed posting, else ``(None, reason)``.

    A missing ``debit_overdraft_limit`` counts as 0: the strictest reading. Optional
    ``"hold": true`` (type payment, the debit account no settlement account) makes it a hold
    posting; optional ``"capture_of": <hold transaction id>`` (type capture) a capture of
    that hold."""
    if not isinstance(posting, dict):
        return None, MALFORMED
    transaction_id = parse_id(posting.get("transaction_id"))
    currency = posting.get("currency")
    limit = posting.get("debit_overdraft_limit", 0)
    if (transaction_id is None or posting.get("type") not in TYPES
            or currency not in CURRENCIES or not is_amount(posting.get("amount"))
            or not _is_limit(limit)):
        return None, MALFORMED
    accounts = []
    for key in ("debit_account_id", "credit_account_id"):
        given = posting.get(key)
        account = settlement_account_id(currency) if given is None else parse_id(given)
        if account is None:
            return None, MALFORMED
        if SETTLEMENT_CURRENCY.get(account, currency) != currency:
            return None, CURRENCY_MISMATCH
        accounts.append(account)
    if accounts[0] == accounts[1]:
        return None, MALFORMED
    hold = posting.get("hold", False)
    capture_of = posting.get("capture_of")
    if not isinstance(hold, bool) or (hold and (
            posting["type"] != "payment" or accounts[0] == settlement_account_id(currency))):
        return None, MALFORMED
    if capture_of is not None:
        capture_of = parse_id(capture_of)
        if capture_of is None or posting["type"] != "capture":
            return None, MALFORMED
    return Posting(transaction_id, posting["type"], currency, posting["amount"],
                   accounts[0], accounts[1], limit, hold, capture_of), None


def given_transaction_id(posting):
    """The id to answer a posting with: canonical when it is one, else as given if it is
    text (it names nothing), else None."""
    given = posting.get("transaction_id") if isinstance(posting, dict) else None
    canonical = parse_id(given)
    if canonical is not None:
        return canonical
    return given if isinstance(given, str) else None


def claim(connection, posting):
    """Insert the posting's row; its ``posted_at``, or None when the transaction is posted
    already. The primary key decides between racing calls: a concurrent uncommitted claim
    makes this wait for its outcome, and its commit makes this one do nothing."""
    return connection.execute(
        insert(postings)
        .values(
            transaction_id=posting.transaction_id,
            type=posting.type,
            currency=posting.currency,
            amount=posting.amount,
            debit_account_id=posting.debit_account_id,
            credit_account_id=posting.credit_account_id,
        )
        .on_conflict_do_nothing(index_elements=["transaction_id"])
        .returning(postings.c.posted_at)
    ).scalar_one_or_none()


def posted(transaction_id, posted_at, entry_views):
    return {
        "transaction_id": transaction_id,
        "status": POSTED,
        "entries": entry_views,
        "posted_at": rfc3339(posted_at),
    }


def rejected(transaction_id, reason):
    return {"transaction_id": transaction_id, "status": REJECTED, "reason": reason}


def stored_rows(connection, transaction_ids):
    """``{transaction_id: postings row}`` of those of ``transaction_ids`` posted already."""
    if not transaction_ids:
        return {}
    rows = connection.execute(
        select(postings).where(postings.c.transaction_id.in_(list(transaction_ids)))).all()
    return {row.transaction_id: row for row in rows}


def stored_results(connection, transaction_ids):
    """``{transaction_id: result}`` of those of ``transaction_ids`` posted already: the
    same result their first posting answered."""
    rows = stored_rows(connection, transaction_ids)
    found = entry_records.of_transactions(connection, list(rows))
    return {
        transaction_id: posted(transaction_id, row.posted_at,
                               [entry_records.view(entry) for entry in found[transaction_id]])
        for transaction_id, row in rows.items()
    }
