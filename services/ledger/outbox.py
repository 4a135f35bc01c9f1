"""The outbox: one message per entry for the Kafka mirror, written in the same commit as
the entry itself, so a posting and its messages commit or vanish together. The relay
(mirror_relay/) publishes the unpublished rows in id order and stamps ``published_at``."""

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared import tracing
from shared.wire_json import compact

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
    # The posting's W3C traceparent, the message's ``traceparent`` header (shared/tracing.py).
    Column("traceparent", Text, nullable=True),
)


def message(entry_view, account_seq, currency, posting, posted_at):
    """The payload of one entry: the entry as the API shows it, its place in the account's
    history, and the posting it belongs to (so a consumer needs nothing else)."""
    account_id = entry_view["account_id"]
    counterparty = (
        posting.credit_account_id if account_id == posting.debit_account_id
        else posting.debit_account_id
    )
    return dict(
        entry_view,
        account_seq=account_seq,
        currency=currency,
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


_INSERT = text("""
    INSERT INTO ledger.outbox (account_id, account_seq, transaction_id, payload, traceparent)
    SELECT *, CAST(:traceparent AS text)
    FROM unnest(CAST(:account_ids AS uuid[]), CAST(:seqs AS bigint[]),
                CAST(:transaction_ids AS uuid[]), CAST(:payloads AS jsonb[]))
""")


def append(connection, rows):
    """Queue ``rows`` (dicts of account_id, account_seq, transaction_id, payload) in one
    statement, in order: the ids follow the order given (the relay publishes by id)."""
    if not rows:
        return
    connection.execute(_INSERT, {
        "account_ids": [row["account_id"] for row in rows],
        "seqs": [row["account_seq"] for row in rows],
        "transaction_ids": [row["transaction_id"] for row in rows],
        "payloads": [compact(row["payload"]) for row in rows],
        # The posting call's span: every row a call writes belongs to it.
        "traceparent": tracing.current_traceparent(),
    })
