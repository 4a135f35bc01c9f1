"""The payment lifecycle, on top of the transactions service and the ledger.

    pending ──authorize──> authorized ──capture──> captured ──refund──> partially_refunded
       │                       │                                  └──────> refunded
       └──> failed             └──void / expiry──> voided

Every step is an operation row first (its idempotency key is the caller's), then:
authorize, capture and refund are transactions through the consensus protocol (an
authorization holds the money on the payer's account; a capture frees that hold and moves
what it captures; a refund moves money back), each submitted under a key derived from its
operation, so a retry or the recovery loop finds the same transaction instead of making a
second. A void releases the hold at the ledger (moving nothing, it needs no vote; the ledger
settles a hold exactly once). An operation's outcome is applied to the payment once
(records.finish_operation), with its event in the same commit.
"""
import logging
import uuid

from sqlalchemy import case, func

from services.payments import events, records
from services.payments.records import AUTHORIZE, CAPTURE, FAILED, PENDING, REFUND, SUCCEEDED, VOID
from shared.commands import Movement
from shared.cursors import DEFAULT_PAGE_SIZE, page_request
from shared.errors import (
    Conflict, Forbidden, NotFound, PaysysError, ServiceUnavailable, ValidationFailed,
)
from shared.ids import parse_id

log = logging.getLogger(__name__)

# The transaction kind each operation submits.
TRANSACTION_KINDS = {AUTHORIZE: "payment", CAPTURE: "capture", REFUND: "refund"}
HOLD_NOT_ACTIVE = "hold_not_active"
# The statuses a listed payment can have (a pending one is not listed yet).
LISTED_STATUSES = ("authorized", "captured", "partially_refunded", "refunded", "voided",
                   "failed")


