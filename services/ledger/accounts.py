"""The accounts table: who owns which account, in which currency, in what state, with what
limits. The ledger keeps them beside the money (balances.py) so that a posting checks an
account's state under the same row lock that guards its balance.

Lock discipline: an account's ``balances`` row lock guards its money *and* its state. A
posting locks the balances rows first and then reads the accounts rows; a change of state
(freeze, a new overdraft limit) takes the same balances row lock before it writes. So a
freeze either commits before a posting takes its locks (the posting sees it) or waits
until the posting has committed: no posting ever acts on a state that has changed.
"""
import uuid

from sqlalchemy import (
    CHAR, BigInteger, Column, DateTime, Integer, MetaData, Table, Text, func, insert, literal,
    select, text, tuple_, update,
)
from sqlalchemy.dialects.postgresql import UUID

from services.ledger import balances as balance_records
from shared import cursors
from shared.ids import rfc3339
from shared.money import available_balance

ACTIVE, FROZEN, CLOSED = "active", "frozen", "closed"
STATUSES = (ACTIVE, FROZEN, CLOSED)
# What an admin may set; closing is its own operation (it needs the balance to be zero).
SETTABLE_STATUSES = (ACTIVE, FROZEN)

metadata = MetaData(schema="ledger")
accounts = Table(
    "accounts",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("owner_id", UUID(as_uuid=False), nullable=False),
    Column("name", Text, nullable=True),
    Column("currency", CHAR(3), nullable=False),
    Column("status", Text, nullable=False, server_default=ACTIVE),
    Column("overdraft_limit", BigInteger, nullable=False, server_default="0"),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def view(row, money=balance_records.ZERO):
    """An account as the contract shows it: its state and its money. ``available_balance``
    is what may be spent now (shared/money.py)."""
    return {
        "id": row.id,
        "owner_id": row.owner_id,
        "name": row.name,
        "currency": row.currency,
        "status": row.status,
        "balance": money["balance"],
        "available_balance": available_balance(money["balance"], money["held"],
                                               row.overdraft_limit),
        "overdraft_limit": row.overdraft_limit,
        "version": row.version,
        "created_at": rfc3339(row.created_at),
    }


def insert_account(connection, owner_id, currency, name=None):
    """A new active account at version 1, with its (zero) balances row."""
    row = connection.execute(
        insert(accounts)
        .values(id=str(uuid.uuid4()), owner_id=owner_id, name=name, currency=currency,
                status=ACTIVE, overdraft_limit=0, version=1)
        .returning(accounts)
    ).one()
    balance_records.ensure_rows(connection, [
        {"account_id": row.id, "currency": currency, "is_settlement": False}])
    return row


def find(connection, account_id):
    return connection.execute(select(accounts).where(accounts.c.id == account_id)).one_or_none()


def find_many(connection, account_ids):
    if not account_ids:
        return []
    return connection.execute(
        select(accounts).where(accounts.c.id.in_(list(account_ids)))).all()


def page_of_owner(connection, owner_id, limit, after=None):
    """Up to ``limit`` of the owner's accounts, oldest first, strictly after the position
    ``after`` = ``(created_at, id)``; and whether more follow."""
    query = select(accounts).where(accounts.c.owner_id == owner_id)
    if after is not None:
        created_at, account_id = after
        query = query.where(
            tuple_(accounts.c.created_at, accounts.c.id)
            > tuple_(literal(created_at, DateTime(timezone=True)),
                     literal(account_id, UUID(as_uuid=False))))
    rows = connection.execute(
        query.order_by(accounts.c.created_at, accounts.c.id).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def lock_for_change(connection, account_id):
    """Take the account's balances row lock (see the module's docstring) and read the
    account as it is under it; None if there is no such account."""
    row = find(connection, account_id)
    if row is None:
        return None
    # Every account has its row from its opening (ledger_0007 made the older ones'); made
    # here all the same, so no change ever goes ahead without the lock.
    balance_records.ensure_rows(connection, [
        {"account_id": row.id, "currency": row.currency, "is_settlement": False}])
    balance_records.lock(connection, [account_id])
    return find(connection, account_id)


def update_if_version(connection, account_id, expected_version, **values):
    """Apply ``values`` and bump the version, only if the row still has ``expected_version``;
    the updated row, or None when another writer changed it first."""
    return connection.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.version == expected_version)
        .values(version=accounts.c.version + 1, **values)
        .returning(accounts)
    ).one_or_none()


_STATES = text("""
    SELECT a.id, a.owner_id, a.currency, a.status, a.overdraft_limit, a.version,
           coalesce(b.balance, 0) AS balance, coalesce(b.held, 0) AS held
      FROM ledger.accounts a LEFT JOIN ledger.balances b ON b.account_id = a.id
     WHERE a.id = ANY(CAST(:ids AS uuid[]))
""").columns(id=UUID(as_uuid=False), owner_id=UUID(as_uuid=False))


def states(connection, account_ids):
    """``{account_id: {id, owner_id, currency, status, overdraft_limit, version, balance,
    held}}`` of those of ``account_ids`` that exist: what a transaction is judged on."""
    if not account_ids:
        return {}
    return {row.id: dict(row._mapping) for row in
            connection.execute(_STATES, {"ids": list(account_ids)})}


def encode_cursor(row):
    return cursors.encode_time_and_id(row.created_at, row.id)


decode_cursor = cursors.decode_time_and_id
