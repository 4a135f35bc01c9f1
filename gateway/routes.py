"""Every route of the HTTP contract (API.md), declared once.

This table drives the OpenAPI document, validation, RBAC and idempotency; each route
has its handler in gateway/service.py.
"""
import re
from dataclasses import dataclass, field

from werkzeug.routing import BaseConverter

from gateway import schemas as s

ADMIN = ("admin",)
AUDIT = ("admin", "auditor")


@dataclass(frozen=True)
class Route:
    operation_id: str
    method: str
    path: str  # OpenAPI template: /v1/accounts/{account_id}
    summary: str
    tag: str
    responses: dict  # success status -> (description, schema or None)
    body: type = None  # request body schema
    query: type = None  # query string schema
    auth: bool = True  # needs a bearer token
    roles: tuple = ()  # any of these roles; empty: any authenticated user
    moves_money: bool = False  # needs an Idempotency-Key
    idempotent: bool = False  # honours an Idempotency-Key if one is sent
    errors: tuple = field(default=())  # route-specific error statuses beyond the derived ones

    @property
    def url_rule(self):
        """The Werkzeug rule of ``path``: /v1/accounts/<segment:account_id>."""
        return re.sub(r"\{(\w+)\}", r"<segment:\1>", self.path)

    @property
    def path_params(self):
        return re.findall(r"\{(\w+)\}", self.path)

    @property
    def operational(self):
        """Health, readiness, metrics and the document: no limits, no input, no token."""
        return self.tag == "operations"

    def error_statuses(self):
        """Every error status this route can answer, for the OpenAPI document."""
        if self.operational:
            return sorted({500} | set(self.errors))
        # 429 rate limited, 422 unknown query fields (or a body where none is taken),
        # 415 a body that is not JSON, 503 a service down.
        statuses = {415, 422, 429, 500, 503}
        if self.body is not None:
            statuses.add(400)
        if self.auth:
            statuses.add(401)
        if self.roles:
            statuses.add(403)
        if self.path_params:
            statuses.add(404)
        if self.moves_money or self.idempotent:
            statuses |= {400, 409}
        return sorted(statuses | set(self.errors))


def _ok(description, schema=None, status=200):
    return {status: (description, schema)}


