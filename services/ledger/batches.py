"""Posting a batch of transactions: one database transaction for the whole batch (one
commit), one savepoint per posting, so a rejected posting rolls back alone."""
import logging
import uuid

from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from services.ledger import balances as balance_records
from services.ledger import entries as entry_records
from services.ledger import holds as hold_records
from services.ledger import outbox
from services.ledger import postings as posting_records
from services.ledger.postings import CURRENCY_MISMATCH, INSUFFICIENT_FUNDS, MALFORMED
from shared.ids import rfc3339

log = logging.getLogger(__name__)

# Deadlock and serialization failures abort the whole transaction, nothing of it is kept,
# so the batch is simply run again. The lock order below leaves no deadlock among
# well-formed batches; one that reuses a transaction id for other accounts could still
# meet another batch in a cycle on that id, and PostgreSQL then aborts one of them.
RETRYABLE_SQLSTATES = {"40P01", "40001"}
ATTEMPTS = 3
NUMERIC_OUT_OF_RANGE = "22003"


class _Rejected(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class _AlreadyPosted(Exception):
    pass


def post(db, given):
    """The results of the postings ``given``, in order, committed together."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with db.transaction() as connection:
                return post_batch(connection, given)
        except OperationalError as error:
            if _sqlstate(error) not in RETRYABLE_SQLSTATES or attempt == ATTEMPTS:
                raise
            log.warning("posting batch aborted by PostgreSQL (%s), attempt %d of %d",
                        _sqlstate(error), attempt, ATTEMPTS)


def post_batch(connection, given):
    """Post ``given`` inside the transaction ``connection`` is in; the results, in order."""
    results = [None] * len(given)
    readable = []
    for index, item in enumerate(given):
        posting, reason = posting_records.read(item)
        if posting is None:
            results[index] = posting_records.rejected(
                posting_records.given_transaction_id(item), reason)
        else:
            readable.append((index, posting))

    # Replays (redelivery, a retry after a timeout, recovery) answer from the books
    # without taking any lock. A replay racing its original is caught by claim() below.
    done = stored_results(connection, {posting.transaction_id for _, posting in readable})
    todo = []
    for index, posting in readable:
        if posting.transaction_id in done:
            results[index] = done[posting.transaction_id]
        else:
            todo.append((index, posting))
    if not todo:
        return results

    accounts = lock_accounts(connection, [posting for _, posting in todo])
    for index, posting in todo:
        results[index] = post_one(connection, posting, accounts)
    return results


def lock_accounts(connection, pending):
    """``{account_id: balances row}`` of every account ``pending`` touches, each row created
    if missing and locked until the batch commits, all in account order.

    Every deposit and withdrawal of a currency locks its one settlement row, so batches
    of a currency queue on it. Fine at one commit per batch; should it ever limit
    throughput, the settlement account can be split into several rows."""
    wanted = {}
    for posting in pending:
        for account in posting.accounts:
            # A new row takes the currency of the first posting naming it; a posting in
            # another currency then finds the mismatch.
            wanted.setdefault(account, {
                "account_id": account,
                "currency": posting.currency,
                "is_settlement": posting.is_settlement(account),
            })
    balance_records.ensure_rows(connection, list(wanted.values()))
    return balance_records.lock(connection, wanted)


def check(posting, accounts):
    """Refuse early what the database would refuse anyway (``accounts`` is current: the
    rows are locked and updated after every posting of the batch)."""
    if any(accounts[account].currency != posting.currency for account in posting.accounts):
        raise _Rejected(CURRENCY_MISMATCH)
    debit = accounts[posting.debit_account_id]
    if not debit.is_settlement and (
        debit.balance - debit.held - posting.amount < -posting.debit_overdraft_limit
    ):
        raise _Rejected(INSUFFICIENT_FUNDS)


def post_one(connection, posting, accounts):
    """Post one posting in its own savepoint; its result. ``accounts`` follows the rows."""
    try:
        with connection.begin_nested():
            if posting.hold:
                rows, result = place_hold(connection, posting, accounts)
            else:
                rows, result = move(connection, posting, accounts)
    except _AlreadyPosted:
        transaction_id = posting.transaction_id
        return stored_results(connection, [transaction_id])[transaction_id]
    except _Rejected as rejection:
        return posting_records.rejected(posting.transaction_id, rejection.reason)
    except IntegrityError as error:
        # The database's own guarantee, should the check above ever let one through.
        if _constraint(error) != balance_records.OVERDRAFT_CONSTRAINT:
            raise
        return posting_records.rejected(posting.transaction_id, INSUFFICIENT_FUNDS)
    except DataError as error:
        # A balance beyond bigint: refuse the posting, keep the batch.
        if _sqlstate(error) != NUMERIC_OUT_OF_RANGE:
            raise
        log.error("posting %s would overflow a balance", posting.transaction_id)
        return posting_records.rejected(posting.transaction_id, MALFORMED)
    # Only now, the savepoint released, do the rows' new states count for the batch.
    accounts.update(rows)
    return result


def stored_results(connection, transaction_ids):
    """``{transaction_id: result}`` of those of ``transaction_ids`` posted or held already."""
    done = hold_records.stored_results(connection, transaction_ids)
    done.update(posting_records.stored_results(connection, transaction_ids))
    return done


def move(connection, posting, accounts):
    """Claim the posting and move its money (releasing the hold it captures, if any), in the
    caller's savepoint. ``({account_id: balances row}, result)``."""
    posted_at = posting_records.claim(connection, posting)
    if posted_at is None:
        raise _AlreadyPosted()
    if posting.capture_of is not None:
        accounts = release_captured(connection, posting, accounts)
    check(posting, accounts)
    entry_rows, debit, credit = write(connection, posting, accounts, posted_at)
    views = [entry_records.view(row) for row in entry_rows]
    return ({debit.account_id: debit, credit.account_id: credit},
            posting_records.posted(posting.transaction_id, posted_at, views))


def place_hold(connection, posting, accounts):
    """Claim the hold and add its amount to the debit account's ``held``, in the caller's
    savepoint: the same funds check as a debit, the same CHECK constraint behind it."""
    if not hold_records.claim(connection, posting):
        raise _AlreadyPosted()
    check(posting, accounts)
    row = hold_records.change_held(connection, posting.debit_account_id, posting.amount,
                                   overdraft_limit=posting.debit_overdraft_limit)
    return ({row.account_id: row}, hold_records.placed(
        posting.transaction_id, posting.debit_account_id, posting.amount, posting.currency))


def release_captured(connection, posting, accounts):
    """Settle the hold a capture names (captured, by this transaction) and free all of it:
    the capture's funds check then counts the money reserved for it, and a partial capture
    leaves the rest available. ``accounts`` with the debit row as it is now."""
    hold = hold_records.find(connection, posting.capture_of, for_update=True)
    if hold is None or hold.account_id != posting.debit_account_id:
        raise _Rejected(hold_records.HOLD_NOT_FOUND)
    if hold.status != hold_records.HELD:
        raise _Rejected(hold_records.HOLD_NOT_ACTIVE)
    if hold.currency != posting.currency:
        raise _Rejected(CURRENCY_MISMATCH)
    if posting.amount > hold.amount:
        raise _Rejected(hold_records.AMOUNT_EXCEEDS_HOLD)
    if hold_records.settle(connection, hold.transaction_id, hold_records.CAPTURED,
                           settled_by=posting.transaction_id) is None:
        raise _Rejected(hold_records.HOLD_NOT_ACTIVE)
    row = hold_records.change_held(connection, hold.account_id, -hold.amount)
    return {**accounts, row.account_id: row}


def write(connection, posting, accounts, posted_at):
    """Move the money: both balances, both entries, both outbox messages.
    ``(entry rows, debit balances row, credit balances row)``."""
    debit_row = accounts[posting.debit_account_id]
    debit = balance_records.apply(
        connection, posting.debit_account_id, -posting.amount,
        overdraft_limit=None if debit_row.is_settlement else posting.debit_overdraft_limit)
    credit = balance_records.apply(connection, posting.credit_account_id, posting.amount)
    entry_rows = entry_records.insert_entries(connection, [
        _entry(posting, debit, -posting.amount),
        _entry(posting, credit, posting.amount),
    ])
    outbox.append(connection, [
        {
            "account_id": row.account_id,
            "account_seq": row.account_seq,
            "transaction_id": row.transaction_id,
            "payload": outbox.message(entry_records.view(row), row, posting, rfc3339(posted_at)),
        }
        for row in entry_rows
    ])
    return entry_rows, debit, credit


def _entry(posting, row, amount):
    return {
        "id": str(uuid.uuid4()),
        "transaction_id": posting.transaction_id,
        "account_id": row.account_id,
        "currency": posting.currency,
        "amount": amount,
        "balance_after": row.balance,
        "account_seq": row.last_seq,
    }


def _sqlstate(error):
    return getattr(error.orig, "pgcode", None)


def _constraint(error):
    diag = getattr(error.orig, "diag", None)
    return getattr(diag, "constraint_name", None)
