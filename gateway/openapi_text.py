"""The prose and the examples of the OpenAPI document: a description per operation, and an
example per schema (the unit tests check every operation has both, and that each example is
valid against its own schema)."""

ACCOUNT_ID = "6c1a2f0e-3b8d-4e55-9a4f-1f2e3d4c5b6a"
OTHER_ACCOUNT_ID = "0b7e4a2c-9d31-4f6a-8e2b-5c4d3e2f1a09"
USER_ID = "2d9f8e7c-6b5a-4c3d-8e1f-0a9b8c7d6e5f"
TRANSACTION_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
PAYMENT_ID = "4e3d2c1b-0a9f-4e8d-8c7b-6a5f4e3d2c1b"
BATCH_ID = "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910"
WEBHOOK_ID = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
NOTIFICATION_ID = "5d4c3b2a-1908-4f7e-9d6c-5b4a39281706"
EVENT_ID = "8c7b6a59-4837-4261-9f0e-dcba98765432"
CREATED_AT = "2026-03-01T12:00:00.123456Z"
COMPLETED_AT = "2026-03-01T12:00:00.181022Z"

DESCRIPTIONS = {
    "health": "Answers 200 while the gateway process is up; it asks nothing else (use /ready "
              "for that).",
    "ready": "Can this gateway serve money requests? 503 (naming the causes) when "
             "PostgreSQL, RabbitMQ, auth, transactions or the ledger does not answer, or fewer "
             "validators than a quorum; 200 \"ready\", or \"degraded\" naming what the system "
             "serves without (Redis, Kafka, one validator, payments, notifications).",
    "status": "Admin and auditor. Every dependency and process: its state, latency, error "
              "and role (required, quorum or optional), and the validators' quorum.",
    "metrics": "The gateway process's Prometheus metrics, in the text exposition format.",
    "openapi": "This document, generated from the gateway's route table and schemas.",
    "problem_types": "Every error `code` with its `type` URI, status and title "
                     "(docs/errors.md).",
    "problem_type": "The page a problem's `type` URI resolves to: what the code means and "
                    "what a client should do.",
    "register": "Creates a customer. The password is at least 12 characters; an e-mail "
                "already registered is 409 email_taken.",
    "login": "Exchanges an e-mail and password for a token pair. A wrong one is 401 with "
             "WWW-Authenticate; repeated failures for one e-mail from one network are braked "
             "(429 with Retry-After).",
    "refresh": "Spends a refresh token for a new pair. Presenting a spent one again is 401 "
               "refresh_token_reused and revokes its whole family.",
    "logout": "Revokes the refresh token's family; access tokens expire by themselves.",
    "me": "The authenticated caller: id, e-mail, name and roles.",
    "create_account": "Opens an account of the caller in a currency, with a zero balance. An "
                      "Idempotency-Key is honoured when sent. Location names the account.",
    "list_accounts": "The caller's accounts, oldest first, paginated.",
    "get_account": "One account with its balance and available balance. Another user's is "
                   "404 (staff may read any).",
    "list_entries": "The ledger entries of one account, newest first, each with the balance "
                    "after it.",
    "freeze_account": "Admin only. A frozen account neither sends nor receives money.",
    "unfreeze_account": "Admin only. Makes a frozen account active again.",
    "deposit": "Money in from the settlement account (a simulated card top-up), decided by "
               "the validators' quorum: 201 completed or failed, or 202 pending with a "
               "Location to poll.",
    "withdraw": "Money out to the settlement account, decided like a deposit.",
    "transfer": "Moves money between two accounts of one currency; the source must be the "
                "caller's (admin: any). 201 when decided (completed or failed, with its "
                "failure_reason), 202 when still pending.",
    "transfer_batch": "1 to 1,000 transfers applied in request order, each an ordinary "
                      "transaction; atomic: all complete or none do. An invalid item is a "
                      "422 for the whole batch, before anything is recorded.",
    "get_transfer_batch": "One batch with its items in request order.",
    "get_transfer": "One transaction (any type, as under /v1/transactions/{transaction_id}); "
                    "where a money POST's Location points.",
    "get_transaction": "One transaction, whatever its type: deposit, withdrawal, transfer, "
                       "payment, capture or refund.",
    "list_transactions": "The transactions touching the caller's accounts (or one account "
                         "of theirs), newest first, filterable by status.",
    "create_payment": "The payer authorizes a payment to a merchant account: capture true "
                      "charges at once, false holds the money until captured, voided or "
                      "expired.",
    "capture_payment": "The merchant captures an authorization, fully or partly; the rest "
                       "of the hold is released.",
    "void_payment": "The merchant releases an authorization's hold; nothing moves.",
    "refund_payment": "The merchant refunds a captured payment, fully or partly; refunds add "
                      "up to at most the captured amount.",
    "get_payment": "One payment the caller pays or is paid (staff: any).",
    "list_payments": "The payments the caller pays or is paid (admin and auditor: all), "
                     "newest first, filterable by status.",
    "get_balance": "The owner, admin or auditor reads an account's balance now, or at a "
                   "moment (at, RFC 3339): the balance_after of its latest entry at or before "
                   "it, 0 when there is none.",
    "list_audit_events": "Admin and auditor. The audit trail, newest first: freezes, "
                         "unfreezes, users and roles made at the command line, webhooks "
                         "created and deleted; each with who, what, when and the request id.",
    "reconciliation": "Admin and auditor. Checks that every currency's entries sum to zero, "
                      "that balances equal their entries, and that the Kafka mirror holds "
                      "every posting.",
    "create_webhook": "Registers a URL for events: transaction.completed, "
                      "transaction.failed, payment.authorized, payment.captured, "
                      "payment.refunded, payment.voided, payment.expired (the system voided an "
                      "authorization past its hold time) and payment.failed. Each delivery "
                      "is a POST of {id, type, created_at, data} (data: the resource as the "
                      "API shows it, metadata included) signed in X-Signature. The URL must be "
                      "http(s) and may not point at loopback, private or link-local networks "
                      "unless allowed. The signing secret is shown once.",
    "list_webhooks": "The caller's webhooks, without their secrets.",
    "delete_webhook": "Deletes one of the caller's webhooks; deliveries already made keep "
                      "their history.",
    "list_notifications": "The caller's deliveries (webhooks and e-mail), newest first, each "
                          "with every attempt.",
}

