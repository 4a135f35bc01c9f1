"""Posting a batch: one database transaction and a handful of statements, however many
postings it holds — the way the fastest ledgers amortize their commits.

1. Lock: every account the batch touches, balances rows in account order (FOR UPDATE),
   then read the accounts' state; the holds that captures settle, after them.
2. Replays answer from the books: a posting whose transaction is posted already (a
   redelivered or retried call, recovery) answers its first result and moves nothing.
   Read under the locks, so a duplicate of a posting another batch has just committed is
   seen here (it touches the same accounts, so it waited for those locks). Replays are
   rare, so this read is made only once a batch has met one (``post``).
3. Apply: the postings one after another, in the order given, in memory (rules.py): a
   later posting sees the balances the earlier ones left. A refused posting changes
   nothing; with ``atomic`` one refusal refuses the whole batch (``batch_aborted``).
4. Write what changed with set-based statements: holds, entries, then the balances —
   whose statement also takes a lane of the hash chain, the batch's last lock, held to
   the commit — the postings with their links (chain.py) and the Kafka outbox, each one
   statement for the whole batch.

Deadlocks and serialization failures abort the whole transaction and nothing of it is
kept, so the batch simply runs again. The lock order leaves no deadlock among
well-formed batches; one that reuses a transaction id for other accounts could still meet
another batch in a cycle on that id, and PostgreSQL then aborts one of them.
"""
import logging
import uuid

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import OperationalError

from services.ledger import balances as balance_records
from services.ledger import chain
from services.ledger import entries as entry_records
from services.ledger import holds as hold_records
from services.ledger import outbox
from services.ledger import postings as posting_records
from services.ledger import rules
from shared.ids import rfc3339

log = logging.getLogger(__name__)

RETRYABLE_SQLSTATES = {"40P01", "40001"}
ATTEMPTS = 3


class _Replayed(Exception):
    """A posting of the batch turned out to be posted already (its row was there when the
    batch wrote): run the batch again, reading the books for replays first."""


def post(db, given, atomic=False):
    """The results of the postings ``given``, in order, committed together.

    Replays are rare (a retry after a lost reply, recovery), so the first attempt does not
    look for them: if one was there, the writes that claim each posting's row find it,
    the whole transaction rolls back, and the batch runs again looking first."""
    look_for_replays = False
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with db.transaction() as connection:
                return post_batch(connection, given, atomic, look_for_replays)
        except (OperationalError, _Replayed) as error:
            replayed = isinstance(error, _Replayed)
            if not (replayed or _sqlstate(error) in RETRYABLE_SQLSTATES) or attempt == ATTEMPTS:
                raise
            look_for_replays = look_for_replays or replayed
            if not replayed:
                log.warning("posting batch aborted (%s), attempt %d of %d",
                            _sqlstate(error), attempt, ATTEMPTS)


def post_batch(connection, given, atomic=False, look_for_replays=True):
    """Post ``given`` inside the transaction ``connection`` is in; the results, in order.
    Without ``look_for_replays``, ``_Replayed`` when one of them was posted before."""
    results = [None] * len(given)
    readable = []
    for index, item in enumerate(given):
        posting, reason = posting_records.read(item)
        if posting is None:
            results[index] = posting_records.rejected(
                posting_records.given_transaction_id(item), reason)
        else:
            readable.append((index, posting))
    if not readable:
        return results

    books, posted_at = lock_books(connection, [posting for _, posting in readable])
    holds = _hold_books(hold_records.lock_many(connection, {
        posting.capture_of for _, posting in readable if posting.capture_of}))
    if not look_for_replays and any(
            holds.get(posting.capture_of) is not None
            and holds[posting.capture_of].settled_by == posting.transaction_id
            for _, posting in readable if posting.capture_of):
        look_for_replays = True  # a capture that settled its hold already: a replay
    done = (stored_results(connection, {posting.transaction_id for _, posting in readable})
            if look_for_replays else {})
    batch = _Applied(posted_at)
    first_of = {}  # transaction id -> index of its first posting in this batch
    for index, posting in readable:
        transaction_id = posting.transaction_id
        if transaction_id in done:
            results[index] = done[transaction_id]
        elif transaction_id in first_of:  # the same transaction twice: posted once
            results[index] = ("same", first_of[transaction_id])
        else:
            first_of[transaction_id] = index
            results[index] = batch.apply(posting, rules.apply(posting, books, holds))
    results = [results[result[1]] if isinstance(result, tuple) else result
               for result in results]
    if not look_for_replays and batch.refused and stored_results(connection, batch.refused):
        # A refused posting made before: answered by its first result, not refused now
        # (the money it moved may be why it would be refused again).
        raise _Replayed()
    # A malformed posting aborts an atomic batch too, but only after the replay check:
    # a posting made before must answer as it was, not batch_aborted.
    if atomic and (batch.refused or len(readable) < len(given)):
        if not look_for_replays:
            raise _Replayed()  # what stands as it was is known only by looking
        return _aborted(given, results, replayed={
            index for index, posting in readable if posting.transaction_id in done})
    batch.write(connection, books, holds)
    return results


