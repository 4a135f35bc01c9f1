"""Marshmallow schemas of the HTTP contract (API.md): request validation and the OpenAPI document.

Request schemas reject unknown fields (marshmallow's default ``RAISE``), so a body
that tries to set ``balance``, ``owner_id`` or ``roles`` is a 422, not a silent drop.
"""
from marshmallow import Schema, ValidationError, fields, validate

from shared.audit import ACTIONS as AUDIT_ACTIONS
from shared.audit import ACTOR_TYPES as AUDIT_ACTOR_TYPES
from shared.audit import MAX_FILTER_LENGTH as MAX_AUDIT_FILTER_LENGTH
from shared.audit import SERVICES as AUDIT_SERVICES
from shared.commands import (
    MAX_BATCH_ITEMS, MAX_METADATA_KEY_LENGTH, MAX_METADATA_KEYS, MAX_METADATA_VALUE_LENGTH,
)
from shared.cursors import (
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, SEQUENCE_PATTERN, TIME_AND_ID_PATTERN,
)
from shared.ids import MAX_RFC3339_TEXT, parse_rfc3339, rfc3339
from shared.money import CURRENCIES, MAX_AMOUNT_MINOR, MIN_AMOUNT_MINOR, TRANSACTION_TYPES


class Amount(fields.Integer):
    """An amount in minor units: a JSON integer, never a float, string or boolean."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", validate.Range(min=MIN_AMOUNT_MINOR, max=MAX_AMOUNT_MINOR))
        kwargs.setdefault(
            "metadata",
            {"description": "Integer amount in the currency's minor unit (cents for USD)."},
        )
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class NoNul:
    """PostgreSQL text cannot hold NUL characters: refuse them as invalid input."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in value:
            raise ValidationError("Must not contain NUL characters.")
        return value


