"""The gateway service: one thin handler per route of gateway/routes.py.

Each handler gets a ``Call`` the guard (gateway/guard.py) has already
authenticated, rate-limited, authorized and validated, asks the services over
RPC, and shapes their answer into the contract's JSON.
"""
import json
import logging

from nameko.timer import timer
from werkzeug.wrappers import Response

from gateway import problems
from gateway.desk import MoneyDesk
from gateway.guard import Guard, endpoint
from gateway.http import json_response, problem_response
from gateway.idempotency import IdempotencyStore
from gateway.metrics import exposition
from gateway.openapi import build_spec
from gateway.readiness import Readiness
from gateway.routes import BY_OPERATION
from gateway.settings import GatewaySettings
from shared import audit
from shared.commands import Movement, TransferBatch
from shared.db import Database
from shared import tracing
from shared.errors import NotFound, ServiceUnavailable
from shared.leadership import one_replica_at_a_time
from shared.rpc import ServiceRpc
from shared.service import ServiceBase
from shared.settings import Settings
from shared.shared_settings import SharedSettings

log = logging.getLogger(__name__)

MARKDOWN = "text/markdown"
EXPIRED_KEYS_PURGE_INTERVAL_S = 600
RECONCILIATION_TIMEOUT_S = 60
READY_RETRY_AFTER_S = 5


def _no_content():
    return Response(status=204)


def _viewer(call):
    """Whose things the caller may read, for the service that owns them: None for staff
    (admin, auditor: anyone's), else the caller's own id. Accounts, transactions, batches
    and payments all answer 404 for another's, never revealing it exists."""
    return None if call.user.is_staff else call.user.id


def _movement(call, kind, source_id, destination_id, body, key):
    # ``acting_as_admin`` is the command's flag (the transactions service then skips its
    # ownership check); here it follows the caller's role, ``is_admin``. The payments
    # service raises the flag for movements it has authorized itself.
    return Movement(kind=kind, initiator_id=call.user.id, source_account_id=source_id,
                    destination_account_id=destination_id, amount=body["amount"],
                    currency=body["currency"], idempotency_key=key,
                    description=body.get("description"), metadata=body.get("metadata"),
                    acting_as_admin=call.user.is_admin, request_id=call.request_id,
                    traceparent=tracing.current_traceparent())


