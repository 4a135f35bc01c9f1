"""Every ``code`` a problem+json answer can carry: its ``type`` URI, status, title, what it
means and what a client should do. docs/errors.md is this table in prose (a unit test keeps
the two, and the codes the source can raise, equal), and the gateway serves each entry at its
``type`` URI.

The ``type`` is a relative URI, ``/problems/<code>``: RFC 9457 resolves it against the
request's URL, so it names the same page on every deployment (and behind any proxy), and a
client may compare it as a stable identifier. Titles are in sentence case, one per code.
"""
from dataclasses import dataclass

TYPE_PREFIX = "/problems/"


@dataclass(frozen=True)
class ProblemType:
    code: str
    status: int
    title: str
    meaning: str
    action: str

    @property
    def type(self):
        return TYPE_PREFIX + self.code


def _p(code, status, title, meaning, action):
    return ProblemType(code, status, title, meaning, action)


RETRY_LATER = "Retry after the Retry-After header's seconds, with the same Idempotency-Key."
REFUSED = ("A capture or refund was decided and refused for this reason (the transaction's "
           "`failure_reason`); nothing moved.")

PROBLEM_TYPES = (
    # --- 400 ---
    _p("malformed_request", 400, "Malformed request", "The request cannot be read.",
       "Fix the request; do not retry it unchanged."),
    _p("malformed_json", 400, "Malformed JSON", "The body is not valid JSON.",
       "Send a JSON body (UTF-8)."),
    _p("idempotency_key_required", 400, "Idempotency-Key required",
       "This operation moves money and needs an Idempotency-Key header.",
       "Send a fresh Idempotency-Key (1-255 printable ASCII characters) per operation."),
    _p("idempotency_key_invalid", 400, "Idempotency-Key invalid",
       "The Idempotency-Key header is longer than 255 characters or not printable ASCII.",
       "Use 1-255 printable ASCII characters, e.g. a UUID."),
    # --- 401 ---
    _p("unauthorized", 401, "Unauthorized", "No bearer token was sent.",
       "Send Authorization: Bearer <access_token> (log in first)."),
    _p("invalid_credentials", 401, "Invalid credentials", "The e-mail or the password is wrong.",
       "Ask the user again; repeated failures are braked (429 rate_limited)."),
    _p("invalid_token", 401, "Invalid token",
       "The access token is not one of ours, is malformed or was revoked.",
       "Log in again for a new token pair."),
    _p("token_expired", 401, "Token expired", "The access token has expired.",
       "Get a new pair with POST /v1/auth/refresh, then repeat the request."),
    _p("invalid_refresh_token", 401, "Invalid refresh token",
       "The refresh token is unknown, expired or revoked.", "Log in again."),
    _p("refresh_token_reused", 401, "Refresh token reused",
       "A spent refresh token was presented again: its whole family is revoked, since it may "
       "have been stolen.", "Log in again; treat the old tokens as compromised."),
    # --- 403 ---
    _p("forbidden", 403, "Forbidden",
       "The caller's role may not do this (e.g. freeze needs admin; capture, void and refund "
       "belong to the merchant).", "Do not retry; ask an operator for the role if needed."),
    # --- 404, 405 ---
    _p("not_found", 404, "Not found",
       "No such resource, or it is not the caller's (the two are never told apart), or no "
       "such path.", "Check the id and the path; do not retry."),
    _p("method_not_allowed", 405, "Method not allowed",
       "The path exists but not with this method; the Allow header lists those it takes.",
       "Use one of the methods in Allow."),
    # --- 409 ---
    _p("conflict", 409, "Conflict", "The resource's state does not allow this now.",
       "Read the resource again, then decide."),
    _p("email_taken", 409, "E-mail taken", "An account with this e-mail exists.",
       "Log in, or register with another e-mail."),
    _p("account_closed", 409, "Account closed", "The account is closed.",
       "Use another account."),
    _p("version_conflict", 409, "Version conflict",
       "The account changed since the version the request expected.",
       "Read the account again and repeat."),
    _p("payment_not_authorized", 409, "Payment not authorized",
       "Only an authorized payment can be captured or voided; this one is not (any more).",
       "Read the payment: it may be captured, voided or expired already."),
    _p("payment_not_captured", 409, "Payment not captured",
       "Only a captured payment can be refunded.", "Capture it first, or void it."),
    _p("payment_busy", 409, "Payment busy", "Another capture or void of this payment is under way.",
       "Wait, then read the payment."),
    _p("idempotency_key_in_flight", 409, "Idempotency-Key in flight",
       "The first request with this Idempotency-Key is still running.",
       "Retry with the same key and body shortly; it then replays the first answer."),
    _p("webhook_limit_reached", 409, "Webhook limit reached",
       "The caller has as many webhooks as a user may have.", "Delete one first."),
    # --- 415 ---
    _p("unsupported_media_type", 415, "Unsupported media type",
       "The body was sent with a Content-Type other than JSON (application/json or "
       "application/*+json).", "Send the body as JSON with Content-Type: application/json."),
    # --- 422 ---
    _p("validation_error", 422, "Validation failed",
       "The body or the query breaks the operation's schema; `errors` names each field.",
       "Fix the fields named in `errors`."),
    _p("idempotency_key_reused", 422, "Idempotency-Key reused",
       "This Idempotency-Key was used before for another request (route or body).",
       "Use a fresh key for a new operation."),
    _p("amount_exceeds_authorization", 422, "Amount exceeds authorization",
       "A capture of more than the authorized amount.", "Capture at most the amount authorized."),
    _p("refund_exceeds_captured", 422, "Refund exceeds captured",
       "Refunds would add up to more than was captured.", "Refund at most what is left."),
    _p("operation_refused", 422, "Operation refused",
       "A capture or refund was refused without a more precise reason.",
       "Read the payment and its transactions."),
    # The reasons a decided capture or refund carries (a transaction's failure_reason).
    _p("insufficient_funds", 422, "Insufficient funds", REFUSED, "Add funds, or move less."),
    _p("account_frozen", 422, "Account frozen", REFUSED, "Ask an operator to unfreeze it."),
    _p("currency_mismatch", 422, "Currency mismatch", REFUSED,
       "Use accounts of the request's currency."),
    _p("limit_exceeded", 422, "Limit exceeded", REFUSED,
       "Move less, or wait for the daily limit to reset."),
    _p("fraud_suspected", 422, "Fraud suspected", REFUSED, "Contact support."),
    _p("compliance_blocked", 422, "Compliance blocked", REFUSED, "Contact support."),
    _p("malformed_transaction", 422, "Malformed transaction", REFUSED, "Report it."),
    _p("no_quorum", 422, "No quorum", REFUSED + " Too few validators answered.",
       "Retry later with a new Idempotency-Key."),
    _p("decision_timeout", 422, "Decision timeout", REFUSED + " No decision came in time.",
       "Retry later with a new Idempotency-Key."),
    _p("malformed_posting", 422, "Malformed posting", REFUSED, "Report it."),
    _p("account_not_found", 422, "Account not found", REFUSED, "Check the accounts."),
    _p("account_changed", 422, "Account changed", REFUSED,
       "Retry with a new Idempotency-Key."),
    _p("hold_not_found", 422, "Hold not found", REFUSED, "Read the payment."),
    _p("hold_not_active", 422, "Hold not active", REFUSED + " The hold was released already.",
       "Read the payment: it may be voided or expired."),
    _p("amount_exceeds_hold", 422, "Amount exceeds hold", REFUSED,
       "Capture at most the amount held."),
    _p("batch_aborted", 422, "Batch aborted", REFUSED + " Another item of its atomic batch "
       "failed.", "Fix the failed item and send the batch again."),
    # --- 429 ---
    _p("rate_limited", 429, "Too many requests",
       "A rate limit (per IP, per user, or failed logins per e-mail and network) is used up.",
       "Wait the Retry-After header's seconds."),
    # --- 500, 503 ---
    _p("internal_error", 500, "Internal error", "An unexpected error; it is logged.",
       "Retry later; quote the X-Request-ID (the problem's `instance`) when reporting it."),
    _p("service_unavailable", 503, "Service unavailable",
       "A service or dependency behind the gateway did not answer.", RETRY_LATER),
    _p("circuit_open", 503, "Service unavailable",
       "Calls to a failing service are paused by a circuit breaker.", RETRY_LATER),
    _p("payment_pending", 503, "Payment pending",
       "The payment operation is still being decided.", RETRY_LATER),
)

BY_CODE = {problem.code: problem for problem in PROBLEM_TYPES}
# A code missing from the table (a bug the unit test catches) still gets a sane answer.
FALLBACK_BY_STATUS = {
    400: "malformed_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 415: "unsupported_media_type",
    422: "validation_error", 429: "rate_limited", 503: "service_unavailable",
}


def problem_type(code, status):
    """The ``ProblemType`` that answers ``code``: its own, else its status's generic one."""
    found = BY_CODE.get(code)
    if found is None:
        found = BY_CODE[FALLBACK_BY_STATUS.get(status, "internal_error")]
    return found


def page(problem):
    """The documentation a ``type`` URI resolves to (Markdown, as in docs/errors.md)."""
    return ("# {p.title} (`{p.code}`)\n\nType: `{p.type}`\n\nStatus: {p.status}\n\n"
            "{p.meaning}\n\nWhat to do: {p.action}\n\nEvery code: /problems\n").format(p=problem)


def index():
    """Every code, one line each, for ``GET /problems``."""
    return "# Problem types\n\n" + "".join(
        "- [`{p.code}`]({p.type}) ({p.status}): {p.title}\n".format(p=p) for p in PROBLEM_TYPES)