# The documented form of NoNul, so a document-driven client never sends what is refused.
NO_NUL_PATTERN = "^[^\\u0000]*$"
# An e-mail address as the gateway accepts it, checked by this pattern alone so the document
# and the server agree exactly (a local part of the usual characters, a host name of labels).
EMAIL_PATTERN = (r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
                 r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                 r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class Text(NoNul, fields.String):
    def __init__(self, **kwargs):
        kwargs["metadata"] = dict({"pattern": NO_NUL_PATTERN}, **kwargs.get("metadata", {}))
        super().__init__(**kwargs)


class EmailAddress(fields.String):
    def __init__(self, **kwargs):
        validators = [validate.Regexp(EMAIL_PATTERN, error="Not a valid e-mail address.")]
        if "validate" in kwargs:
            validators.append(kwargs.pop("validate"))
        kwargs["metadata"] = dict({"pattern": EMAIL_PATTERN,
                                   "description": "An e-mail address.",
                                   "example": "ada@example.com"}, **kwargs.get("metadata", {}))
        super().__init__(validate=validators, **kwargs)


class Link(NoNul, fields.Url):
    pass


def Currency(**kwargs):
    return fields.String(
        validate=validate.OneOf(CURRENCIES),
        metadata={"description": "ISO 4217 currency code.", "example": "USD"},
        **kwargs
    )


def Id(**kwargs):
    return fields.UUID(metadata={"description": "Opaque id (a UUID)."}, **kwargs)


# --- Errors -----------------------------------------------------------------


class Problem(Schema):
    """RFC 9457 problem details, with a stable machine-readable ``code``."""

    type = fields.String(required=True, metadata={
        "example": "/problems/validation_error",
        "description": "The code's own URI, relative to the gateway: GET it for what the code "
                       "means and what to do (docs/errors.md)."})
    title = fields.String(required=True, metadata={
        "description": "The code's title, the same on every occurrence."})
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    code = fields.String(required=True, metadata={"example": "validation_error"})
    errors = fields.Dict(metadata={"description": "Per-field messages, on validation errors."})
    instance = fields.String(metadata={"description": "The X-Request-ID of the request."})


# --- Auth -------------------------------------------------------------------


class RegisterRequest(Schema):
    email = EmailAddress(required=True, validate=validate.Length(max=254))
    password = Text(required=True, validate=validate.Length(min=12, max=1024))
    full_name = Text(required=True, validate=validate.Length(min=1, max=200))


class LoginRequest(Schema):
    email = Text(required=True, validate=validate.Length(min=1, max=254))
    password = Text(required=True, validate=validate.Length(min=1, max=1024))


class RefreshRequest(Schema):
    refresh_token = Text(required=True, validate=validate.Length(min=1, max=512))


class User(Schema):
    id = Id(required=True)
    email = fields.String(required=True)
    full_name = fields.String(required=True)
    roles = fields.List(
        fields.String(validate=validate.OneOf(["customer", "merchant", "admin", "auditor"])),
        required=True,
    )


class TokenPair(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds."})


# --- Accounts ---------------------------------------------------------------


class CreateAccountRequest(Schema):
    currency = Currency(required=True)
    name = Text(validate=validate.Length(min=1, max=100))


class Account(Schema):
    id = Id(required=True)
    owner_id = Id(required=True)
    name = fields.String(required=True, allow_none=True)
    currency = Currency(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["active", "frozen", "closed"]))
    balance = fields.Integer(required=True)
    available_balance = fields.Integer(required=True)
    overdraft_limit = fields.Integer(required=True)
    version = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


class Entry(Schema):
    id = Id(required=True)
    account_id = Id(required=True)
    transaction_id = Id(required=True)
    amount = fields.Integer(required=True, metadata={"description": "Signed, in minor units."})
    balance_after = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


class Balance(Schema):
    account_id = Id(required=True)
    currency = Currency(required=True)
    balance = fields.Integer(required=True, metadata={
        "description": "Posted money in minor units, as of ``as_of``."})
    as_of = fields.DateTime(required=True, metadata={
        "description": "The moment the balance is of: ``at``, or now when ``at`` is "
                       "absent or still to come."})


# --- Money movement -----------------------------------------------------------


def Metadata(**kwargs):
    """Client data kept with a money movement: string keys to string values, bounded.
    The OpenAPI module documents the number of keys as ``maxProperties`` (a Dict's Length
    would otherwise read as a string's) and the keys' limits as ``x-propertyNames``."""
    return fields.Dict(
        keys=Text(validate=validate.Length(max=MAX_METADATA_KEY_LENGTH)),
        values=Text(validate=validate.Length(max=MAX_METADATA_VALUE_LENGTH)),
        validate=validate.Length(max=MAX_METADATA_KEYS),
        metadata={"description": "Up to {} string keys (at most {} characters, no NUL) to "
                  "string values (at most {} characters, no NUL), returned on the resource and "
                  "its events.".format(MAX_METADATA_KEYS, MAX_METADATA_KEY_LENGTH,
                                   MAX_METADATA_VALUE_LENGTH),
                  "example": {"order": "A-1001"},
                  "x-metadata": True},
        **kwargs)


class DepositRequest(Schema):
    account_id = Id(required=True)
    amount = Amount(required=True)
    currency = Currency(required=True)
    metadata = Metadata()


class WithdrawalRequest(DepositRequest):
    pass


class TransferRequest(Schema):
    source_account_id = Id(required=True)
    destination_account_id = Id(required=True)
    amount = Amount(required=True)
    currency = Currency(required=True)
    description = Text(validate=validate.Length(max=500))
    metadata = Metadata()


class TransferBatchRequest(Schema):
    transfers = fields.List(fields.Nested(TransferRequest), required=True,
                            validate=validate.Length(min=1, max=MAX_BATCH_ITEMS),
                            metadata={"description": "Applied in this order."})
    atomic = fields.Boolean(load_default=False, metadata={
        "description": "All or nothing: when one transfer fails, every other fails too "
                       "(batch_aborted) and nothing moves."})


class Vote(Schema):
    validator_id = fields.String(required=True)
    decision = fields.String(required=True, validate=validate.OneOf(["approve", "reject"]))
    reasons = fields.List(fields.String(), required=True)


TRANSACTION_STATUSES = ["pending", "completed", "failed"]


class Transaction(Schema):
    id = Id(required=True)
    type = fields.String(required=True, validate=validate.OneOf(TRANSACTION_TYPES))
    status = fields.String(required=True, validate=validate.OneOf(TRANSACTION_STATUSES))
    failure_reason = fields.String(required=True, allow_none=True)
    source_account_id = Id(required=True, allow_none=True)
    destination_account_id = Id(required=True, allow_none=True)
    amount = fields.Integer(required=True)
    currency = Currency(required=True)
    description = fields.String(required=True, allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    votes = fields.List(fields.Nested(Vote), required=True)
    created_at = fields.DateTime(required=True)
    completed_at = fields.DateTime(required=True, allow_none=True)


class BatchCounts(Schema):
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    pending = fields.Integer(required=True)


class TransferBatch(Schema):
    id = Id(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["pending", "completed"]))
    atomic = fields.Boolean(required=True)
    counts = fields.Nested(BatchCounts, required=True)
    items = fields.List(fields.Nested(Transaction), required=True,
                        metadata={"description": "The transfers, in request order."})
    created_at = fields.DateTime(required=True)
    completed_at = fields.DateTime(required=True, allow_none=True)


# --- Payments -----------------------------------------------------------------


class CreatePaymentRequest(Schema):
    payer_account_id = Id(required=True)
    merchant_account_id = Id(required=True)
    amount = Amount(required=True)
    currency = Currency(required=True)
    capture = fields.Boolean(load_default=True)
    reference = Text(validate=validate.Length(max=200))
    metadata = Metadata()


class PartialAmountRequest(Schema):
    amount = Amount()


PAYMENT_STATUSES = [
    "authorized", "captured", "partially_refunded", "refunded", "voided", "failed",
]


class Payment(Schema):
    id = Id(required=True)
    status = fields.String(required=True, validate=validate.OneOf(PAYMENT_STATUSES))
    amount = fields.Integer(required=True)
    captured_amount = fields.Integer(required=True)
    refunded_amount = fields.Integer(required=True)
    currency = Currency(required=True)
    payer_account_id = Id(required=True)
    merchant_account_id = Id(required=True)
    reference = fields.String(required=True, allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    failure_reason = fields.String(required=True, allow_none=True, metadata={
        "description": "Why the authorization failed (status failed), else null."})
    transactions = fields.List(Id(), required=True)
    created_at = fields.DateTime(required=True)


# --- Ledger, webhooks, operations -----------------------------------------------


class CurrencyTotals(Schema):
    entries_sum = fields.Integer(required=True)
    accounts_sum = fields.Integer(required=True)


class MirrorReport(Schema):
    topic = fields.String(required=True)
    ledger_postings = fields.Integer(required=True,
                                     metadata={"description": "Entries in the ledger."})
    kafka_postings = fields.Integer(required=True, metadata={
        "description": "Distinct (account, sequence) entries in the Kafka mirror."})
    missing = fields.List(fields.String(), required=True, metadata={
        "description": "Ledger entries absent from the mirror, as account_id:seq (first 100)."})
    missing_count = fields.Integer(required=True)
    unexpected = fields.List(fields.String(), required=True, metadata={
        "description": "Mirror messages the ledger has no entry for (first 100)."})
    unexpected_count = fields.Integer(required=True)
    duplicates = fields.Integer(required=True, metadata={
        "description": "Messages delivered more than once (harmless: consumers dedupe)."})
    unpublished = fields.Integer(required=True, metadata={
        "description": "Outbox rows the relay had not published yet."})


class ChainHead(Schema):
    lane = fields.Integer(required=True)
    seq = fields.Integer(required=True, metadata={"description": "The lane's newest "
                                                  "posting's place (0: none yet)."})
    hash = fields.String(required=True, metadata={"description": "Its chain hash, hex."})


class BrokenLink(Schema):
    lane = fields.Integer(required=True)
    seq = fields.Integer(required=True, metadata={"description": "The posting's place in "
                                                  "its lane (chain_seq)."})
    transaction_id = Id(required=True, allow_none=True)
    reason = fields.String(required=True, validate=validate.OneOf(
        ["hash_mismatch", "missing", "head_mismatch"]))
    detail = fields.String(required=True)


class ChainReport(Schema):
    """The ledger's hash chain verified (docs/integrity.md)."""

    valid = fields.Boolean(required=True)
    postings_checked = fields.Integer(required=True)
    entries_checked = fields.Integer(required=True)
    heads = fields.List(fields.Nested(ChainHead), required=True,
                        metadata={"description": "Where each lane of the chain ends."})
    first_broken = fields.Nested(BrokenLink, required=True, allow_none=True, metadata={
        "description": "The first link that does not verify (by lane, then place); null "
                       "when the chain is intact."})
    broken_links = fields.Integer(required=True)
    entries_outside_chain = fields.Integer(required=True, metadata={
        "description": "Entries whose transaction has no posting in the chain."})


class Reconciliation(Schema):
    balanced = fields.Boolean(required=True, metadata={
        "description": "Every sum zero, every balance its entries, the hash chain intact, "
                       "the mirror complete."})
    currencies = fields.Dict(keys=fields.String(), values=fields.Nested(CurrencyTotals),
                             required=True)
    accounts_checked = fields.Integer(required=True)
    discrepancies = fields.List(fields.Dict(), required=True)
    chain = fields.Nested(ChainReport, required=True)
    mirror = fields.Nested(MirrorReport, required=True)


WEBHOOK_EVENTS = [
    "transaction.completed", "transaction.failed", "payment.authorized", "payment.captured",
    "payment.refunded", "payment.voided", "payment.expired", "payment.failed",
]


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# The first octets of IPv4 addresses no rule refuses (none of 0, 10, 100, 169, 172, 192, 198,
# 203 and 224-255 starts one), plus 127 (config.yml lets loopback in for local receivers).
_PUBLIC_FIRST_OCTET = (r"(?:[1-9]|1[1-9]|[2-9][0-9]|10[1-9]|11[0-9]|12[0-7]|1[3-5][0-9]"
                       r"|16[0-8]|17[013-9]|18[0-9]|19[013-7]|20[0-24-9]|21[0-9]|22[0-3])")
_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# The URLs the document promises are taken: http(s), a host name (of labels that start with a
# letter) or a public IPv4 address, a port, a path and a query of unreserved characters. The
# gateway takes more (any URL marshmallow reads, IPv6 literals included), and the
# notifications service then refuses destinations in private, loopback and link-local
# networks (unless a deployment allows them), which a pattern cannot say for host names.
WEBHOOK_URL_PATTERN = (
    r"^https?://(?:" + _LABEL + r"(?:\." + _LABEL + r")*|" + _PUBLIC_FIRST_OCTET
    + r"(?:\." + _OCTET + r"){3})(?::" + _PORT + r")?(?:/[A-Za-z0-9._~-]*)*"
    r"(?:\?[A-Za-z0-9._~=&-]*)?$")


class CreateWebhookRequest(Schema):
    url = Link(required=True, schemes={"http", "https"}, require_tld=False,
               validate=validate.Length(max=2048),
               metadata={"pattern": WEBHOOK_URL_PATTERN, "format": "uri",
                         "description": "Where to POST the events: http(s). Destinations "
                         "in private, loopback or link-local networks are refused (422) "
                         "unless the deployment allows them."})
    events = fields.List(
        Text(validate=validate.OneOf(WEBHOOK_EVENTS)),
        required=True,
        validate=validate.Length(min=1),
    )


class Webhook(Schema):
    id = Id(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)


class CreatedWebhook(Webhook):
    secret = fields.String(required=True, metadata={"description": "HMAC key; shown once."})


class DeliveryAttempt(Schema):
    attempt = fields.Integer(required=True)
    started_at = fields.DateTime(required=True)
    finished_at = fields.DateTime(required=True, allow_none=True)
    outcome = fields.String(required=True,
                            validate=validate.OneOf(["succeeded", "failed", "deferred"]))
    status_code = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)


class Notification(Schema):
    """One delivery of one event to one webhook or e-mail address, with every attempt."""

    id = Id(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(["email", "webhook"]))
    event_type = fields.String(required=True)
    event_id = Id(required=True)
    status = fields.String(required=True,
                           validate=validate.OneOf(["pending", "delivered", "failed"]))
    attempts = fields.Integer(required=True)
    webhook_id = Id(required=True, allow_none=True)
    target = fields.String(required=True, allow_none=True,
                           metadata={"description": "The webhook URL or e-mail address."})
    last_error = fields.String(required=True, allow_none=True)
    next_attempt_at = fields.DateTime(required=True, allow_none=True)
    delivered_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    history = fields.List(fields.Nested(DeliveryAttempt), required=True)


class AuditEvent(Schema):
    """One action recorded in the audit trail, by the service that performed it."""

    id = Id(required=True)
    occurred_at = fields.DateTime(required=True)
    service = fields.String(required=True, validate=validate.OneOf(AUDIT_SERVICES))
    actor_type = fields.String(required=True, validate=validate.OneOf(AUDIT_ACTOR_TYPES),
                               metadata={"description": "user: over HTTP; cli: paysys at "
                                         "the command line; service: no one named."})
    actor_id = fields.String(required=True, metadata={
        "description": "The user's id, or the operator's login name (cli)."})
    action = fields.String(required=True, validate=validate.OneOf(AUDIT_ACTIONS))
    target_type = fields.String(required=True, metadata={"example": "account"})
    target_id = fields.String(required=True)
    details = fields.Dict(required=True, metadata={
        "description": "What changed, e.g. an account's status before and after."})
    request_id = fields.String(required=True, allow_none=True, metadata={
        "description": "The X-Request-ID of the request (the command line's own id)."})


class Health(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


READINESS_STATES = ["ready", "degraded", "unavailable"]


class Readiness(Schema):
    """The /ready body: 200 ``ready`` or ``degraded`` (docs/observability.md)."""

    status = fields.String(required=True, validate=validate.OneOf(READINESS_STATES),
                           metadata={"description": "ready: everything answers; degraded: "
                                     "something the money path does without does not "
                                     "(named in degraded)."})
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "Each dependency and service: \"ok\" or why not."},
    )
    unavailable = fields.List(fields.String(), required=True, metadata={
        "description": "What the gateway cannot serve money requests without and that does "
        "not answer (always empty on a 200)."})
    degraded = fields.List(fields.String(), required=True, metadata={
        "description": "What does not answer but the system serves without."})


