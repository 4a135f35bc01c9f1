"""Verifying the ledger's hash chain (chain.py): every posting's stored hash recomputed
from its row, its entries and the previous posting's stored hash, in chain order.

The report (``chain`` in the reconciliation report)::

    {"valid": bool, "postings_checked": int, "entries_checked": int,
     "head": {"seq": int, "hash": hex},
     "first_broken": null | {"seq", "transaction_id", "reason", "detail"},
     "broken_links": int, "entries_outside_chain": int}

Reasons a link breaks:

* ``hash_mismatch``: the posting's row or one of its entries (an amount, a balance, an
  account, a time; an entry added or removed) or its stored hash is not what was
  chained: something changed it after it was written. Each link is checked against the
  *stored* hash of the one before, so one changed posting breaks its own link only, and
  ``broken_links`` counts the postings that were changed.
* ``missing``: a chain_seq with no posting (a deleted row); ``seq`` is the first missing
  (a run of missing postings is one break).
* ``head_mismatch``: the chain head names another newest posting than the table holds
  (the newest postings deleted, or the head rewritten).

``entries_outside_chain``: entries whose transaction has no posting (forged lines no link
covers); any makes the chain invalid.

Cost: one pass over postings and entries, ``CHUNK`` postings a round, a SHA-256 each;
run inside the caller's snapshot (REPEATABLE READ), it sees a prefix of the chain, since
batches commit in chain order. ``after_seq`` starts from a checkpoint instead (the link
stored at ``after_seq`` is then trusted): docs/integrity.md says when that is enough.
"""
import time

from sqlalchemy import text

from services.ledger.chain import GENESIS_HASH, content, link, microseconds

CHUNK = 2000

_POSTINGS = text("""
    SELECT chain_seq, chain_hash, transaction_id::text AS transaction_id, type, currency,
           amount, debit_account_id::text AS debit_account_id,
           credit_account_id::text AS credit_account_id, posted_at
      FROM ledger.postings
     WHERE chain_seq > :after
     ORDER BY chain_seq
     LIMIT :limit
""")
_ENTRIES = text("""
    SELECT transaction_id::text AS transaction_id, id::text AS id,
           account_id::text AS account_id, amount, balance_after, account_seq, created_at
      FROM ledger.entries
     WHERE transaction_id = ANY(CAST(:ids AS uuid[]))
""")
_HEAD = text("SELECT seq, hash FROM ledger.chain_head WHERE id = 1")
_LINK_AT = text("SELECT chain_hash FROM ledger.postings WHERE chain_seq = :seq")
_ENTRIES_COUNT = text("SELECT count(*) FROM ledger.entries")

HASH_MISMATCH, MISSING, HEAD_MISMATCH = "hash_mismatch", "missing", "head_mismatch"
_DETAILS = {
    HASH_MISMATCH: "the posting or one of its entries is not what was chained: changed "
                   "after it was written",
    MISSING: "no posting has this chain_seq: a posting was deleted",
    HEAD_MISMATCH: "the chain head does not name the newest posting: postings were "
                   "removed from the end, or the head was rewritten",
}


def lines_of(rows):
    """``{transaction_id: [(id, account_id, amount, balance_after, account_seq,
    created_at_us)]}`` of entry rows."""
    found = {}
    for row in rows:
        found.setdefault(row.transaction_id, []).append((
            row.id, row.account_id, row.amount, row.balance_after, row.account_seq,
            microseconds(row.created_at)))
    return found


def posting_content(row, lines):
    return content(row.transaction_id, row.type, row.currency, row.amount,
                   row.debit_account_id, row.credit_account_id,
                   microseconds(row.posted_at), lines)


class _Walk:
    """The state of one verification as it goes along the chain."""

    def __init__(self, seq, previous):
        self.seq, self.previous = seq, previous
        self.postings = self.entries = self.broken = 0
        self.first_broken = None

    def breaks(self, seq, transaction_id, reason):
        self.broken += 1
        if self.first_broken is None:
            self.first_broken = {"seq": seq, "transaction_id": transaction_id,
                                 "reason": reason, "detail": _DETAILS[reason]}

    def check(self, row, lines):
        stored = bytes(row.chain_hash)
        if row.chain_seq != self.seq + 1:
            # Its predecessor is gone, so its own link cannot be checked: one break.
            self.breaks(self.seq + 1, None, MISSING)
        elif link(self.previous, posting_content(row, lines)) != stored:
            self.breaks(row.chain_seq, row.transaction_id, HASH_MISMATCH)
        self.seq, self.previous = row.chain_seq, stored
        self.postings += 1
        self.entries += len(lines)


def verify(connection, after_seq=0, chunk=CHUNK, pause=time.sleep):
    """The chain's report (module docstring), from genesis or from ``after_seq``."""
    previous = GENESIS_HASH
    if after_seq:
        stored = connection.execute(_LINK_AT, {"seq": after_seq}).scalar()
        if stored is None:
            raise ValueError("no posting has chain_seq {}".format(after_seq))
        previous = bytes(stored)
    walk = _Walk(after_seq, previous)
    while True:
        rows = connection.execute(_POSTINGS, {"after": walk.seq, "limit": chunk}).all()
        if not rows:
            break
        found = lines_of(connection.execute(
            _ENTRIES, {"ids": [row.transaction_id for row in rows]}))
        for row in rows:
            walk.check(row, found.get(row.transaction_id, ()))
        pause(0)  # a long chain is many rounds: let the process's other work run between
    head = connection.execute(_HEAD).one()
    if (head.seq, bytes(head.hash)) != (walk.seq, walk.previous):
        walk.breaks(head.seq, None, HEAD_MISMATCH)
    outside = 0
    if not after_seq:
        outside = connection.execute(_ENTRIES_COUNT).scalar_one() - walk.entries
    return {
        "valid": walk.first_broken is None and outside == 0,
        "postings_checked": walk.postings,
        "entries_checked": walk.entries,
        "head": {"seq": head.seq, "hash": bytes(head.hash).hex()},
        "first_broken": walk.first_broken,
        "broken_links": walk.broken,
        "entries_outside_chain": outside,
    }
