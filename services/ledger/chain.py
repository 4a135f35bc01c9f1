"""The ledger's hash chain: every posting stores the SHA-256 of its content (the posting
row and all its entries) and of the previous posting's hash, so a change made behind the
ledger's back — a superuser with the immutability triggers disabled, a doctored backup —
shows up as a broken link when the chain is verified (docs/integrity.md).

Order: the chain runs in a few lanes (``ledger.chain_heads``, one row each), and each
lane is one unbroken chain, ``chain_seq`` 1, 2, 3… A batch takes one lane's row lock as
its last lock, after every balances row — the first lane no other batch holds (SKIP
LOCKED), or, when every lane is busy, it waits for one — and keeps it until it commits;
so within a lane batches join one at a time, each after the previous one has committed,
and commit order is chain order. One lane would make every batch of the ledger wait for
the previous one's commit (its WAL flush): concurrent batches could no longer share
flushes, and throughput fell by half in docs/integrity.md's measurement. The hashes are
computed here in Python, in batch order, and written by the same set-based statement
that inserts the postings (postings.py), which also moves the lane's head; the lane is
taken by the statement that writes the batch's balances: no statement more per batch,
none per posting.

Genesis: every lane's first posting links to 32 zero bytes. ledger_0009 chained the
postings that existed before it into lane 0, in ``(posted_at, transaction_id)`` order.
"""
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import (
    BigInteger, Column, DateTime, LargeBinary, MetaData, SmallInteger, Table, func, text,
)

from services.ledger import balances as balance_records

GENESIS_HASH = bytes(32)
# Names the content layout below: a future layout must be a new version, and verification
# must keep reading this one for the links written with it.
CONTENT_VERSION = "v1"

metadata = MetaData(schema="ledger")
chain_heads = Table(
    "chain_heads",
    metadata,
    Column("lane", SmallInteger, primary_key=True),
    Column("seq", BigInteger, nullable=False),  # the lane's newest chain_seq (0: none)
    Column("hash", LargeBinary, nullable=False),  # its chain_hash (GENESIS_HASH: none)
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Link:
    lane: int
    seq: int
    hash: bytes

    def stamp(self):
        """The link as JSON (the mirror's messages carry it)."""
        return {"lane": self.lane, "seq": self.seq, "hash": self.hash.hex()}


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


_FREE_LANE_SQL = """
    SELECT lane, seq, hash FROM ledger.chain_heads ORDER BY lane LIMIT 1
       FOR UPDATE SKIP LOCKED
"""
# The first lane free; never waits.
_TAKE_FREE_LANE = text(_FREE_LANE_SQL)
# The same, in the statement that writes the batch's balances (a data-modifying WITH
# always runs): no round trip of its own, the cost of a statement being most of a small
# batch's (docs/integrity.md).
_STORE_AND_TAKE_FREE_LANE = text("""
    WITH stored AS ({}), lane AS ({})
    SELECT lane, seq, hash FROM lane
""".format(balance_records.UPDATE_SQL, _FREE_LANE_SQL))
# Every lane busy: wait for one, a different one for each batch.
_WAIT_FOR_LANE = text("""
    SELECT lane, seq, hash FROM ledger.chain_heads
     WHERE lane = (SELECT lane FROM ledger.chain_heads ORDER BY lane
                   OFFSET :pick % (SELECT count(*) FROM ledger.chain_heads) LIMIT 1)
       FOR UPDATE
""")


def take_lane(connection, pick, books=()):
    """``(lane, seq, hash)`` of a lane's newest posting, its head row locked until the
    batch ends: no other batch joins that lane before this one has committed (or rolled
    back). ``pick`` spreads the batches that must wait over the lanes. ``books``: the
    batch's changed balances (rules.Book), written by the same statement."""
    if books:
        row = connection.execute(_STORE_AND_TAKE_FREE_LANE,
                                 balance_records.store_parameters(books)).one_or_none()
    else:
        row = connection.execute(_TAKE_FREE_LANE).one_or_none()
    if row is None:
        row = connection.execute(_WAIT_FOR_LANE, {"pick": pick}).one()
    return row.lane, row.seq, bytes(row.hash)


def extend(connection, moved, lines_of, posted_at, books=()):
    """The links of the postings ``moved`` (postings.Posting, in batch order), one per
    posting, continuing a lane taken here — by the statement that writes ``books``, the
    batch's changed balances, when given. ``lines_of``: ``{transaction_id: [entry dicts
    as batches.py writes them]}``."""
    lane, seq, previous = take_lane(connection, hash(moved[0].transaction_id) & 0xFFFF, books)
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
        links.append(Link(lane, seq, previous))
    return links