_TRANSACTION = {
    "id": TRANSACTION_ID, "type": "transfer", "status": "completed", "failure_reason": None,
    "source_account_id": ACCOUNT_ID, "destination_account_id": OTHER_ACCOUNT_ID,
    "amount": 2500, "currency": "USD", "description": "Rent, March",
    "metadata": {"order": "A-1001"},
    "votes": [{"validator_id": "validator-1", "decision": "approve", "reasons": []},
              {"validator_id": "validator-2", "decision": "approve", "reasons": []}],
    "created_at": CREATED_AT, "completed_at": COMPLETED_AT,
}
_ACCOUNT = {
    "id": ACCOUNT_ID, "owner_id": USER_ID, "name": "Everyday", "currency": "USD",
    "status": "active", "balance": 10000, "available_balance": 7500, "overdraft_limit": 0,
    "version": 3, "created_at": CREATED_AT,
}
_PAYMENT = {
    "id": PAYMENT_ID, "status": "authorized", "amount": 4200, "captured_amount": 0,
    "refunded_amount": 0, "currency": "USD", "payer_account_id": ACCOUNT_ID,
    "merchant_account_id": OTHER_ACCOUNT_ID, "reference": "order 1001",
    "metadata": {"cart": "c-77"}, "failure_reason": None, "transactions": [TRANSACTION_ID],
    "created_at": CREATED_AT,
}
_WEBHOOK = {"id": WEBHOOK_ID, "url": "https://hooks.example.com/paysys",
            "events": ["transaction.completed", "payment.captured"]}
_NOTIFICATION = {
    "id": NOTIFICATION_ID, "channel": "webhook", "event_type": "transaction.completed",
    "event_id": EVENT_ID, "status": "delivered", "attempts": 1, "webhook_id": WEBHOOK_ID,
    "target": "https://hooks.example.com/paysys", "last_error": None, "next_attempt_at": None,
    "delivered_at": COMPLETED_AT, "created_at": CREATED_AT,
    "history": [{"attempt": 1, "started_at": CREATED_AT, "finished_at": COMPLETED_AT,
                 "outcome": "succeeded", "status_code": 200, "error": None}],
}

