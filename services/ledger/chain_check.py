"""Verifying the ledger's hash chain (chain.py): every posting's stored hash recomputed
from its row, its entries and the previous posting's stored hash, lane by lane, in chain
order.

The report (``chain`` in the reconciliation report)::

    {"valid": bool, "postings_checked": int, "entries_checked": int,
     "heads": [{"lane", "seq", "hash": hex}],
     "first_broken": null | {"lane", "seq", "transaction_id", "reason", "detail"},
     "broken_links": int, "entries_outside_chain": int}

Reasons a link breaks (``first_broken`` is the first in lane, then seq, order):

* ``hash_mismatch``: the posting's row or one of its entries (an amount, a balance, an
  account, a time; an entry added or removed) or its stored hash is not what was
  chained: something changed it after it was written. Each link is checked against the
  *stored* hash of the one before, so one changed posting breaks its own link only, and
  ``broken_links`` counts the postings that were changed.
* ``missing``: a chain_seq with no posting (a deleted row); ``seq`` is the first missing
  (a run of missing postings is one break).
* ``head_mismatch``: the lane's head names another newest posting than the table holds
  (the newest postings deleted, the head rewritten or gone).

``entries_outside_chain``: entries whose transaction has no posting (forged lines no link
covers); any makes the chain invalid.

Cost: one pass over postings and entries, ``CHUNK`` postings a round, a SHA-256 each;
run inside the caller's snapshot (REPEATABLE READ), it sees a prefix of every lane, since
a lane's batches commit in its order. ``checkpoint`` (``{lane: seq}``) starts each lane
after a link already verified, trusting it: docs/integrity.md says when that is enough.
"""
import time

from sqlalchemy import text

from services.ledger.chain import GENESIS_HASH, content, link, microseconds

CHUNK = 2000

_POSTINGS = text("""
    SELECT chain_lane, chain_seq, chain_hash, transaction_id::text AS transaction_id, type,
           currency, amount, debit_account_id::text AS debit_account_id,
           credit_account_id::text AS credit_account_id, posted_at
      FROM ledger.postings
     WHERE chain_lane = :lane AND chain_seq > :after
     ORDER BY chain_seq
     LIMIT :limit
""")
_ENTRIES = text("""
    SELECT transaction_id::text AS transaction_id, id::text AS id,
           account_id::text AS account_id, amount, balance_after, account_seq, created_at
      FROM ledger.entries
     WHERE transaction_id = ANY(CAST(:ids AS uuid[]))
""")
_HEADS = text("SELECT lane, seq, hash FROM ledger.chain_heads ORDER BY lane")
# The lanes postings are in, by a walk along the (chain_lane, chain_seq) index.
_LANES = text("""
    WITH RECURSIVE lanes(lane) AS (
        SELECT min(chain_lane) FROM ledger.postings
        UNION ALL
        SELECT (SELECT min(chain_lane) FROM ledger.postings p WHERE p.chain_lane > lanes.lane)
          FROM lanes WHERE lanes.lane IS NOT NULL
    )
    SELECT lane FROM lanes WHERE lane IS NOT NULL
""")
_LINK_AT = text("SELECT chain_hash FROM ledger.postings "
                "WHERE chain_lane = :lane AND chain_seq = :seq")
_ENTRIES_COUNT = text("SELECT count(*) FROM ledger.entries")

HASH_MISMATCH, MISSING, HEAD_MISMATCH = "hash_mismatch", "missing", "head_mismatch"
_DETAILS = {
    HASH_MISMATCH: "the posting or one of its entries is not what was chained: changed "
                   "after it was written",
    MISSING: "no posting has this place in the lane: a posting was deleted",
    HEAD_MISMATCH: "the lane's head does not name its newest posting: postings were "
                   "removed from its end, or the head was rewritten",
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
    """What one verification has found so far."""

    def __init__(self):
        self.postings = self.entries = self.broken = 0
        self.first_broken = None

    def breaks(self, lane, seq, transaction_id, reason):
        self.broken += 1
        if self.first_broken is None:
            self.first_broken = {"lane": lane, "seq": seq, "transaction_id": transaction_id,
                                 "reason": reason, "detail": _DETAILS[reason]}


def _walk_lane(connection, walk, lane, after, previous, chunk, pause):
    """Checks the lane's links after ``(after, previous)``; where it ends, ``(seq, hash)``."""
    seq = after
    while True:
        rows = connection.execute(_POSTINGS, {"lane": lane, "after": seq,
                                              "limit": chunk}).all()
        if not rows:
            return seq, previous
        found = lines_of(connection.execute(
            _ENTRIES, {"ids": [row.transaction_id for row in rows]}))
        for row in rows:
            lines = found.get(row.transaction_id, ())
            stored = bytes(row.chain_hash)
            if row.chain_seq != seq + 1:
                # Its predecessor is gone, so its own link cannot be checked: one break.
                walk.breaks(lane, seq + 1, None, MISSING)
            elif link(previous, posting_content(row, lines)) != stored:
                walk.breaks(lane, row.chain_seq, row.transaction_id, HASH_MISMATCH)
            seq, previous = row.chain_seq, stored
            walk.postings += 1
            walk.entries += len(lines)
        pause(0)  # a long chain is many rounds: let the process's other work run between


def verify(connection, checkpoint=None, chunk=CHUNK, pause=time.sleep):
    """The chain's report (module docstring), from genesis, or for each lane of
    ``checkpoint`` (``{lane: seq}``) from the link stored there."""
    checkpoint = checkpoint or {}
    heads = {row.lane: (row.seq, bytes(row.hash)) for row in connection.execute(_HEADS)}
    lanes = sorted(set(heads) | set(connection.execute(_LANES).scalars()))
    walk = _Walk()
    for lane in lanes:
        after, previous = checkpoint.get(lane, 0), GENESIS_HASH
        if after:
            stored = connection.execute(_LINK_AT, {"lane": lane, "seq": after}).scalar()
            if stored is None:
                raise ValueError("no posting at lane {} seq {}".format(lane, after))
            previous = bytes(stored)
        end = _walk_lane(connection, walk, lane, after, previous, chunk, pause)
        if heads.get(lane) != end:
            walk.breaks(lane, heads.get(lane, end)[0], None, HEAD_MISMATCH)
    outside = 0
    if not checkpoint:
        outside = connection.execute(_ENTRIES_COUNT).scalar_one() - walk.entries
    return {
        "valid": walk.first_broken is None and outside == 0,
        "postings_checked": walk.postings,
        "entries_checked": walk.entries,
        "heads": [{"lane": lane, "seq": seq, "hash": head_hash.hex()}
                  for lane, (seq, head_hash) in sorted(heads.items())],
        "first_broken": walk.first_broken,
        "broken_links": walk.broken,
        "entries_outside_chain": outside,
    }