ROUTES = (
    # --- Operations ---
    Route("health", "GET", "/health", "Liveness of the gateway process", "operations",
          _ok("The gateway is up", s.Health), auth=False),
    Route("ready", "GET", "/ready", "Can the gateway serve money requests?", "operations",
          {200: ("Ready, or degraded: what does not answer is named in degraded",
                 s.Readiness),
           503: ("Something money requests need does not answer; unavailable names it",
                 s.NotReady)}, auth=False),
    Route("metrics", "GET", "/metrics", "Prometheus metrics", "operations",
          _ok("Prometheus text exposition format"), auth=False),
    Route("openapi", "GET", "/openapi.json", "This document", "operations",
          _ok("OpenAPI 3 document"), auth=False),
    Route("status", "GET", "/v1/status",
          "Every dependency and process: state, latency, error", "monitoring",
          _ok("The state of the system", s.SystemStatus), roles=AUDIT),
    Route("problem_types", "GET", "/problems", "Every problem type (error code)", "operations",
          _ok("Markdown: each code with its type URI, status and title"), auth=False),
    Route("problem_type", "GET", "/problems/{code}", "What one error code means", "operations",
          _ok("Markdown: the code's status, title, meaning and what to do"), auth=False,
          errors=(404,)),
    # --- Auth ---
    Route("register", "POST", "/v1/auth/register", "Register a customer", "auth",
          _ok("Registered", s.User, 201), body=s.RegisterRequest, auth=False, errors=(409,)),
    Route("login", "POST", "/v1/auth/login", "Log in", "auth",
          _ok("Tokens", s.TokenPair), body=s.LoginRequest, auth=False, errors=(401,)),
    Route("refresh", "POST", "/v1/auth/refresh", "Rotate a refresh token", "auth",
          _ok("A new token pair; the old refresh token is spent", s.TokenPair),
          body=s.RefreshRequest, auth=False, errors=(401,)),
    Route("logout", "POST", "/v1/auth/logout", "Revoke a refresh-token family", "auth",
          _ok("Logged out", None, 204), body=s.RefreshRequest),
    Route("me", "GET", "/v1/users/me", "The caller", "auth", _ok("The caller", s.User)),
    # --- Accounts ---
    Route("create_account", "POST", "/v1/accounts", "Open an account", "accounts",
          _ok("Opened", s.Account, 201), body=s.CreateAccountRequest, idempotent=True),
    Route("list_accounts", "GET", "/v1/accounts", "The caller's accounts", "accounts",
          _ok("Accounts", s.page_of(s.Account)), query=s.PageQuery),
    Route("get_account", "GET", "/v1/accounts/{account_id}", "One account", "accounts",
          _ok("The account", s.Account)),
    Route("list_entries", "GET", "/v1/accounts/{account_id}/entries",
          "Ledger entries of an account, newest first", "accounts",
          _ok("Entries", s.page_of(s.Entry)), query=s.EntriesQuery),
    Route("get_balance", "GET", "/v1/accounts/{account_id}/balance",
          "An account's balance, now or at a point in time", "accounts",
          _ok("The balance as of a moment", s.Balance), query=s.BalanceQuery),
    Route("freeze_account", "POST", "/v1/accounts/{account_id}/freeze", "Freeze an account",
          "accounts", _ok("Frozen", s.Account), roles=ADMIN, errors=(409,)),
    Route("unfreeze_account", "POST", "/v1/accounts/{account_id}/unfreeze",
          "Unfreeze an account", "accounts", _ok("Active", s.Account), roles=ADMIN, errors=(409,)),
    # --- Money movement ---
    Route("deposit", "POST", "/v1/deposits", "Deposit from the settlement account", "money",
          {201: ("Decided: completed or failed", s.Transaction),
           202: ("Still pending; poll Location", s.Transaction)},
          body=s.DepositRequest, moves_money=True, errors=(404,)),
    Route("withdraw", "POST", "/v1/withdrawals", "Withdraw to the settlement account", "money",
          {201: ("Decided: completed or failed", s.Transaction),
           202: ("Still pending; poll Location", s.Transaction)},
          body=s.WithdrawalRequest, moves_money=True, errors=(404,)),
    Route("transfer", "POST", "/v1/transfers", "Transfer between accounts", "money",
          {201: ("Decided: completed or failed", s.Transaction),
           202: ("Still pending; poll Location", s.Transaction)},
          body=s.TransferRequest, moves_money=True, errors=(404,)),
    Route("transfer_batch", "POST", "/v1/transfers/batch",
          "Many transfers in one request, applied in order", "money",
          {201: ("Every item decided: completed or failed", s.TransferBatch),
           202: ("Some items still pending; poll Location", s.TransferBatch)},
          body=s.TransferBatchRequest, moves_money=True, errors=(404,)),
    Route("get_transfer_batch", "GET", "/v1/transfers/batches/{batch_id}", "One batch",
          "money", _ok("The batch, its items in request order", s.TransferBatch)),
    Route("get_transfer", "GET", "/v1/transfers/{transaction_id}", "One transaction", "money",
          _ok("The transaction", s.Transaction)),
    Route("get_transaction", "GET", "/v1/transactions/{transaction_id}",
          "One transaction, whatever its type", "money", _ok("The transaction", s.Transaction)),
    Route("list_transactions", "GET", "/v1/transactions", "The caller's transactions", "money",
          _ok("Transactions", s.page_of(s.Transaction)), query=s.TransactionsQuery,
          errors=(404,)),
    # --- Payments ---
    Route("create_payment", "POST", "/v1/payments", "Authorize (and capture) a payment",
          "payments", _ok("The payment", s.Payment, 201), body=s.CreatePaymentRequest,
          moves_money=True, errors=(404,)),
    Route("capture_payment", "POST", "/v1/payments/{payment_id}/capture",
          "Capture an authorization", "payments", _ok("The payment", s.Payment),
          body=s.PartialAmountRequest, moves_money=True, errors=(403,)),
    Route("void_payment", "POST", "/v1/payments/{payment_id}/void", "Release the hold",
          "payments", _ok("The payment", s.Payment), moves_money=True, errors=(403,)),
    Route("refund_payment", "POST", "/v1/payments/{payment_id}/refund", "Refund a payment",
          "payments", _ok("The payment", s.Payment), body=s.PartialAmountRequest,
          moves_money=True, errors=(403,)),
    Route("get_payment", "GET", "/v1/payments/{payment_id}", "One payment", "payments",
          _ok("The payment", s.Payment)),
    Route("list_payments", "GET", "/v1/payments", "The payments the caller pays or is paid",
          "payments", _ok("Payments, newest first", s.page_of(s.Payment)),
          query=s.PaymentsQuery),
    # --- Ledger, webhooks, notifications ---
    Route("reconciliation", "GET", "/v1/ledger/reconciliation",
          "Check the books and the Kafka mirror", "ledger",
          _ok("The reconciliation report", s.Reconciliation), roles=AUDIT),
    Route("list_audit_events", "GET", "/v1/audit-events",
          "The audit trail: freezes, users and roles made at the command line, webhook "
          "changes; newest first", "audit",
          _ok("Audit events", s.page_of(s.AuditEvent)), query=s.AuditQuery, roles=AUDIT),
    Route("create_webhook", "POST", "/v1/webhooks", "Register a webhook", "webhooks",
          _ok("Registered; the secret is shown once", s.CreatedWebhook, 201),
          body=s.CreateWebhookRequest, idempotent=True),
    Route("list_webhooks", "GET", "/v1/webhooks", "The caller's webhooks", "webhooks",
          _ok("Webhooks", s.page_of(s.Webhook)), query=s.PageQuery),
    Route("delete_webhook", "DELETE", "/v1/webhooks/{webhook_id}", "Delete a webhook",
          "webhooks", _ok("Deleted", None, 204)),
    Route("list_notifications", "GET", "/v1/notifications",
          "The caller's notification deliveries", "webhooks",
          _ok("Deliveries", s.page_of(s.Notification)), query=s.PageQuery),
)

BY_OPERATION = {route.operation_id: route for route in ROUTES}


# Every fixed segment of the paths above: no path parameter takes one of them, so
# /v1/transfers/batch is that route alone (GET there is a 405 with Allow: POST, not a read of
# the transaction "batch").
STATIC_SEGMENTS = sorted({part for route in ROUTES for part in route.path.split("/")
                          if part and not part.startswith("{")})


class SegmentConverter(BaseConverter):
    """A path parameter: one segment, but none of the routes' fixed ones."""

    regex = r"(?!(?:{})$)[^/]+".format("|".join(map(re.escape, STATIC_SEGMENTS)))
