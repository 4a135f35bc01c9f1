"""Authorization holds: ``held`` money on an account's balances row, one holds row per
authorizing transaction. Its primary key places a hold exactly once; the row settles once,
held -> captured (by a capture posting, batches.py) or released (release()).

Lock order, as for postings: the account's balances row first, then the hold's row. The
balances row lock is what serializes a capture and a release of the same hold."""
from sqlalchemy import (
    CHAR, BigInteger, Column, DateTime, MetaData, Table, Text, func, select, update,
)
from sqlalchemy.dialects.postgresql import UUID, insert

from services.ledger import balances as balance_records
from services.ledger.balances import balances

HELD = "held"
CAPTURED = "captured"
RELEASED = "released"
UNKNOWN = "unknown"

HOLD_NOT_FOUND = "hold_not_found"
HOLD_NOT_ACTIVE = "hold_not_active"
AMOUNT_EXCEEDS_HOLD = "amount_exceeds_hold"

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


def claim(connection, posting):
    """Insert the hold's row; True, or False when the transaction holds already (the primary
    key decides between racing calls, as postings.claim does)."""
    return connection.execute(
        insert(holds)
        .values(
            transaction_id=posting.transaction_id,
            account_id=posting.debit_account_id,
            currency=posting.currency,
            amount=posting.amount,
        )
        .on_conflict_do_nothing(index_elements=["transaction_id"])
        .returning(holds.c.transaction_id)
    ).scalar_one_or_none() is not None


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
