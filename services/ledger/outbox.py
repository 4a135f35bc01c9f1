"""The outbox: one message per entry for the Kafka mirror, written in the same savepoint as
the entry itself, so a posting and its messages commit or vanish together. A relay (not
here yet) publishes the unpublished rows in id order and stamps ``published_at``."""
from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, func, insert
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData(schema="ledger")
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account_id", UUID(as_uuid=False), nullable=False),
    Column("account_seq", BigInteger, nullable=False),
    Column("transaction_id", UUID(as_uuid=False), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True), nullable=True),
)


def message(entry_view, entry_row, posting, posted_at):
    """The payload of one entry: the entry as the API shows it, its place in the account's
    history, and the posting it belongs to (so a consumer needs nothing else)."""
    counterparty = (
        posting.credit_account_id if entry_row.account_id == posting.debit_account_id
        else posting.debit_account_id
    )
    return dict(
        entry_view,
        account_seq=entry_row.account_seq,
        currency=entry_row.currency,
        counterparty_account_id=counterparty,
        posting={
            "transaction_id": posting.transaction_id,
            "type": posting.type,
            "currency": posting.currency,
            "amount": posting.amount,
            "debit_account_id": posting.debit_account_id,
            "credit_account_id": posting.credit_account_id,
            "posted_at": posted_at,
        },
    )


def append(connection, rows):
    """Queue ``rows`` (dicts of account_id, account_seq, transaction_id, payload)."""
    connection.execute(insert(outbox), rows)
