"""The entries table: the immutable lines of every posting (the database refuses
UPDATE, DELETE and TRUNCATE on it)."""
from sqlalchemy import CHAR, BigInteger, Column, DateTime, MetaData, Table, func, insert, select
from sqlalchemy.dialects.postgresql import UUID

from shared import cursors
from shared.ids import rfc3339

metadata = MetaData(schema="ledger")
entries = Table(
    "entries",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("transaction_id", UUID(as_uuid=False), nullable=False),
    Column("account_id", UUID(as_uuid=False), nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("account_seq", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def view(row):
    return {
        "id": row.id,
        "account_id": row.account_id,
        "transaction_id": row.transaction_id,
        "amount": row.amount,
        "balance_after": row.balance_after,
        "created_at": rfc3339(row.created_at),
    }


def insert_entries(connection, rows):
    """Write ``rows`` (dicts of every column but created_at); the stored rows, in order."""
    return connection.execute(
        insert(entries).returning(entries, sort_by_parameter_order=True), rows).all()


def of_transactions(connection, transaction_ids):
    """``{transaction_id: [rows]}``: each transaction's entries, the debit (negative) first."""
    if not transaction_ids:
        return {}
    rows = connection.execute(
        select(entries)
        .where(entries.c.transaction_id.in_(list(transaction_ids)))
        .order_by(entries.c.transaction_id, entries.c.amount)
    ).all()
    found = {}
    for row in rows:
        found.setdefault(row.transaction_id, []).append(row)
    return found


def page_of_account(connection, account_id, limit, before_seq=None):
    """Up to ``limit`` entries of the account, newest first, older than ``before_seq``;
    and whether more follow."""
    query = select(entries).where(entries.c.account_id == account_id)
    if before_seq is not None:
        query = query.where(entries.c.account_seq < before_seq)
    rows = connection.execute(query.order_by(entries.c.account_seq.desc()).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def encode_cursor(row):
    return cursors.encode_cursor({"s": row.account_seq})


def decode_cursor(cursor):
    """The account sequence number a cursor points before; ValueError if it is not one."""
    seq = cursors.decode_cursor(cursor, ("s",))["s"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("not a cursor")
    return seq
