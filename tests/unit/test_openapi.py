"""The OpenAPI document covers the whole HTTP contract (API.md), errors included."""
import pytest
from nameko.containers import ServiceContainer

from gateway.openapi import build_spec
from gateway.routes import ROUTES

# Every (method, path) of API.md, written out here so the test checks the contract,
# not the route table against itself.
CONTRACT = [
    ("post", "/v1/auth/register"), ("post", "/v1/auth/login"), ("post", "/v1/auth/refresh"),
    ("post", "/v1/auth/logout"), ("get", "/v1/users/me"),
    ("post", "/v1/accounts"), ("get", "/v1/accounts"), ("get", "/v1/accounts/{account_id}"),
    ("get", "/v1/accounts/{account_id}/entries"), ("post", "/v1/accounts/{account_id}/freeze"),
    ("get", "/v1/accounts/{account_id}/balance"),
    ("post", "/v1/accounts/{account_id}/unfreeze"),
    ("post", "/v1/deposits"), ("post", "/v1/withdrawals"), ("post", "/v1/transfers"),
    ("get", "/v1/transfers/{transaction_id}"), ("get", "/v1/transactions"),
    ("post", "/v1/transfers/batch"), ("get", "/v1/transfers/batches/{batch_id}"),
    ("post", "/v1/payments"), ("post", "/v1/payments/{payment_id}/capture"),
    ("post", "/v1/payments/{payment_id}/void"), ("post", "/v1/payments/{payment_id}/refund"),
    ("get", "/v1/payments/{payment_id}"),
    ("get", "/v1/ledger/reconciliation"), ("get", "/v1/audit-events"),
    ("post", "/v1/webhooks"), ("get", "/v1/webhooks"),
    ("delete", "/v1/webhooks/{webhook_id}"), ("get", "/v1/notifications"),
    ("get", "/health"), ("get", "/ready"), ("get", "/metrics"), ("get", "/openapi.json"),
    ("get", "/v1/status"),
]

SPEC = build_spec("http://127.0.0.1:8000")


def test_every_operation_of_the_contract_is_documented():
    documented = {(method, path) for path, operations in SPEC["paths"].items()
                  for method in operations}
    assert documented == set(CONTRACT)


OPERATIONS = {"/health", "/ready", "/metrics", "/openapi.json"}


@pytest.mark.parametrize("method,path", CONTRACT)
def test_every_error_an_operation_can_answer_is_problem_json(method, path):
    responses = SPEC["paths"][path][method]["responses"]
    errors = {status: response for status, response in responses.items()
              if int(status) >= 400 and not (path == "/ready" and status == "503")}
    if path in OPERATIONS:
        assert set(errors) == {"500"}
    else:
        assert {"422", "429", "500", "503"} <= set(errors)
        assert "501" not in errors
    for response in errors.values():
        assert response["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"}


def test_ready_documents_degraded_and_its_503_as_a_problem_naming_the_causes():
    responses = SPEC["paths"]["/ready"]["get"]["responses"]
    ok = responses["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    readiness = SPEC["components"]["schemas"][ok]
    assert readiness["properties"]["status"]["enum"] == ["ready", "degraded", "unavailable"]
    assert {"status", "checks", "unavailable", "degraded"} <= set(readiness["required"])
    not_ready = responses["503"]["content"]["application/problem+json"]["schema"]["$ref"]
    problem = SPEC["components"]["schemas"][not_ready.rsplit("/", 1)[1]]
    assert {"type", "title", "status", "detail", "code", "unavailable", "checks"} <= set(
        problem["required"])
    assert "Retry-After" in responses["503"]["headers"]


def test_status_is_for_admins_and_auditors_and_documents_every_component():
    operation = SPEC["paths"]["/v1/status"]["get"]
    assert {"401", "403"} <= set(operation["responses"])
    assert operation["security"] == [{"bearerAuth": []}]
    schema = SPEC["components"]["schemas"]["SystemStatus"]
    assert {"status", "dependencies", "processes", "quorum"} <= set(schema["required"])
    component = SPEC["components"]["schemas"]["ComponentStatus"]
    assert {"state", "latency_ms", "error"} <= set(component["required"])


def test_every_route_of_the_contract_has_its_handler():
    from gateway.http import GatewayEndpoint
    from gateway.service import GatewayService
    from shared.config import load_config

    # The entrypoints Nameko's container finds on the class, as `paysys serve` runs it.
    container = ServiceContainer(GatewayService, load_config())
    answered = {entrypoint.route.operation_id for entrypoint in container.entrypoints
                if isinstance(entrypoint, GatewayEndpoint)}
    assert answered == {route.operation_id for route in ROUTES}


def test_money_moving_operations_require_an_idempotency_key_and_document_its_conflicts():
    for route in ROUTES:
        operation = SPEC["paths"][route.path][route.method.lower()]
        headers = {p["name"]: p["required"] for p in operation.get("parameters", [])
                   if p.get("in") == "header"}
        if route.moves_money:
            assert headers == {"Idempotency-Key": True}, route.operation_id
            assert {"400", "409", "422"} <= set(operation["responses"]), route.operation_id
        elif route.operation_id in ("create_account", "create_webhook"):
            assert headers == {"Idempotency-Key": False}, route.operation_id
        else:
            assert headers == {}, route.operation_id


def test_authenticated_operations_document_401_and_bearer_security():
    public = {"/health", "/ready", "/metrics", "/openapi.json", "/v1/auth/register",
              "/v1/auth/login", "/v1/auth/refresh"}
    for path, operations in SPEC["paths"].items():
        for operation in operations.values():
            if path in public:
                assert operation["security"] == []
            else:
                assert operation["security"] == [{"bearerAuth": []}]
                assert "401" in operation["responses"]


def test_amounts_are_documented_as_bounded_integers():
    amount = SPEC["components"]["schemas"]["TransferRequest"]["properties"]["amount"]
    assert amount["type"] == "integer"
    assert (amount["minimum"], amount["maximum"]) == (1, 10**15)


def test_the_balance_at_a_moment_takes_an_rfc_3339_date_time():
    operation = SPEC["paths"]["/v1/accounts/{account_id}/balance"]["get"]
    [at] = [parameter for parameter in operation["parameters"] if parameter["name"] == "at"]
    assert (at["in"], at["required"], at["schema"]["format"]) == ("query", False, "date-time")
    assert {"401", "404", "422"} <= set(operation["responses"])
    balance = SPEC["components"]["schemas"]["Balance"]
    assert set(balance["required"]) == {"account_id", "currency", "balance", "as_of"}
    assert balance["properties"]["as_of"]["format"] == "date-time"


def test_the_audit_trail_is_for_admins_and_auditors_and_pages_like_every_list():
    operation = SPEC["paths"]["/v1/audit-events"]["get"]
    assert "403" in operation["responses"] and "admin, auditor" in operation["description"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"limit", "cursor", "action", "actor_id", "target_id"} <= names
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/AuditEventPage"}
    event = SPEC["components"]["schemas"]["AuditEvent"]
    assert {"id", "occurred_at", "actor_type", "actor_id", "action", "target_type",
            "target_id", "details", "request_id"} <= set(event["required"])