class GatewayService(ServiceBase):
    name = "gateway"

    settings = Settings(GatewaySettings)
    shared = Settings(SharedSettings)
    db = Database(schema="gateway")
    rpc = ServiceRpc()
    guard = Guard()
    desk = MoneyDesk()
    readiness = Readiness()

    # --- Auth -------------------------------------------------------------------

    @endpoint(BY_OPERATION["register"])
    def register(self, call):
        return json_response(self.rpc.auth.register(**call.body), 201)

    @endpoint(BY_OPERATION["login"])
    def login(self, call):
        return json_response(self.rpc.auth.login(call.body["email"], call.body["password"],
                                                 call.client_ip))

    @endpoint(BY_OPERATION["refresh"])
    def refresh(self, call):
        return json_response(self.rpc.auth.refresh(call.body["refresh_token"]))

    @endpoint(BY_OPERATION["logout"])
    def logout(self, call):
        self.rpc.auth.logout(call.user.id, call.body["refresh_token"])
        return _no_content()

    @endpoint(BY_OPERATION["me"])
    def me(self, call):
        return json_response(self.rpc.auth.get_user(call.user.id))

    # --- Accounts -----------------------------------------------------------------

    @endpoint(BY_OPERATION["create_account"])
    def create_account(self, call):
        account = self.rpc.ledger.create_account(
            call.user.id, call.body["currency"], call.body.get("name"))
        return json_response(account, 201, {"Location": "/v1/accounts/{}".format(account["id"])})

    @endpoint(BY_OPERATION["list_accounts"])
    def list_accounts(self, call):
        return json_response(self.rpc.ledger.list_accounts(
            call.user.id, call.query["limit"], call.query.get("cursor")))

    @endpoint(BY_OPERATION["get_account"])
    def get_account(self, call):
        return json_response(self.rpc.ledger.get_account(call.path["account_id"],
                                                         owner_id=_viewer(call)))

    @endpoint(BY_OPERATION["list_entries"])
    def list_entries(self, call):
        account_id = call.path["account_id"]
        self.rpc.ledger.get_account(account_id, owner_id=_viewer(call))  # 404 if not
        return json_response(self.rpc.ledger.entries(
            account_id, call.query["limit"], call.query.get("cursor")))

    @endpoint(BY_OPERATION["get_balance"])
    def get_balance(self, call):
        # The owner's, or anyone's for admins and auditors; another's is a 404.
        return json_response(self.rpc.ledger.balance(
            call.path["account_id"], call.query.get("at"), owner_id=_viewer(call)))

    @endpoint(BY_OPERATION["freeze_account"])
    def freeze_account(self, call):
        return json_response(self.rpc.ledger.set_status(
            call.path["account_id"], "frozen", actor_id=call.user.id,
            request_id=call.request_id))

    @endpoint(BY_OPERATION["unfreeze_account"])
    def unfreeze_account(self, call):
        return json_response(self.rpc.ledger.set_status(
            call.path["account_id"], "active", actor_id=call.user.id,
            request_id=call.request_id))

    # --- Money movement -----------------------------------------------------------

    @endpoint(BY_OPERATION["deposit"], claimed_at_desk=True)
    def deposit(self, call):
        return self._move_money(call, "deposit", None, call.body["account_id"])

    @endpoint(BY_OPERATION["withdraw"], claimed_at_desk=True)
    def withdraw(self, call):
        return self._move_money(call, "withdrawal", call.body["account_id"], None)

    @endpoint(BY_OPERATION["transfer"], claimed_at_desk=True)
    def transfer(self, call):
        self._same_account_is_known(call, [call.body])
        return self._move_money(call, "transfer", call.body["source_account_id"],
                                call.body["destination_account_id"])

    def _same_account_is_known(self, call, transfers):
        """A transfer from an account to itself is a 422, but only once the account is known
        to be the caller's: an unknown one (or another's) is the 404 of any transfer from it,
        whatever its destination. Rare, so worth one more read."""
        for source in {t["source_account_id"] for t in transfers
                       if t["source_account_id"] == t["destination_account_id"]}:
            self.rpc.ledger.get_account(source, owner_id=None if call.user.is_admin
                                        else call.user.id)

    @endpoint(BY_OPERATION["transfer_batch"])
    def transfer_batch(self, call):
        self._same_account_is_known(call, call.body["transfers"])
        batch = TransferBatch(
            call.user.id, call.idempotency_key,
            tuple(_movement(call, "transfer", item["source_account_id"],
                            item["destination_account_id"], item, key=None)
                  for item in call.body["transfers"]),
            call.body["atomic"], call.request_id)
        view = self.rpc.transactions.submit_batch(batch.to_wire(), timeout_s=self._submit_timeout_s)
        # 201: every item decided; 202: some still pending, poll Location.
        status = 201 if view["status"] == "completed" else 202
        return json_response(view, status,
                             {"Location": "/v1/transfers/batches/{}".format(view["id"])})

    @endpoint(BY_OPERATION["get_transfer_batch"])
    def get_transfer_batch(self, call):
        return json_response(self.rpc.transactions.get_batch(call.path["batch_id"],
                                                             _viewer(call)))

    @endpoint(BY_OPERATION["get_transfer"])
    def get_transfer(self, call):
        return json_response(self.rpc.transactions.get(call.path["transaction_id"],
                                                       _viewer(call)))

    @endpoint(BY_OPERATION["get_transaction"])
    def get_transaction(self, call):
        return json_response(self.rpc.transactions.get(call.path["transaction_id"],
                                                       _viewer(call)))

    @endpoint(BY_OPERATION["list_transactions"])
    def list_transactions(self, call):
        account_id = call.query.get("account_id")
        if account_id is not None:
            self.rpc.ledger.get_account(account_id, owner_id=_viewer(call))  # 404 if not
        return json_response(self.rpc.transactions.list(
            call.user.id, account_id=account_id, status=call.query.get("status"),
            limit=call.query["limit"], cursor=call.query.get("cursor")))

    def _move_money(self, call, kind, source_id, destination_id):
        transaction = self.desk.submit(_movement(call, kind, source_id, destination_id,
                                                 call.body, key=call.idempotency_key),
                                       claim=call.claim)
        location = "/v1/transfers/{}".format(transaction["id"])
        # 201: decided (completed or failed); 202: still pending, poll Location.
        status = 202 if transaction["status"] == "pending" else 201
        return json_response(transaction, status, {"Location": location})

    @property
    def rpc_margin_s(self):
        return self.shared.rpc.timeout_s

    @property
    def _decision_wait_s(self):
        return self.shared.rpc.decision_wait_s

    @property
    def _submit_timeout_s(self):
        # The transactions service answers within the decision wait; allow for the queue.
        return self._decision_wait_s + self.rpc_margin_s

    # --- Payments --------------------------------------------------------------------

    @endpoint(BY_OPERATION["create_payment"])
    def create_payment(self, call):
        payment = self.rpc.payments.create(call.user.id, call.body, call.idempotency_key,
                                           call.user.is_admin, timeout_s=self._payment_timeout_s)
        return json_response(payment, 201, {"Location": "/v1/payments/{}".format(payment["id"])})

    @endpoint(BY_OPERATION["capture_payment"])
    def capture_payment(self, call):
        return json_response(self.rpc.payments.capture(
            call.path["payment_id"], call.user.id, call.user.is_admin, call.idempotency_key,
            call.body.get("amount"), timeout_s=self._payment_timeout_s))

    @endpoint(BY_OPERATION["void_payment"])
    def void_payment(self, call):
        return json_response(self.rpc.payments.void(
            call.path["payment_id"], call.user.id, call.user.is_admin, call.idempotency_key,
            timeout_s=self._payment_timeout_s))

    @endpoint(BY_OPERATION["refund_payment"])
    def refund_payment(self, call):
        return json_response(self.rpc.payments.refund(
            call.path["payment_id"], call.user.id, call.user.is_admin, call.idempotency_key,
            call.body.get("amount"), timeout_s=self._payment_timeout_s))

    @endpoint(BY_OPERATION["get_payment"])
    def get_payment(self, call):
        return json_response(self.rpc.payments.get(call.path["payment_id"], _viewer(call),
                                                   timeout_s=self._payment_timeout_s))

    @endpoint(BY_OPERATION["list_payments"])
    def list_payments(self, call):
        return json_response(self.rpc.payments.list(
            _viewer(call), status=call.query.get("status"), limit=call.query["limit"],
            cursor=call.query.get("cursor")))

    @property
    def _payment_timeout_s(self):
        # The payments service waits on a submit (decision wait + its own margin): allow
        # for that and the queue in front of it.
        return self._decision_wait_s + 2 * self.rpc_margin_s

    # --- Ledger, webhooks, notifications ---------------------------------------------

    @endpoint(BY_OPERATION["reconciliation"])
    def reconciliation(self, call):
        # Reads the whole Kafka mirror: allow it more than an ordinary call.
        return json_response(self.rpc.ledger.reconciliation(timeout_s=RECONCILIATION_TIMEOUT_S))

    @endpoint(BY_OPERATION["create_webhook"])
    def create_webhook(self, call):
        webhook = self.rpc.notifications.create_webhook(
            call.user.id, call.body["url"], call.body["events"], request_id=call.request_id)
        return json_response(webhook, 201)

    @endpoint(BY_OPERATION["list_webhooks"])
    def list_webhooks(self, call):
        return json_response(self.rpc.notifications.list_webhooks(
            call.user.id, call.query["limit"], call.query.get("cursor")))

    @endpoint(BY_OPERATION["delete_webhook"])
    def delete_webhook(self, call):
        self.rpc.notifications.delete_webhook(call.user.id, call.path["webhook_id"],
                                              request_id=call.request_id)
        return _no_content()

    @endpoint(BY_OPERATION["list_notifications"])
    def list_notifications(self, call):
        return json_response(self.rpc.notifications.list_deliveries(
            call.user.id, call.query["limit"], call.query.get("cursor")))

    # --- The audit trail ---------------------------------------------------------

    @endpoint(BY_OPERATION["list_audit_events"])
    def list_audit_events(self, call):
        # Each service keeps the trail of its own actions: the newest of them all, merged.
        query = call.query
        pages = [self.rpc[name].audit_events(
            query["limit"], query.get("cursor"), action=query.get("action"),
            actor_id=query.get("actor_id"), target_id=query.get("target_id"))
            for name in audit.SERVICES]
        return json_response(audit.merge_pages(pages, query["limit"]))

    # --- Operations ---------------------------------------------------------------

    @endpoint(BY_OPERATION["health"])
    def get_health(self, call):
        return json_response({"status": "ok"})

    @endpoint(BY_OPERATION["ready"])
    def get_ready(self, call):
        body, status = self.readiness.ready()
        if status == 200:
            return json_response(body)
        # Not ready is a problem like any other 503: problem+json, Retry-After, and the
        # readiness fields (checks, unavailable, degraded) as its extension members.
        detail = "Cannot serve money requests: {} not answering.".format(
            ", ".join(body["unavailable"]))
        extra = {key: body[key] for key in ("checks", "unavailable", "degraded")}
        return problem_response(503, ServiceUnavailable.code, detail, extra,
                                {"Retry-After": str(READY_RETRY_AFTER_S)})

    @endpoint(BY_OPERATION["status"])
    def get_status(self, call):
        return json_response(self.readiness.status())

    @endpoint(BY_OPERATION["metrics"])
    def get_metrics(self, call):
        if not self.settings.gateway.api_metrics:
            # Production scrapes the metrics port; the API port shows nothing of it.
            raise NotFound("No such resource.")
        body, content_type = exposition()
        return Response(body, status=200, content_type=content_type)

    @endpoint(BY_OPERATION["openapi"])
    def get_openapi(self, call):
        spec = build_spec(self.settings.gateway.public_url)
        return Response(json.dumps(spec), status=200, mimetype="application/json")

    @endpoint(BY_OPERATION["problem_types"])
    def get_problem_types(self, call):
        return Response(problems.index(), status=200, mimetype=MARKDOWN)

    @endpoint(BY_OPERATION["problem_type"])
    def get_problem_type(self, call):
        problem = problems.BY_CODE.get(call.path.get("code"))
        if problem is None:
            raise NotFound("No such problem type; GET /problems lists them all.")
        return Response(problems.page(problem), status=200, mimetype=MARKDOWN)

    @timer(interval=EXPIRED_KEYS_PURGE_INTERVAL_S)
    @one_replica_at_a_time("gateway.idempotency_purge")
    def purge_expired_idempotency_keys(self):
        deleted = IdempotencyStore.configured(self.db, self.settings.idempotency).purge_expired()
        if deleted:
            log.info("purged %d expired idempotency keys", deleted)
