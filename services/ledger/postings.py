"""The postings table: one row per posted transaction. Its primary key is what makes a
transaction move money exactly once, however often it is delivered."""
from dataclasses import dataclass, field
from typing import Optional

from sqlalchemy import (
    CHAR, BigInteger, Column, DateTime, LargeBinary, MetaData, SmallInteger, Table, Text, func,
    select, text,
)
from sqlalchemy.dialects.postgresql import UUID

from services.ledger import entries as entry_records
from services.ledger.rules import CURRENCY_MISMATCH, MALFORMED
from shared.ids import parse_id, rfc3339
from shared.money import CURRENCIES, TRANSACTION_TYPES, is_amount, settlement_account_id

POSTED = "posted"
REJECTED = "rejected"

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
    # The posting's place in the ledger's hash chain and its link (chain.py).
    Column("chain_lane", SmallInteger, nullable=False),
    Column("chain_seq", BigInteger, nullable=False),
    Column("chain_hash", LargeBinary, nullable=False),
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
    # A hold posting (type payment) places a hold on the debit account instead of
    # moving money; a capture posting (type capture) names the hold it settles.
    hold: bool = False
    capture_of: Optional[str] = None
    # {account_id: version} as the validators judged the accounts: a posting whose
    # account has changed since (frozen, a new limit) is refused (optimistic locking).
    expected_versions: dict = field(default_factory=dict)

    @property
    def accounts(self):
        """Both sides, a hold's too: a hold moves no money to the merchant, but the
        merchant's account must be one that may be paid (open, in the currency), or the
        payer's money would be held for a capture that can never land."""
        return (self.debit_account_id, self.credit_account_id)

    def is_settlement(self, account_id):
        return account_id == settlement_account_id(self.currency)


def _versions(given, accounts):
    """``{account_id: version}`` of ``given`` if it names only ``accounts`` with positive
    integer versions; None when malformed."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        return None
    versions = {}
    for account, version in given.items():
        account = parse_id(account)
        if account not in accounts or not (
                isinstance(version, int) and not isinstance(version, bool) and version >= 1):
            return None
        versions[account] = version
    return versions


def read(posting):
    """``(Posting, None)`` for a well-formed posting, else ``(None, reason)``.

    Optional ``"hold": true`` (type payment, the debit account no settlement account) makes
    it a hold posting; optional ``"capture_of": <hold transaction id>`` (type capture) a
    capture of that hold; optional ``"expected_versions": {account_id: version}`` the
    versions the posting was approved on."""
    if not isinstance(posting, dict):
        return None, MALFORMED
    transaction_id = parse_id(posting.get("transaction_id"))
    currency = posting.get("currency")
    if (transaction_id is None or posting.get("type") not in TRANSACTION_TYPES
            or currency not in CURRENCIES or not is_amount(posting.get("amount"))):
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
    versions = _versions(posting.get("expected_versions"), accounts)
    if versions is None:
        return None, MALFORMED
    return Posting(transaction_id, posting["type"], currency, posting["amount"],
                   accounts[0], accounts[1], hold, capture_of, versions), None


def given_transaction_id(posting):
    """The id to answer a posting with: canonical when it is one, else as given if it is
    text (it names nothing), else None."""
    given = posting.get("transaction_id") if isinstance(posting, dict) else None
    canonical = parse_id(given)
    if canonical is not None:
        return canonical
    return given if isinstance(given, str) else None


# The lane's head moves in the same statement (a data-modifying WITH always runs): the
# batch holds its row lock already (chain.take_lane).
_INSERT = text("""
    WITH head AS (
        UPDATE ledger.chain_heads SET seq = :head_seq, hash = :head_hash, updated_at = now()
         WHERE lane = :lane
    )
    INSERT INTO ledger.postings (transaction_id, type, currency, amount, debit_account_id,
                                 credit_account_id, chain_seq, chain_hash, chain_lane,
                                 posted_at)
    SELECT *, CAST(:lane AS smallint), CAST(:posted_at AS timestamptz) FROM unnest(
        CAST(:ids AS uuid[]), CAST(:types AS text[]), CAST(:currencies AS char(3)[]),
        CAST(:amounts AS bigint[]), CAST(:debits AS uuid[]), CAST(:credits AS uuid[]),
        CAST(:chain_seqs AS bigint[]), CAST(:chain_hashes AS bytea[]))
    ON CONFLICT (transaction_id) DO NOTHING
    RETURNING transaction_id
""")


def insert_many(connection, moved, posted_at, links):
    """Claim the rows of the postings ``moved``, all in one statement, with their
    ``links`` in the hash chain (chain.extend: one lane, consecutive), and move that lane's
    head to the last; the number claimed. Fewer than given means another batch posted one
    of them first (its primary key): the caller must roll the whole batch back."""
    if not moved:
        return 0
    return len(connection.execute(_INSERT, {
        "ids": [posting.transaction_id for posting in moved],
        "types": [posting.type for posting in moved],
        "currencies": [posting.currency for posting in moved],
        "amounts": [posting.amount for posting in moved],
        "debits": [posting.debit_account_id for posting in moved],
        "credits": [posting.credit_account_id for posting in moved],
        "chain_seqs": [link.seq for link in links],
        "chain_hashes": [link.hash for link in links],
        "lane": links[-1].lane,
        "head_seq": links[-1].seq,
        "head_hash": links[-1].hash,
        "posted_at": posted_at,
    }).all())


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