# Schema name -> an example of it.
EXAMPLES = {
    "RegisterRequest": {"email": "ada@example.com", "password": "correct horse battery",
                        "full_name": "Ada Lovelace"},
    "LoginRequest": {"email": "ada@example.com", "password": "correct horse battery"},
    "RefreshRequest": {"refresh_token": "rt_2v6Q0b9lYc3J5mYx8Qm1dA"},
    "User": {"id": USER_ID, "email": "ada@example.com", "full_name": "Ada Lovelace",
             "roles": ["customer"]},
    "TokenPair": {"access_token": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIyZDlmIn0.c2ln",
                  "refresh_token": "rt_2v6Q0b9lYc3J5mYx8Qm1dA", "token_type": "Bearer",
                  "expires_in": 900},
    "CreateAccountRequest": {"currency": "USD", "name": "Everyday"},
    "Account": _ACCOUNT,
    "AccountPage": {"items": [_ACCOUNT], "next_cursor": None},
    "Entry": {"id": "3c2b1a09-f8e7-4d6c-9b5a-493827160554", "account_id": ACCOUNT_ID,
              "transaction_id": TRANSACTION_ID, "amount": -2500, "balance_after": 7500,
              "created_at": COMPLETED_AT},
    "DepositRequest": {"account_id": ACCOUNT_ID, "amount": 10000, "currency": "USD",
                       "metadata": {"top_up": "card-4242"}},
    "WithdrawalRequest": {"account_id": ACCOUNT_ID, "amount": 2000, "currency": "USD"},
    "TransferRequest": {"source_account_id": ACCOUNT_ID,
                        "destination_account_id": OTHER_ACCOUNT_ID, "amount": 2500,
                        "currency": "USD", "description": "Rent, March",
                        "metadata": {"order": "A-1001"}},
    "TransferBatchRequest": {"atomic": True, "transfers": [
        {"source_account_id": ACCOUNT_ID, "destination_account_id": OTHER_ACCOUNT_ID,
         "amount": 100, "currency": "USD"},
        {"source_account_id": OTHER_ACCOUNT_ID, "destination_account_id": ACCOUNT_ID,
         "amount": 40, "currency": "USD"}]},
    "Transaction": _TRANSACTION,
    "TransactionPage": {"items": [_TRANSACTION],
                        "next_cursor": "1772366400123456_9a8b7c6d5e4f4a3b9c2d1e0f9a8b7c6d"},
    "TransferBatch": {"id": BATCH_ID, "status": "completed", "atomic": False,
                      "counts": {"completed": 1, "failed": 0, "pending": 0},
                      "items": [_TRANSACTION], "created_at": CREATED_AT,
                      "completed_at": COMPLETED_AT},
    "CreatePaymentRequest": {"payer_account_id": ACCOUNT_ID,
                             "merchant_account_id": OTHER_ACCOUNT_ID, "amount": 4200,
                             "currency": "USD", "capture": False, "reference": "order 1001",
                             "metadata": {"cart": "c-77"}},
    "PartialAmountRequest": {"amount": 1000},
    "Payment": _PAYMENT,
    "PaymentPage": {"items": [_PAYMENT], "next_cursor": None},
    "Reconciliation": {
        "balanced": True, "currencies": {"USD": {"entries_sum": 0, "accounts_sum": 0}},
        "accounts_checked": 42, "discrepancies": [],
        "chain": {"valid": True, "postings_checked": 84, "entries_checked": 168,
                  "heads": [{"lane": 0, "seq": 84, "hash": "9f" * 32}],
                  "first_broken": None, "broken_links": 0, "entries_outside_chain": 0},
        "mirror": {"topic": "ledger.postings", "ledger_postings": 84, "kafka_postings": 84,
                   "missing": [], "missing_count": 0, "unexpected": [],
                   "unexpected_count": 0, "duplicates": 0, "unpublished": 0}},
    "CreateWebhookRequest": {"url": "https://hooks.example.com/paysys",
                             "events": ["transaction.completed", "payment.captured"]},
    "Webhook": _WEBHOOK,
    "WebhookPage": {"items": [_WEBHOOK], "next_cursor": None},
    "CreatedWebhook": dict(_WEBHOOK, secret="whsec_Zm9vYmFyYmF6cXV4"),
    "Notification": _NOTIFICATION,
    "NotificationPage": {"items": [_NOTIFICATION], "next_cursor": None},
    "EntryPage": {"items": [{"id": "3c2b1a09-f8e7-4d6c-9b5a-493827160554",
                             "account_id": ACCOUNT_ID, "transaction_id": TRANSACTION_ID,
                             "amount": -2500, "balance_after": 7500,
                             "created_at": COMPLETED_AT}], "next_cursor": "17"},
    "Balance": {"account_id": ACCOUNT_ID, "currency": "USD", "balance": 7500,
                "as_of": "2026-03-01T12:00:00Z"},
    "AuditEventPage": {"items": [{
        "id": "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e", "occurred_at": CREATED_AT,
        "service": "ledger", "actor_type": "user", "actor_id": USER_ID,
        "action": "account.frozen", "target_type": "account", "target_id": ACCOUNT_ID,
        "details": {"status_before": "active", "status_after": "frozen"},
        "request_id": "6f1c0e9a4b7d4c0e8a51f2d3c4b5a697"}], "next_cursor": None},
    "SystemStatus": {
        "status": "degraded", "checked_at": CREATED_AT, "unavailable": [],
        "degraded": ["redis"], "quorum": {"pool": 3, "needed": 2, "answering": 3},
        "dependencies": {
            "postgresql": {"state": "ok", "latency_ms": 1.2, "error": None, "role": "required"},
            "redis": {"state": "down", "latency_ms": 2000.0, "error": "timed out",
                      "role": "optional"}},
        "processes": {
            "ledger": {"state": "ok", "latency_ms": 3.4, "error": None, "role": "required"}}},
    "Health": {"status": "ok"},
    "Readiness": {"status": "ready", "checks": {"rabbitmq": "ok", "postgresql": "ok",
                                                "redis": "ok", "kafka": "ok"},
                  "unavailable": [], "degraded": []},
    "Problem": {"type": "/problems/insufficient_funds", "title": "Insufficient funds",
                "status": 422, "detail": "The capture was refused: insufficient_funds.",
                "code": "insufficient_funds", "instance": "6f1c0e9a4b7d4c0e8a51f2d3c4b5a697"},
}
