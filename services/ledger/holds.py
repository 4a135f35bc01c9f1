"""Authorization holds: ``held`` money on an account's balances row, one holds row per
authorizing transaction. Its primary key places a hold exactly once; the row settles once,
held -> captured (by a capture posting, batches.py) or released (release()).

Lock order, as for postings: the account's balances row first, then the hold's row. The
balances row lock is what serializes a capture and a release of the same hold."""
from sqlalchemy import (
    CHAR, BigInteger, Column, DateTime, MetaData, Table, Text, func, select, text, update,
)
from sqlalchemy.dialects.postgresql import UUID

from services.ledger import balances as balance_records
from services.ledger.balances import balances

HELD = "held"
CAPTURED = "captured"
RELEASED = "released"
UNKNOWN = "unknown"


metadata = MetaData(schema="ledger")
holds = Table(
    "holds",
    metadata,
    Column("transaction_id", UUID(as_uuid=False), primary_key=True),
    Column("account_id", UUID(as_uuid=False), nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("status", Text, nullable=False, server_default=HELD),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("settled_by", UUID(as_uuid=False), nullable=True),
)


def placed(transaction_id, account_id, amount, currency):
    """The result of a hold posting (the same however often it is replayed)."""
    return {
        "transaction_id": transaction_id,
        "status": HELD,
        "hold": {"account_id": account_id, "amount": amount, "currency": currency},
    }


_INSERT = text("""
    INSERT INTO ledger.holds (transaction_id, account_id, currency, amount, created_at)
    SELECT *, CAST(:created_at AS timestamptz) FROM unnest(
        CAST(:ids AS uuid[]), CAST(:account_ids AS uuid[]), CAST(:currencies AS char(3)[]),
        CAST(:amounts AS bigint[]))
    ON CONFLICT (transaction_id) DO NOTHING
    RETURNING transaction_id
""")
_SETTLE = text("""
    UPDATE ledger.holds h SET status = 'captured', settled_at = now(), settled_by = v.by
      FROM unnest(CAST(:ids AS uuid[]), CAST(:bys AS uuid[])) AS v(transaction_id, by)
     WHERE h.transaction_id = v.transaction_id AND h.status = 'held'
    RETURNING h.transaction_id
""")


def insert_many(connection, placed_holds, created_at):
    """Claim the rows of new holds (rules.HoldBook) in one statement; the number claimed
    (fewer than given: another batch placed one of them first)."""
    if not placed_holds:
        return 0
    return len(connection.execute(_INSERT, {
        "ids": [hold.transaction_id for hold in placed_holds],
        "account_ids": [hold.account_id for hold in placed_holds],
        "currencies": [hold.currency for hold in placed_holds],
        "amounts": [hold.amount for hold in placed_holds],
        "created_at": created_at,
    }).all())


def capture_many(connection, captured):
    """Settle the holds (rules.HoldBook) captures took, in one statement; the number
    settled."""
    if not captured:
        return 0
    return len(connection.execute(_SETTLE, {
        "ids": [hold.transaction_id for hold in captured],
        "bys": [hold.settled_by for hold in captured],
    }).all())


def lock_many(connection, transaction_ids):
    """``{transaction_id: row}`` of those holds, locked until the transaction ends (after
    the accounts' rows: the lock order of every posting)."""
    if not transaction_ids:
        return {}
    rows = connection.execute(
        select(holds).where(holds.c.transaction_id.in_(sorted(transaction_ids)))
        .order_by(holds.c.transaction_id).with_for_update()).all()
    return {row.transaction_id: row for row in rows}


def stored_results(connection, transaction_ids):
    """``{transaction_id: result}`` of those of ``transaction_ids`` that placed a hold: the
    result their hold posting answered, whatever became of the hold since."""
    if not transaction_ids:
        return {}
    rows = connection.execute(
        select(holds).where(holds.c.transaction_id.in_(list(transaction_ids)))).all()
    return {row.transaction_id: placed(row.transaction_id, row.account_id, row.amount,
                                       row.currency)
            for row in rows}


def find(connection, transaction_id, for_update=False):
    query = select(holds).where(holds.c.transaction_id == transaction_id)
    if for_update:
        query = query.with_for_update()
    return connection.execute(query).one_or_none()


def change_held(connection, account_id, amount, overdraft_limit=None):
    """Add the signed ``amount`` to the account's ``held`` (the row locked by the caller);
    the row as it is now. The CHECK constraints refuse holding beyond the available money
    (``balances.OVERDRAFT_CONSTRAINT``) and a negative ``held``."""
    values = {"held": balances.c.held + amount, "updated_at": func.now()}
    if overdraft_limit is not None:
        values["overdraft_limit"] = overdraft_limit
    return connection.execute(
        update(balances).where(balances.c.account_id == account_id)
        .values(**values).returning(balances)
    ).one()


def settle(connection, transaction_id, status, settled_by=None):
    """Settle an active hold (held -> ``status``); the row, or None if it is not active."""
    return connection.execute(
        update(holds)
        .where(holds.c.transaction_id == transaction_id, holds.c.status == HELD)
        .values(status=status, settled_at=func.now(), settled_by=settled_by)
        .returning(holds)
    ).one_or_none()


def release(connection, transaction_id):
    """Free an active hold inside the caller's transaction: ``{transaction_id, status}``,
    status ``released``, or the hold's status if it was settled before, or ``unknown``."""
    hold = find(connection, transaction_id)
    if hold is None:
        return {"transaction_id": transaction_id, "status": UNKNOWN}
    if hold.status != HELD:
        return {"transaction_id": transaction_id, "status": hold.status}
    balance_records.lock(connection, [hold.account_id])
    settled = settle(connection, transaction_id, RELEASED)
    if settled is None:  # a capture settled it while this waited for the lock
        return {"transaction_id": transaction_id,
                "status": find(connection, transaction_id).status}
    change_held(connection, hold.account_id, -hold.amount)
    return {"transaction_id": transaction_id, "status": RELEASED}
