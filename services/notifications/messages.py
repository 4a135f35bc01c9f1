"""What is sent: the webhook body and its signature, and the e-mail of an event."""
import hashlib
import hmac
import json
from email.message import EmailMessage
from email.utils import formatdate

from shared.money import MINOR_UNIT_EXPONENT

SIGNATURE_HEADER = "X-Signature"


# --- Webhooks ------------------------------------------------------------------------------


def webhook_body(body):
    """The raw bytes POSTed: ``{id, type, created_at, data}`` as compact JSON. The signature
    covers exactly these bytes, so receivers verify before parsing."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False).encode("utf-8")


def signature(secret, raw_body):
    """``sha256=<hex HMAC-SHA256 of the raw body, keyed with the webhook's secret (UTF-8)>``."""
    digest = hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def verify_signature(secret, raw_body, header_value):
    """What a receiver does (used by the tests): a constant-time comparison."""
    return isinstance(header_value, str) and hmac.compare_digest(
        signature(secret, raw_body), header_value)


# --- E-mail --------------------------------------------------------------------------------


def money(amount, currency):
    """``12.34 USD`` of 1234 minor units (``1,000 JPY``: the currency's own exponent);
    None of None."""
    if amount is None:
        return None
    if not isinstance(amount, int) or isinstance(amount, bool):
        return "{} {}".format(amount, currency or "").strip()
    exponent = MINOR_UNIT_EXPONENT.get(currency, 2)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10 ** exponent)
    text = "{:,}".format(whole)
    if exponent:
        text += ".{:0{}d}".format(fraction, exponent)
    return "{}{} {}".format(sign, text, currency or "").strip()


PAYMENT_SUBJECTS = {
    "payment.authorized": "Payment of {} authorized",
    "payment.voided": "Payment of {} voided",
    "payment.expired": "Authorization of {} expired",
    "payment.failed": "Payment of {} failed",
}

KIND_NAMES = {
    "deposit": "Deposit", "withdrawal": "Withdrawal", "transfer": "Transfer",
    "payment": "Payment", "capture": "Capture", "refund": "Refund",
}


def subject_and_lines(event_type, data):
    """The subject and the detail lines of the e-mail about an event of ``event_type``."""
    data = data if isinstance(data, dict) else {}
    currency = data.get("currency")
    if event_type.startswith("transaction."):
        kind = KIND_NAMES.get(data.get("type"), "Transaction")
        amount = money(data.get("amount"), currency) or "an unknown amount"
        if event_type == "transaction.completed":
            subject = "{} of {} completed".format(kind, amount)
        else:
            subject = "{} of {} failed".format(kind, amount)
        lines = [
            ("Transaction", data.get("id")),
            ("Type", data.get("type")),
            ("Amount", amount),
            ("Status", data.get("status")),
            ("Reason", data.get("failure_reason")),
            ("From account", data.get("source_account_id")),
            ("To account", data.get("destination_account_id")),
            ("Description", data.get("description")),
            ("Created", data.get("created_at")),
            ("Completed", data.get("completed_at")),
        ]
    else:
        amount = money(data.get("amount"), currency) or "an unknown amount"
        if event_type == "payment.captured":
            subject = "Payment of {} captured".format(
                money(data.get("captured_amount"), currency) or "an unknown amount")
        elif event_type == "payment.refunded":
            subject = "Payment refunded: {}".format(
                money(data.get("refunded_amount"), currency) or "an unknown amount")
        else:
            subject = PAYMENT_SUBJECTS.get(event_type, "Payment of {} updated").format(amount)
        lines = [
            ("Payment", data.get("id")),
            ("Status", data.get("status")),
            ("Amount", money(data.get("amount"), currency)),
            ("Captured", money(data.get("captured_amount"), currency)),
            ("Refunded", money(data.get("refunded_amount"), currency)),
            ("Reason", data.get("failure_reason")),
            ("Payer account", data.get("payer_account_id")),
            ("Merchant account", data.get("merchant_account_id")),
            ("Reference", data.get("reference")),
            ("Created", data.get("created_at")),
        ]
    return subject, [(label, value) for label, value in lines
                     if value not in (None, "")]


def email(event, delivery_id, to_address, from_address):
    """The e-mail about ``event`` (the stored body ``{id, type, created_at, data}``).

    The Message-ID is derived from the delivery, so a resend after a crash between sending
    and recording is recognisable as the same message."""
    subject, lines = subject_and_lines(event["type"], event.get("data"))
    width = max((len(label) for label, _ in lines), default=0)
    body = "\n".join(
        ["Hello,", "", subject + ".", ""]
        + ["{:<{}}  {}".format(label + ":", width + 1, value) for label, value in lines]
        + ["", "Event {} ({}) at {}.".format(event["id"], event["type"], event.get("created_at")),
           "", "-- ", "paysys notifications. Manage webhooks and see every delivery at "
           "GET /v1/notifications."]
    ) + "\n"
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = to_address
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = "<{}@notifications.paysys>".format(delivery_id)
    message["X-Paysys-Event-Id"] = event["id"]
    message["X-Paysys-Event-Type"] = event["type"]
    message.set_content(body)
    return message