class Lifecycle:
    def __init__(self, db, rpc, hold_time_s, submit_timeout_s):
        self.db = db
        self.rpc = rpc
        self.hold_time_s = hold_time_s
        self.submit_timeout_s = submit_timeout_s

    # --- requests ------------------------------------------------------------------------

    def create(self, initiator_id, body, idempotency_key, initiator_is_admin=False):
        """Authorize (``capture`` false: hold only) or charge; the payment as decided."""
        payer_id, merchant_id = body["payer_account_id"], body["merchant_account_id"]
        # Unknown accounts first (404), then paying oneself (422): an unknown account is
        # unknown whatever the other one is.
        accounts = self.rpc.ledger.snapshot(list(dict.fromkeys([payer_id, merchant_id])))
        payer, merchant = accounts.get(payer_id), accounts.get(merchant_id)
        if payer is None or (payer["owner_id"] != initiator_id and not initiator_is_admin):
            raise NotFound("No such payer account.")  # another's looks like none
        if merchant is None:
            raise NotFound("No such merchant account.")
        if payer_id == merchant_id:
            raise ValidationFailed("The payer and merchant accounts must differ.", errors={
                "merchant_account_id": ["Same as the payer account."]})
        with self.db.transaction() as connection:
            payment, operation, _ = records.create(connection, {
                "capture": body.get("capture", True),
                "amount": body["amount"],
                "currency": body["currency"],
                "payer_account_id": payer_id,
                "merchant_account_id": merchant_id,
                "payer_owner_id": payer["owner_id"],
                "merchant_owner_id": merchant["owner_id"],
                "reference": body.get("reference"),
                "metadata": body.get("metadata") or {},
                "initiator_id": initiator_id,
                "idempotency_key": idempotency_key,
            })
        return self._conclude(payment.id, operation)

    def capture(self, payment_id, actor_id, actor_is_admin, idempotency_key, amount=None):
        payment = self._for_merchant(payment_id, actor_id, actor_is_admin)
        amount = payment.amount if amount is None else amount
        with self.db.transaction() as connection:
            operation = records.find_operation(connection, payment.id, CAPTURE, idempotency_key)
            if operation is None:
                if amount > payment.amount:
                    raise ValidationFailed(
                        "A capture is at most the authorized amount ({}).".format(payment.amount),
                        code="amount_exceeds_authorization",
                        errors={"amount": ["More than the authorized amount."]})
                operation = self._settle(connection, payment, CAPTURE, amount, actor_id,
                                         idempotency_key)
        return self._conclude(payment.id, operation)

    def void(self, payment_id, actor_id, actor_is_admin, idempotency_key):
        payment = self._for_merchant(payment_id, actor_id, actor_is_admin)
        with self.db.transaction() as connection:
            operation = records.find_operation(connection, payment.id, VOID, idempotency_key)
            if operation is None:
                operation = self._settle(connection, payment, VOID, payment.amount, actor_id,
                                         idempotency_key)
        return self._conclude(payment.id, operation)

    def refund(self, payment_id, actor_id, actor_is_admin, idempotency_key, amount=None):
        payment = self._for_merchant(payment_id, actor_id, actor_is_admin)
        with self.db.transaction() as connection:
            operation = records.find_operation(connection, payment.id, REFUND, idempotency_key)
            if operation is None:
                # Fully refunded: any more is beyond the captured amount (422 below).
                if payment.status not in records.CAPTURED_STATUSES:
                    raise Conflict("The payment is {}: only a captured payment can be "
                                   "refunded.".format(payment.status), code="payment_not_captured")
                if amount is None:
                    amount = (payment.captured_amount - payment.refunded_amount
                              - payment.refund_reserved)
                if amount <= 0 or records.reserve_refund(connection, payment.id, amount) is None:
                    raise ValidationFailed(
                        "Refunds add up to at most the captured amount ({}).".format(
                            payment.captured_amount),
                        code="refund_exceeds_captured",
                        errors={"amount": ["More than is left to refund."]})
                operation = records.add_operation(connection, payment.id, REFUND, amount,
                                                  actor_id, idempotency_key)
        return self._conclude(payment.id, operation)

    def get(self, payment_id, viewer_id=None):
        """``viewer_id`` None is staff; else the payer's or the merchant's owner."""
        payment = self._find(payment_id)
        if payment is None or (viewer_id is not None and viewer_id not in (
                payment.payer_owner_id, payment.merchant_owner_id)):
            raise NotFound("No such payment.")
        if payment.status == PENDING:
            with self.db.connection() as connection:
                operation = records.find_operation(connection, payment.id, AUTHORIZE,
                                                   payment.idempotency_key)
            return self._conclude(payment.id, operation, raise_failure=False)
        return self._view(payment.id)

    def list(self, viewer_id, status=None, limit=DEFAULT_PAGE_SIZE, cursor=None):
        """Newest first, the payments ``viewer_id`` pays or is paid by (None: staff, all)."""
        limit, before = page_request(limit, cursor, records.decode_cursor)
        if status is not None and status not in LISTED_STATUSES:
            raise ValidationFailed("status: unknown payment status",
                                   errors={"status": ["Not one of the payment statuses."]})
        with self.db.connection() as connection:
            rows, more = records.page_for(connection, limit, viewer_id=parse_id(viewer_id)
                                          if viewer_id is not None else None,
                                          status=status, before=before)
            ids = records.transaction_ids_of(connection, [row.id for row in rows])
        return {"items": [records.view(row, ids[row.id]) for row in rows],
                "next_cursor": records.encode_cursor(rows[-1]) if more else None}

    # --- the system's own work -------------------------------------------------------------

    def expire(self, limit=100):
        """Void authorizations past their hold time; the number voided."""
        with self.db.connection() as connection:
            due = records.expired(connection, limit)
        voided = 0
        for payment in due:
            with self.db.transaction() as connection:
                operation = self._settle(connection, payment, VOID, payment.amount, None, None,
                                         quiet=True)
            if operation is not None:
                voided += self.drive(operation).status == SUCCEEDED
        if voided:
            log.info("expiry: %d authorizations voided", voided)
        return voided

    def recover(self, older_than_s, limit=100):
        """Drive on operations whose request gave up waiting or died; the number finished."""
        with self.db.connection() as connection:
            stuck = records.in_flight(connection, older_than_s, limit)
        finished = sum(self.drive(operation).status != PENDING for operation in stuck)
        if finished:
            log.info("recovery: %d payment operations finished", finished)
        return finished

    # --- driving an operation to its outcome -------------------------------------------

    def drive(self, operation):
        """Take a pending operation as far as it goes now; the operation as it ends up."""
        if operation.status != PENDING:
            return operation
        payment = self._find(operation.payment_id)
        if operation.kind == VOID:
            outcome = self._release(payment)
        else:
            outcome = self._transact(operation, payment)
        if outcome is None:
            return operation
        with self.db.transaction() as connection:
            return self._finish(connection, operation, payment.capture, *outcome)

    def _transact(self, operation, payment):
        """Submit (or find again) the operation's transaction; ``(status, reason)`` once it
        is decided, None while it is not."""
        # A refund flows back: merchant to payer.
        source, destination = (payment.payer_account_id, payment.merchant_account_id)
        if operation.kind == REFUND:
            source, destination = destination, source
        movement = Movement(
            kind=TRANSACTION_KINDS[operation.kind], initiator_id=operation.initiator_id,
            source_account_id=source, destination_account_id=destination,
            amount=operation.amount, currency=payment.currency,
            idempotency_key="payment-operation:{}".format(operation.id),
            description=payment.reference,
            # The payments service has checked who may do this (_for_merchant, create).
            acting_as_admin=True,
            hold=operation.kind == AUTHORIZE and not payment.capture,
            authorization_id=payment.authorization_id if operation.kind == CAPTURE else None)
        try:
            transaction = self.rpc.transactions.submit(
                movement.to_wire(), timeout_s=self.submit_timeout_s)
        except ServiceUnavailable as exc:
            log.warning("payment operation %s not submitted yet: %s", operation.id, exc)
            return None
        except PaysysError as exc:  # refused before any money moved
            return FAILED, exc.code
        if operation.transaction_id is None:
            with self.db.transaction() as connection:
                records.set_transaction(connection, operation.id, transaction["id"])
                if operation.kind == AUTHORIZE:
                    records.change(connection, payment.id,
                                   records.payments.c.authorization_id.is_(None),
                                   authorization_id=transaction["id"])
        if transaction["status"] == "pending":
            return None
        if transaction["status"] == "completed":
            return SUCCEEDED, None
        return FAILED, transaction["failure_reason"]

    def _release(self, payment):
        try:
            result = self.rpc.ledger.release_hold(payment.authorization_id)
        except ServiceUnavailable as exc:
            log.warning("hold of payment %s not released yet: %s", payment.id, exc)
            return None
        if result["status"] == "released":
            return SUCCEEDED, None
        return FAILED, HOLD_NOT_ACTIVE

    def _finish(self, connection, operation, one_step, status, reason):
        """Record the outcome and apply it to the payment, once; the operation as it is.
        ``one_step``: the payment was asked to capture at once (``capture: true``)."""
        finished = records.finish_operation(connection, operation.id, status, reason)
        if finished is None:  # another driver finished it first
            return records.find_operation_by_id(connection, operation.id)
        c = records.payments.c
        payment_id, amount = operation.payment_id, operation.amount
        succeeded = status == SUCCEEDED
        if operation.kind == AUTHORIZE:
            if not succeeded:
                payment = records.change(connection, payment_id, c.status == PENDING,
                                         status="failed", failure_reason=reason or "failed")
                events.failed(connection, payment)
            elif one_step:
                payment = records.change(connection, payment_id, c.status == PENDING,
                                         status="captured", captured_amount=amount)
                events.captured(connection, payment)
            else:
                payment = records.change(
                    connection, payment_id, c.status == PENDING, status="authorized",
                    expires_at=func.now() + func.make_interval(
                        0, 0, 0, 0, 0, 0, self.hold_time_s))
                events.authorized(connection, payment)
        elif operation.kind in (CAPTURE, VOID):
            values = {"settling_operation_id": None}
            if succeeded:
                values["expires_at"] = None
                if operation.kind == CAPTURE:
                    values.update(status="captured", captured_amount=amount)
                else:
                    values["status"] = "voided"
            payment = records.change(connection, payment_id,
                                     c.settling_operation_id == operation.id, **values)
            if succeeded and operation.kind == CAPTURE:
                events.captured(connection, payment)
            elif succeeded:
                # No initiator: the system voided an authorization past its hold time.
                if operation.initiator_id is None:
                    events.expired(connection, payment)
                else:
                    events.voided(connection, payment)
        elif operation.kind == REFUND:
            values = {"refund_reserved": c.refund_reserved - amount}
            if succeeded:
                refunded = c.refunded_amount + amount
                values.update(refunded_amount=refunded, status=case(
                    (refunded == c.captured_amount, "refunded"), else_="partially_refunded"))
            payment = records.change(connection, payment_id, **values)
            if succeeded:
                events.refunded(connection, payment)
        return finished

    def _conclude(self, payment_id, operation, raise_failure=True):
        """Drive the request's operation; the payment view once it is decided."""
        operation = self.drive(operation)
        if operation.status == PENDING:
            # Not known yet, not failed: the same Idempotency-Key answers it later.
            raise ServiceUnavailable(
                "The payment operation is still being decided; retry with the same "
                "Idempotency-Key.", code="payment_pending", retry_after_s=1)
        if operation.status == FAILED and operation.kind != AUTHORIZE and raise_failure:
            raise ValidationFailed(
                "The {} was refused: {}.".format(operation.kind, operation.failure_reason),
                code=operation.failure_reason or "operation_refused")
        return self._view(payment_id)

    # --- helpers -------------------------------------------------------------------------

    def _settle(self, connection, payment, kind, amount, actor_id, idempotency_key,
                quiet=False):
        """The capture or void that settles the hold, if the payment lets it; else a 409
        (None if ``quiet``)."""
        operation_id = str(uuid.uuid4())
        if records.claim_settlement(connection, payment.id, operation_id) is None:
            if quiet:
                return None
            current = records.find(connection, payment.id)
            if current.status != "authorized":
                raise Conflict("The payment is {}: only an authorized payment can be "
                               "{}.".format(current.status, "captured" if kind == CAPTURE
                                            else "voided"), code="payment_not_authorized")
            raise Conflict("Another capture or void of this payment is under way.",
                           code="payment_busy")
        return records.add_operation(connection, payment.id, kind, amount, actor_id,
                                     idempotency_key, operation_id=operation_id)

    def _for_merchant(self, payment_id, actor_id, actor_is_admin):
        """The payment, if the actor may capture, void or refund it: the merchant account's
        owner or an admin. The payer sees it (403); anyone else does not (404)."""
        payment = self._find(payment_id)
        if payment is None or not (
                actor_is_admin or actor_id in (payment.payer_owner_id,
                                               payment.merchant_owner_id)):
            raise NotFound("No such payment.")
        if not actor_is_admin and actor_id != payment.merchant_owner_id:
            raise Forbidden("Only the merchant captures, voids or refunds a payment.")
        return payment

    def _find(self, payment_id):
        with self.db.connection() as connection:
            return records.find(connection, payment_id)

    def _view(self, payment_id):
        with self.db.connection() as connection:
            payment = records.find(connection, payment_id)
            return records.view(payment, records.transaction_ids(connection, payment_id))
