"""The entries table: the immutable lines of every posting (the database refuses
UPDATE, DELETE and TRUNCATE on it)."""
from sqlalchemy import CHAR, BigInteger, Column, DateTime, MetaData, Table, func, select, text
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


def view_of(entry, created_at_text):
    """The view of an entry being written (a dict of its columns)."""
    return {
        "id": entry["id"],
        "account_id": entry["account_id"],
        "transaction_id": entry["transaction_id"],
        "amount": entry["amount"],
        "balance_after": entry["balance_after"],
        "created_at": created_at_text,
    }


def view(row):
    return {
        "id": row.id,
        "account_id": row.account_id,
        "transaction_id": row.transaction_id,
        "amount": row.amount,
        "balance_after": row.balance_after,
        "created_at": rfc3339(row.created_at),
    }


_INSERT = text("""
    INSERT INTO ledger.entries (id, transaction_id, account_id, currency, amount,
                                balance_after, account_seq, created_at)
    SELECT *, CAST(:created_at AS timestamptz) FROM unnest(
        CAST(:ids AS uuid[]), CAST(:transaction_ids AS uuid[]), CAST(:account_ids AS uuid[]),
        CAST(:currencies AS char(3)[]), CAST(:amounts AS bigint[]),
        CAST(:balances_after AS bigint[]), CAST(:seqs AS bigint[]))
""")


def insert_many(connection, rows, created_at):
    """Write ``rows`` (dicts of every column but created_at) in one statement."""
    if not rows:
        return
    connection.execute(_INSERT, {
        "ids": [row["id"] for row in rows],
        "transaction_ids": [row["transaction_id"] for row in rows],
        "account_ids": [row["account_id"] for row in rows],
        "currencies": [row["currency"] for row in rows],
        "amounts": [row["amount"] for row in rows],
        "balances_after": [row["balance_after"] for row in rows],
        "seqs": [row["account_seq"] for row in rows],
        "created_at": created_at,
    })


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
    return cursors.encode_sequence(row.account_seq)


def decode_cursor(cursor):
    """The account sequence number a cursor points before; ValueError if it is not one."""
    return cursors.decode_sequence(cursor)



_BALANCE_AT = text("""
    SELECT balance_after FROM ledger.entries
     WHERE account_id = :account_id AND created_at <= :at
     ORDER BY account_seq DESC
     LIMIT 1
""")


def balance_at(connection, account_id, at):
    """The account's balance at the moment ``at``: the ``balance_after`` of its latest
    entry made at or before it, 0 if none was. An account's entries carry times in the
    order of its history (batches.py reads the time under the account's lock), so the
    latest by sequence is the latest by time. Cost: a walk back along the account's
    entries (its (account_id, account_seq) index) from the newest to the first at or
    before ``at``; the further back ``at`` lies, the longer."""
    found = connection.execute(_BALANCE_AT, {"account_id": account_id, "at": at}).scalar()
    return 0 if found is None else found