class _Applied:
    """What the postings of a batch did, gathered for the set-based writes."""

    def __init__(self, posted_at):
        self.posted_at = posted_at
        self.posted_at_text = rfc3339(posted_at)
        self.moved = []
        self.entries = []
        self.lines_of = {}  # transaction id -> its entries (what its chain link hashes)
        self.messages = []
        self.refused = set()  # transaction ids of the postings refused

    def apply(self, posting, outcome):
        """The result of ``posting``, recording what it wrote."""
        if outcome.refused:
            self.refused.add(posting.transaction_id)
            return posting_records.rejected(posting.transaction_id, outcome.reason)
        if outcome.hold is not None:
            return hold_records.placed(posting.transaction_id, posting.debit_account_id,
                                       posting.amount, posting.currency)
        self.moved.append(posting)
        self.lines_of[posting.transaction_id] = lines = []
        views = []
        for line in outcome.lines:
            entry = {"id": str(uuid.uuid4()), "transaction_id": posting.transaction_id,
                     "account_id": line.account_id, "currency": posting.currency,
                     "amount": line.amount, "balance_after": line.balance_after,
                     "account_seq": line.account_seq}
            view = entry_records.view_of(entry, self.posted_at_text)
            self.entries.append(entry)
            lines.append(entry)
            self.messages.append({
                "account_id": line.account_id, "account_seq": line.account_seq,
                "transaction_id": posting.transaction_id,
                "payload": outbox.message(view, line.account_seq, posting.currency, posting,
                                          self.posted_at_text)})
            views.append(view)
        return posting_records.posted(posting.transaction_id, self.posted_at, views)

    def write(self, connection, books, holds):
        """Claim each posting's and hold's row: one already there (a replay, or the same
        transaction id posted meanwhile for other accounts) rolls it all back.

        The lock of a lane of the chain comes last, so a batch holds it only for its
        last three statements and its commit (docs/integrity.md measures what it costs)."""
        placed = [hold for hold in holds.values() if hold.new]
        if hold_records.insert_many(connection, placed, self.posted_at) < len(placed):
            raise _Replayed()
        captured = [hold for hold in holds.values() if hold.settled]
        if hold_records.capture_many(connection, captured) < len(captured):
            raise _Replayed()
        entry_records.insert_many(connection, self.entries, self.posted_at)
        changed = [book for book in books.values() if book.changed]
        if self.moved:
            # The balances' statement takes the lane too (no round trip of its own).
            links = chain.extend(connection, self.moved, self.lines_of, self.posted_at,
                                 books=changed)
            if posting_records.insert_many(connection, self.moved, self.posted_at,
                                           links) < len(self.moved):
                raise _Replayed()
            self._stamp_links(links)
        else:
            balance_records.store_many(connection, changed)
        outbox.append(connection, self.messages)

    def _stamp_links(self, links):
        """Each mirror message carries its posting's link: a copy of the chain outside
        the database (Kafka), against which a rewritten chain can be checked."""
        stamps = {posting.transaction_id: link.stamp()
                  for posting, link in zip(self.moved, links)}
        for message in self.messages:
            message["payload"]["posting"]["chain"] = stamps[message["transaction_id"]]


# The state is read by a statement of its own, after the locks: a statement that waited
# for a lock sees the rows it locked as they are now, but the rows it joined only as they
# were when it started (PostgreSQL's EvalPlanQual), and a freeze that committed while the
# posting waited must be seen. The time is read there too, under the locks, not at the
# transaction's start (now()): an account's entries then carry times in the order of its
# history, which the balance at a point in time relies on (entries.balance_at).
_STATE = text("""
    SELECT id, currency, status, version, overdraft_limit, clock_timestamp() AS now
      FROM ledger.accounts WHERE id = ANY(CAST(:ids AS uuid[]))
""").columns(id=UUID(as_uuid=False))


def lock_books(connection, pending):
    """``({account_id: rules.Book}, now)``: every account ``pending`` touches, its balances
    row locked until the batch commits (taken in account order, so concurrent batches never
    wait for each other in a cycle), its state read under that lock."""
    wanted = {}
    for posting in pending:
        for account in posting.accounts:
            wanted.setdefault(account, posting)
    # Settlement rows are made on first use; an account's row is made with the account.
    balance_records.ensure_rows(connection, [
        {"account_id": account, "currency": posting.currency, "is_settlement": True}
        for account, posting in wanted.items() if posting.is_settlement(account)])
    rows = balance_records.lock(connection, wanted)
    states = {row.id: row for row in connection.execute(_STATE, {"ids": list(rows)})}
    now = next(iter(states.values())).now if states else connection.execute(
        text("SELECT clock_timestamp()")).scalar_one()
    books = {}
    for account_id, row in rows.items():
        state = states.get(account_id)
        books[account_id] = rules.Book(
            account_id=account_id, currency=row.currency, is_settlement=row.is_settlement,
            balance=row.balance, held=row.held, last_seq=row.last_seq,
            row_limit=row.overdraft_limit, known=state is not None)
        if state is not None:
            book = books[account_id]
            book.currency, book.status = state.currency, state.status
            book.version, book.overdraft_limit = state.version, state.overdraft_limit
    return books, now


def _hold_books(rows):
    return {transaction_id: rules.HoldBook(row.transaction_id, row.account_id, row.currency,
                                           row.amount, row.status, row.settled_by)
            for transaction_id, row in rows.items()}


def _aborted(given, results, replayed=()):
    """An atomic batch with a refused posting: nothing is written. The refused keep their
    reasons, every other posting is refused with ``batch_aborted`` — but for replays of
    postings made before, which stand as they were."""
    return [
        result if index in replayed or (
            result is not None and result["status"] == posting_records.REJECTED)
        else posting_records.rejected(posting_records.given_transaction_id(item),
                                      rules.BATCH_ABORTED)
        for index, (item, result) in enumerate(zip(given, results))
    ]


def stored_results(connection, transaction_ids):
    """``{transaction_id: result}`` of those of ``transaction_ids`` posted or held already."""
    done = hold_records.stored_results(connection, transaction_ids)
    done.update(posting_records.stored_results(connection, transaction_ids))
    return done


def _sqlstate(error):
    return getattr(getattr(error, "orig", None), "pgcode", None)
