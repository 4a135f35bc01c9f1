"""The balances table: the money of every account (made with the account; a currency's
settlement account's on its first posting), kept by the postings under a row lock. That
lock also guards the account's state (accounts.py)."""
from sqlalchemy import (
    CHAR, BigInteger, Boolean, Column, DateTime, MetaData, Table, func, select, text, update,
)
from sqlalchemy.dialects.postgresql import UUID, insert

metadata = MetaData(schema="ledger")
balances = Table(
    "balances",
    metadata,
    Column("account_id", UUID(as_uuid=False), primary_key=True),
    Column("currency", CHAR(3), nullable=False),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The account_seq of the account's newest entry (0: none yet).
    Column("last_seq", BigInteger, nullable=False, server_default="0"),
    # The account's overdraft limit as the latest posting debiting it saw it; the CHECK
    # constraint balance_within_overdraft holds every row to it.
    Column("overdraft_limit", BigInteger, nullable=False, server_default="0"),
    Column("is_settlement", Boolean, nullable=False, server_default="false"),
)

# The constraint whose violation means "not enough money" (see ledger_0004).
OVERDRAFT_CONSTRAINT = "balance_within_overdraft"

ZERO = {"balance": 0, "held": 0}


def balances_of(connection, account_ids):
    """``{account_id: {"balance", "held"}}`` of those of ``account_ids`` with a row."""
    if not account_ids:
        return {}
    rows = connection.execute(
        select(balances.c.account_id, balances.c.balance, balances.c.held)
        .where(balances.c.account_id.in_(list(account_ids)))
    ).all()
    return {row.account_id: {"balance": row.balance, "held": row.held} for row in rows}


def ensure_rows(connection, rows):
    """Create the missing rows of ``rows`` (dicts of account_id, currency, is_settlement);
    existing rows keep everything, their currency included.

    Inserted in account order, like the locks that follow: two batches creating the
    same new rows wait for each other in one order and never deadlock."""
    if not rows:
        return
    ordered = sorted(rows, key=lambda row: row["account_id"])
    connection.execute(
        insert(balances).values(ordered).on_conflict_do_nothing(index_elements=["account_id"]))


def lock(connection, account_ids):
    """The rows of ``account_ids``, locked FOR UPDATE until the transaction ends, taken in
    account order so that concurrent batches never wait for each other in a cycle."""
    rows = connection.execute(
        select(balances)
        .where(balances.c.account_id.in_(sorted(account_ids)))
        .order_by(balances.c.account_id)
        .with_for_update()
    ).all()
    return {row.account_id: row for row in rows}


def apply(connection, account_id, amount, overdraft_limit=None):
    """Add the signed ``amount`` to the account's balance and take its next sequence number;
    for a debit also record the account's current ``overdraft_limit``. The row (locked by
    the caller) as it is now. The CHECK constraint refuses a balance below its limit
    (``IntegrityError``, constraint ``OVERDRAFT_CONSTRAINT``), whatever the caller checked."""
    values = {
        "balance": balances.c.balance + amount,
        "last_seq": balances.c.last_seq + 1,
        "updated_at": func.now(),
    }
    if overdraft_limit is not None:
        values["overdraft_limit"] = overdraft_limit
    return connection.execute(
        update(balances)
        .where(balances.c.account_id == account_id)
        .values(**values)
        .returning(balances)
    ).one()


UPDATE_SQL = """
    UPDATE ledger.balances b
       SET balance = v.balance, held = v.held, last_seq = v.last_seq,
           overdraft_limit = v.overdraft_limit, updated_at = now()
      FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[]), CAST(:helds AS bigint[]),
                  CAST(:seqs AS bigint[]), CAST(:limits AS bigint[]))
           AS v(account_id, balance, held, last_seq, overdraft_limit)
     WHERE b.account_id = v.account_id
"""
_UPDATE = text(UPDATE_SQL)


def store_parameters(books):
    """The parameters of ``UPDATE_SQL`` for ``books``."""
    return {
        "ids": [book.account_id for book in books],
        "balances": [book.balance for book in books],
        "helds": [book.held for book in books],
        "seqs": [book.last_seq for book in books],
        "limits": [book.row_limit for book in books],
    }


def store_many(connection, books):
    """Write the money of ``books`` (rules.Book, their rows locked by the caller) in one
    statement. The CHECK constraints still judge every row."""
    if not books:
        return
    connection.execute(_UPDATE, store_parameters(books))
