"""The ledger's hash chain: every posting stores the SHA-256 of its content (the posting
row and all its entries) and of the previous posting's hash, so a change made behind the
ledger's back — a superuser with the immutability triggers disabled, a doctored backup —
shows up as a broken link when the chain is verified (docs/integrity.md).

Order: ``chain_seq`` 1, 2, 3… across the whole ledger. A batch takes the chain head's row
lock (``ledger.chain_head``, one row) as its last lock, after every balances row, and
keeps it until it commits; so batches join the chain one at a time, each after the
previous one has committed, and commit order is chain order. The hashes are computed here
in Python, in order, and written by the same set-based statement that inserts the
postings (postings.py), which also moves the head: one statement more per batch (the
lock), none per posting.

Genesis: the first posting links to 32 zero bytes (ledger_0008 chained the postings that
existed before it, in ``(posted_at, transaction_id)`` order).
"""
import hashlib
from datetime import datetime, timedelta, timezone

from sqlalchemy import (
    BigInteger, Column, DateTime, LargeBinary, MetaData, SmallInteger, Table, func, text,
)

GENESIS_HASH = bytes(32)
# Names the content layout below: a future layout must be a new version, and verification
# must keep reading this one for the links written with it.
CONTENT_VERSION = "v1"

metadata = MetaData(schema="ledger")
chain_head = Table(
    "chain_head",
    metadata,
    Column("id", SmallInteger, primary_key=True),  # always 1: one chain
    Column("seq", BigInteger, nullable=False),  # the newest posting's chain_seq (0: none)
    Column("hash", LargeBinary, nullable=False),  # its chain_hash (GENESIS_HASH: none)
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def microseconds(moment):
    """A timestamptz as integer microseconds since 1970 (exactly what PostgreSQL keeps)."""
    return (moment - _EPOCH) // _MICROSECOND


def content(transaction_id, type, currency, amount, debit_account_id, credit_account_id,
            posted_at_us, lines):
    """The bytes a posting's link hashes. ``lines``: its entries, each ``(id, account_id,
    amount, balance_after, account_seq, created_at_us)``, in any order (sorted here).
    Every field is an id, an integer or a fixed code, so ``|``, ``,`` and ``;`` never
    occur inside one and the layout is unambiguous."""
    return "|".join((
        CONTENT_VERSION, transaction_id, type, currency, str(amount), debit_account_id,
        credit_account_id, str(posted_at_us),
        ";".join(",".join(map(str, line)) for line in sorted(lines)),
    )).encode("ascii")


def link(previous_hash, posting_content):
    """The chain hash of a posting: SHA-256 of the previous posting's hash and its content."""
    return hashlib.sha256(previous_hash + posting_content).digest()


_LOCK_HEAD = text("SELECT seq, hash FROM ledger.chain_head WHERE id = 1 FOR UPDATE")


def lock_head(connection):
    """``(seq, hash)`` of the chain's newest posting, its row locked until the batch ends:
    every other batch waits here until this one has committed (or rolled back)."""
    row = connection.execute(_LOCK_HEAD).one()
    return row.seq, bytes(row.hash)


def extend(connection, moved, lines_of, posted_at):
    """The links of the postings ``moved`` (postings.Posting, in batch order): a list of
    ``(chain_seq, chain_hash)``, one per posting, after the current head (locked here).
    ``lines_of``: ``{transaction_id: [entry dicts as batches.py writes them]}``."""
    seq, previous = lock_head(connection)
    posted_at_us = microseconds(posted_at)
    links = []
    for posting in moved:
        seq += 1
        previous = link(previous, content(
            posting.transaction_id, posting.type, posting.currency, posting.amount,
            posting.debit_account_id, posting.credit_account_id, posted_at_us,
            [(entry["id"], entry["account_id"], entry["amount"], entry["balance_after"],
              entry["account_seq"], posted_at_us)
             for entry in lines_of[posting.transaction_id]]))
        links.append((seq, previous))
    return links