class NotReady(Problem):
    """/ready's 503: a problem whose ``unavailable`` names the cause(s)."""

    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    unavailable = fields.List(fields.String(), required=True)
    degraded = fields.List(fields.String(), required=True)


class ComponentStatus(Schema):
    state = fields.String(required=True, validate=validate.OneOf(["ok", "down"]))
    latency_ms = fields.Float(required=True, metadata={"description": "How long it took to "
                                                       "answer, or to fail."})
    error = fields.String(required=True, allow_none=True)
    role = fields.String(required=True, validate=validate.OneOf(["required", "quorum",
                                                                  "optional"]),
                         metadata={"description": "required: /ready is 503 without it; "
                                   "quorum: a validator, 503 once fewer than a quorum "
                                   "answer; optional: degraded without it."})
    detail = fields.Dict(metadata={"description": "A service's own health report."})


class Quorum(Schema):
    pool = fields.Integer(required=True)
    needed = fields.Integer(required=True)
    answering = fields.Integer(required=True)


class SystemStatus(Schema):
    status = fields.String(required=True, validate=validate.OneOf(READINESS_STATES))
    checked_at = fields.DateTime(required=True)
    unavailable = fields.List(fields.String(), required=True)
    degraded = fields.List(fields.String(), required=True)
    quorum = fields.Nested(Quorum, required=True)
    dependencies = fields.Dict(keys=fields.String(), values=fields.Nested(ComponentStatus),
                               required=True)
    processes = fields.Dict(keys=fields.String(), values=fields.Nested(ComponentStatus),
                            required=True)


