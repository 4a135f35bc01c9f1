"""Transactions as the API shows them: one transaction's view, who may see it, and the
pages of a list (newest first, with their cursors)."""
from collections import OrderedDict

from sqlalchemy import DateTime, literal, or_, select, tuple_
from sqlalchemy.dialects.postgresql import UUID

from services.transactions.records import transactions
from shared import cursors
from shared.ids import rfc3339

VIEWS_REMEMBERED = 20_000
_views = OrderedDict()


def view(row):
    """A transaction as the contract shows it: votes without their signatures.

    A row that ends is shown twice over (its event, and the answer to whoever waits for
    it), a batch's thousand rows at once: made once per version of the row."""
    version = (row.id, row.status, row.decided_at, row.completed_at)
    made = _views.get(version)
    if made is None:
        made = _views[version] = _view(row)
        if len(_views) > VIEWS_REMEMBERED:
            _views.popitem(last=False)
    return made


def _view(row):
    return {
        "id": row.id,
        "type": row.type,
        "status": row.status,
        "failure_reason": row.failure_reason,
        "source_account_id": row.source_account_id,
        "destination_account_id": row.destination_account_id,
        "amount": row.amount,
        "currency": row.currency,
        "description": row.description,
        "metadata": row.metadata or {},
        "votes": [{"validator_id": vote["validator_id"], "decision": vote["decision"],
                   "reasons": vote["reasons"]} for vote in row.votes],
        "created_at": rfc3339(row.created_at),
        "completed_at": rfc3339(row.completed_at) if row.completed_at else None,
    }


def visible_to(row, viewer_id):
    return viewer_id in (row.initiator_id, row.source_owner_id, row.destination_owner_id)


# --- pages -------------------------------------------------------------------------------


def page_for(connection, limit, viewer_id=None, account_id=None, status=None, before=None):
    """Newest first. ``account_id``: the transactions of that account (the caller has
    checked it is the viewer's); else those touching any account of ``viewer_id``."""
    query = select(transactions)
    if account_id is not None:
        query = query.where(or_(transactions.c.source_account_id == account_id,
                                transactions.c.destination_account_id == account_id))
    else:
        query = query.where(or_(transactions.c.source_owner_id == viewer_id,
                                transactions.c.destination_owner_id == viewer_id,
                                transactions.c.initiator_id == viewer_id))
    if status is not None:
        query = query.where(transactions.c.status == status)
    if before is not None:
        created_at, transaction_id = before
        query = query.where(tuple_(transactions.c.created_at, transactions.c.id) < tuple_(
            literal(created_at, DateTime(timezone=True)),
            literal(transaction_id, UUID(as_uuid=False))))
    rows = connection.execute(
        query.order_by(transactions.c.created_at.desc(), transactions.c.id.desc())
        .limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def encode_cursor(row):
    return cursors.encode_time_and_id(row.created_at, row.id)


decode_cursor = cursors.decode_time_and_id
