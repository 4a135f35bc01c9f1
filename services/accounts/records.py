"""The accounts table and what may be done to it."""
import uuid

from sqlalchemy import (
    CHAR,
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import UUID

from shared import cursors
from shared.ids import rfc3339

STATUSES = ("active", "frozen", "closed")
# What an admin may set; closing is its own operation (it needs the ledger's word on the balance).
SETTABLE_STATUSES = ("active", "frozen")

metadata = MetaData(schema="accounts")
accounts = Table(
    "accounts",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("owner_id", UUID(as_uuid=False), nullable=False),
    Column("name", Text, nullable=True),
    Column("currency", CHAR(3), nullable=False),
    Column("status", Text, nullable=False, server_default="active"),
    Column("overdraft_limit", BigInteger, nullable=False, server_default="0"),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def view(row):
    """An account as services and the gateway see it (balances come from the ledger)."""
    return {
        "id": row.id,
        "owner_id": row.owner_id,
        "name": row.name,
        "currency": row.currency,
        "status": row.status,
        "overdraft_limit": row.overdraft_limit,
        "version": row.version,
        "created_at": rfc3339(row.created_at),
    }


def insert_account(connection, owner_id, currency, name=None):
    return connection.execute(
        insert(accounts)
        .values(
            id=str(uuid.uuid4()),
            owner_id=owner_id,
            name=name,
            currency=currency,
            status="active",
            overdraft_limit=0,
            version=1,
        )
        .returning(accounts)
    ).one()


def find(connection, account_id):
    return connection.execute(
        select(accounts).where(accounts.c.id == account_id)
    ).one_or_none()


def find_many(connection, account_ids):
    if not account_ids:
        return []
    return connection.execute(
        select(accounts).where(accounts.c.id.in_(list(account_ids)))
    ).all()


def page_of_owner(connection, owner_id, limit, after=None):
    """Up to ``limit`` of the owner's accounts, oldest first, strictly after the position
    ``after`` = ``(created_at, id)``; and whether more follow."""
    query = select(accounts).where(accounts.c.owner_id == owner_id)
    if after is not None:
        created_at, account_id = after
        query = query.where(
            tuple_(accounts.c.created_at, accounts.c.id)
            > tuple_(
                literal(created_at, DateTime(timezone=True)),
                literal(account_id, UUID(as_uuid=False)),
            )
        )
    rows = connection.execute(
        query.order_by(accounts.c.created_at, accounts.c.id).limit(limit + 1)
    ).all()
    return rows[:limit], len(rows) > limit


def update_if_version(connection, account_id, expected_version, **values):
    """Apply ``values`` and bump the version, only if the row still has ``expected_version``.

    Returns the updated row, or None when another writer changed it first (optimistic locking:
    under READ COMMITTED a concurrent writer's UPDATE waits for ours, then re-checks the
    version and matches nothing)."""
    return connection.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.version == expected_version)
        .values(version=accounts.c.version + 1, **values)
        .returning(accounts)
    ).one_or_none()


# --- Cursors ------------------------------------------------------------------------------


def encode_cursor(row):
    return cursors.encode_time_and_id(row.created_at, row.id)


decode_cursor = cursors.decode_time_and_id
