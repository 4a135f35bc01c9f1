"""The payments and operations tables, and every change of a payment's state.

Each change is one conditional UPDATE in the caller's database transaction, so a request,
its retry, the recovery loop and the expiry loop can race over one payment and exactly one
of them makes each change: one operation settles the hold (``settling_operation_id``), and
refunds reserve their amount against the captured one before they run.
"""
import uuid

from sqlalchemy import (
    CHAR, BigInteger, Boolean, Column, DateTime, ForeignKey, MetaData, Table, Text, func, literal,
    or_, select, tuple_, update,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert

from shared import cursors
from shared.ids import parse_id, rfc3339

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
AUTHORIZE, CAPTURE, VOID, REFUND = "authorize", "capture", "void", "refund"
REFUNDABLE = ("captured", "partially_refunded")
# Captured at some time: refunds are measured against it (fully refunded included).
CAPTURED_STATUSES = REFUNDABLE + ("refunded",)

metadata = MetaData(schema="payments")
payments = Table(
    "payments",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("status", Text, nullable=False),
    Column("capture", Boolean, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("captured_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("refund_reserved", BigInteger, nullable=False),
    Column("payer_account_id", UUID(as_uuid=False), nullable=False),
    Column("merchant_account_id", UUID(as_uuid=False), nullable=False),
    Column("payer_owner_id", UUID(as_uuid=False), nullable=False),
    Column("merchant_owner_id", UUID(as_uuid=False), nullable=False),
    Column("reference", Text),
    Column("failure_reason", Text),
    Column("authorization_id", UUID(as_uuid=False)),
    Column("settling_operation_id", UUID(as_uuid=False)),
    Column("initiator_id", UUID(as_uuid=False), nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
)
operations = Table(
    "operations",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("payment_id", UUID(as_uuid=False), ForeignKey(payments.c.id), nullable=False),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("transaction_id", UUID(as_uuid=False)),
    Column("failure_reason", Text),
    Column("initiator_id", UUID(as_uuid=False)),
    Column("idempotency_key", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
)


def view(payment, transaction_ids):
    """A payment as API.md shows it."""
    return {
        "id": payment.id,
        "status": payment.status,
        "amount": payment.amount,
        "captured_amount": payment.captured_amount,
        "refunded_amount": payment.refunded_amount,
        "currency": payment.currency,
        "payer_account_id": payment.payer_account_id,
        "merchant_account_id": payment.merchant_account_id,
        "reference": payment.reference,
        "metadata": payment.metadata or {},
        "failure_reason": payment.failure_reason,
        "transactions": transaction_ids,
        "created_at": rfc3339(payment.created_at),
    }


def transaction_ids(connection, payment_id):
    """The transactions made for the payment, oldest first."""
    return list(connection.execute(
        select(operations.c.transaction_id)
        .where(operations.c.payment_id == payment_id,
               operations.c.transaction_id.is_not(None))
        .order_by(operations.c.created_at, operations.c.id)).scalars())


def transaction_ids_of(connection, payment_ids):
    """``{payment id: its transaction ids, oldest first}`` for a page of payments."""
    found = {payment_id: [] for payment_id in payment_ids}
    rows = connection.execute(
        select(operations.c.payment_id, operations.c.transaction_id)
        .where(operations.c.payment_id.in_(payment_ids),
               operations.c.transaction_id.is_not(None))
        .order_by(operations.c.created_at, operations.c.id))
    for payment_id, transaction_id in rows:
        found[payment_id].append(transaction_id)
    return found


# --- pages ---------------------------------------------------------------------------------


def page_for(connection, limit, viewer_id=None, status=None, before=None):
    """Newest first: the payments ``viewer_id`` pays or is paid by (None: staff, all of
    them). A payment whose authorization is still being decided is left out: it has no
    status of the contract's yet, and is listed once it has."""
    c = payments.c
    query = select(payments).where(c.status != "pending")
    if viewer_id is not None:
        query = query.where(or_(c.payer_owner_id == viewer_id, c.merchant_owner_id == viewer_id))
    if status is not None:
        query = query.where(c.status == status)
    if before is not None:
        created_at, payment_id = before
        query = query.where(tuple_(c.created_at, c.id) < tuple_(
            literal(created_at, DateTime(timezone=True)), literal(payment_id, UUID(as_uuid=False))))
    rows = connection.execute(
        query.order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def encode_cursor(payment):
    return cursors.encode_time_and_id(payment.created_at, payment.id)


decode_cursor = cursors.decode_time_and_id


# --- payments -----------------------------------------------------------------------------


def create(connection, values):
    """Insert the pending payment and its authorize operation unless the initiator used the
    idempotency key before. ``(payment, authorize operation, created)``."""
    payment = connection.execute(
        insert(payments)
        .values(id=str(uuid.uuid4()), status="pending", **values)
        .on_conflict_do_nothing(constraint="one_per_idempotency_key")
        .returning(payments)
    ).one_or_none()
    if payment is None:
        payment = connection.execute(select(payments).where(
            payments.c.initiator_id == values["initiator_id"],
            payments.c.idempotency_key == values["idempotency_key"])).one()
        operation = connection.execute(select(operations).where(
            operations.c.payment_id == payment.id, operations.c.kind == AUTHORIZE)).one()
        return payment, operation, False
    operation = add_operation(connection, payment.id, AUTHORIZE, payment.amount,
                              values["initiator_id"], values["idempotency_key"])
    return payment, operation, True


def find(connection, payment_id, for_update=False):
    payment_id = parse_id(payment_id)
    if payment_id is None:
        return None
    query = select(payments).where(payments.c.id == payment_id)
    if for_update:
        query = query.with_for_update()
    return connection.execute(query).one_or_none()


def change(connection, payment_id, *conditions, **values):
    """Update the payment if ``conditions`` hold; the row as it is now, or None."""
    return connection.execute(
        update(payments).where(payments.c.id == payment_id, *conditions)
        .values(updated_at=func.now(), **values).returning(payments)
    ).one_or_none()


def claim_settlement(connection, payment_id, operation_id):
    """Make ``operation_id`` the one operation that settles the authorization's hold, if the
    payment is authorized and no other settles it; the payment, or None."""
    return change(connection, payment_id, payments.c.status == "authorized",
                  payments.c.settling_operation_id.is_(None),
                  settling_operation_id=operation_id)


def reserve_refund(connection, payment_id, amount):
    """Count ``amount`` against what may still be refunded; the payment, or None when the
    payment is not refundable or the amount is more than is left."""
    return change(
        connection, payment_id, payments.c.status.in_(REFUNDABLE),
        payments.c.refunded_amount + payments.c.refund_reserved + amount
        <= payments.c.captured_amount,
        refund_reserved=payments.c.refund_reserved + amount)


def expired(connection, limit):
    """Authorizations past their hold time that nothing is settling yet."""
    return connection.execute(
        select(payments)
        .where(payments.c.status == "authorized", payments.c.settling_operation_id.is_(None),
               payments.c.expires_at < func.now())
        .order_by(payments.c.expires_at).limit(limit)).all()


# --- operations ---------------------------------------------------------------------------


def add_operation(connection, payment_id, kind, amount, initiator_id, idempotency_key,
                  operation_id=None):
    return connection.execute(
        insert(operations)
        .values(id=operation_id or str(uuid.uuid4()), payment_id=payment_id, kind=kind,
                status=PENDING, amount=amount, initiator_id=initiator_id,
                idempotency_key=idempotency_key)
        .returning(operations)
    ).one()


def find_operation(connection, payment_id, kind, idempotency_key):
    return connection.execute(select(operations).where(
        operations.c.payment_id == payment_id, operations.c.kind == kind,
        operations.c.idempotency_key == idempotency_key)).one_or_none()


def find_operation_by_id(connection, operation_id):
    return connection.execute(
        select(operations).where(operations.c.id == operation_id)).one_or_none()


def set_transaction(connection, operation_id, transaction_id):
    connection.execute(update(operations).where(
        operations.c.id == operation_id, operations.c.transaction_id.is_(None))
        .values(transaction_id=transaction_id))


def finish_operation(connection, operation_id, status, failure_reason=None):
    """pending → succeeded | failed, once: the row, or None if it was finished before."""
    return connection.execute(
        update(operations).where(operations.c.id == operation_id,
                                 operations.c.status == PENDING)
        .values(status=status, failure_reason=failure_reason, finished_at=func.now())
        .returning(operations)
    ).one_or_none()


def in_flight(connection, older_than_s, limit):
    """Operations still pending after ``older_than_s``: their driver died or gave up
    waiting."""
    return connection.execute(
        select(operations)
        .where(operations.c.status == PENDING,
               operations.c.created_at < func.now() - func.make_interval(
                   0, 0, 0, 0, 0, 0, older_than_s))
        .order_by(operations.c.created_at).limit(limit)).all()