# --- Queries --------------------------------------------------------------------


def Cursor(pattern):
    """A page's ``next_cursor``, passed back unchanged. Its syntax is documented (and is all
    the gateway checks): every string of it names a position (shared/cursors.py)."""
    return fields.String(validate=validate.Regexp(pattern, error="Not a cursor of this list."),
                         metadata={"pattern": pattern, "description": "The next_cursor of "
                                   "the previous page, unchanged."})


class PageQuery(Schema):
    limit = fields.Integer(strict=False, load_default=DEFAULT_PAGE_SIZE,
                           validate=validate.Range(min=1, max=MAX_PAGE_SIZE))
    cursor = Cursor(TIME_AND_ID_PATTERN)


class EntriesQuery(PageQuery):
    cursor = Cursor(SEQUENCE_PATTERN)


class Moment(Text):
    """An RFC 3339 date-time with its offset, loaded as its UTC form (what the services
    take); anything else is a 422."""

    def _deserialize(self, value, attr, data, **kwargs):
        moment = parse_rfc3339(super()._deserialize(value, attr, data, **kwargs))
        if moment is None:
            raise ValidationError("Must be an RFC 3339 date-time with an offset, e.g. "
                                  "2026-11-30T12:00:00Z.")
        return rfc3339(moment)


class BalanceQuery(Schema):
    at = Moment(metadata={
        "format": "date-time", "maxLength": MAX_RFC3339_TEXT, "example": "2026-11-30T12:00:00Z",
        "description": "The moment to read the balance at (RFC 3339, with an offset): the "
                       "balance_after of the account's latest entry at or before it; 0 "
                       "when there is none (also before the account was opened). Absent: "
                       "now."})


class AuditQuery(PageQuery):
    action = fields.String(validate=validate.OneOf(AUDIT_ACTIONS))
    actor_id = Text(validate=validate.Length(min=1, max=MAX_AUDIT_FILTER_LENGTH))
    target_id = Text(validate=validate.Length(min=1, max=MAX_AUDIT_FILTER_LENGTH))


class TransactionsQuery(PageQuery):
    account_id = Id()
    status = fields.String(validate=validate.OneOf(TRANSACTION_STATUSES))


class PaymentsQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(PAYMENT_STATUSES))


def page_of(item_schema):
    """The list envelope of API.md: ``{items, next_cursor}``."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "next_cursor": fields.String(required=True, allow_none=True),
        },
        name="{}Page".format(item_schema.__name__),
    )


__all__ = ["ValidationError"]
