"""The balances table: one row per account the ledger has moved money for."""
from sqlalchemy import CHAR, BigInteger, Column, DateTime, MetaData, Table, func, select
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData(schema="ledger")
balances = Table(
    "balances",
    metadata,
    Column("account_id", UUID(as_uuid=False), primary_key=True),
    Column("currency", CHAR(3), nullable=False),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

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
