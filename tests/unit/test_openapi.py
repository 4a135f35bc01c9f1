"""The OpenAPI document covers the whole HTTP contract (API.md), errors included."""
import re
import uuid
from datetime import datetime, timezone

import jsonschema
import pytest
from nameko.containers import ServiceContainer
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from werkzeug.exceptions import MethodNotAllowed

from shared import cursors

from gateway.openapi import build_spec
from gateway.openapi_text import DESCRIPTIONS
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
    ("get", "/v1/payments/{payment_id}"), ("get", "/v1/payments"),
    ("get", "/v1/transactions/{transaction_id}"),
    ("get", "/v1/ledger/reconciliation"), ("get", "/v1/audit-events"),
    ("post", "/v1/webhooks"), ("get", "/v1/webhooks"),
    ("delete", "/v1/webhooks/{webhook_id}"), ("get", "/v1/notifications"),
    ("get", "/health"), ("get", "/ready"), ("get", "/metrics"), ("get", "/openapi.json"),
    ("get", "/problems"), ("get", "/problems/{code}"), ("get", "/v1/status"),
]

SPEC = build_spec("http://127.0.0.1:8000")


def test_every_operation_of_the_contract_is_documented():
    documented = {(method, path) for path, operations in SPEC["paths"].items()
                  for method in operations}
    assert documented == set(CONTRACT)


OPERATIONS = {"/health", "/ready", "/metrics", "/openapi.json", "/problems"}


@pytest.mark.parametrize("method,path", CONTRACT)
def test_every_error_an_operation_can_answer_is_problem_json(method, path):
    responses = SPEC["paths"][path][method]["responses"]
    errors = {status: response for status, response in responses.items()
              if int(status) >= 400 and not (path == "/ready" and status == "503")}
    if path in OPERATIONS:
        assert set(errors) == {"500"}
    elif path == "/problems/{code}":
        assert set(errors) == {"404", "500"}
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
              "/v1/auth/login", "/v1/auth/refresh", "/problems", "/problems/{code}"}
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


def test_the_document_is_valid_openapi():
    validate(SPEC)  # openapi-spec-validator: raises on the first error


def _operations():
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def test_every_operation_has_a_description_and_an_example():
    for method, path, operation in _operations():
        assert operation["operationId"] in DESCRIPTIONS, (method, path)
        assert len(operation["description"]) > len(operation["summary"]) + 1, (method, path)
        examples = [media.get("example") for status, response in operation["responses"].items()
                    if status < "400" for media in response.get("content", {}).values()]
        examples += [p.get("example") for p in operation.get("parameters", [])]
        examples += [media.get("example")
                     for media in operation.get("requestBody", {}).get("content", {}).values()]
        assert any(example is not None for example in examples), (method, path)


def _resolved(schema):
    """``schema`` with the document's components beside it, for a JSON Schema validator."""
    return dict(schema, components=SPEC["components"])


def test_every_example_is_valid_against_its_own_schema():
    checked = 0
    for method, path, operation in _operations():
        bodies = [media for response in operation["responses"].values()
                  for media in response.get("content", {}).values()]
        bodies += list(operation.get("requestBody", {}).get("content", {}).values())
        for media in bodies:
            if "example" in media and "$ref" in media["schema"]:
                jsonschema.validate(media["example"], _resolved(media["schema"]),
                                    cls=OAS30Validator)
                checked += 1
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                jsonschema.validate(parameter["example"], parameter["schema"])
                checked += 1
    assert checked > 60


def test_response_schemas_take_new_fields_and_request_schemas_refuse_unknown_ones():
    components = SPEC["components"]["schemas"]
    for name in ("Account", "Transaction", "Payment", "Problem", "TransferBatch", "Vote",
                 "AccountPage", "User"):
        assert components[name].get("additionalProperties") is not False, name
    for name in ("DepositRequest", "TransferRequest", "TransferBatchRequest",
                 "CreatePaymentRequest", "RegisterRequest", "CreateWebhookRequest"):
        assert components[name]["additionalProperties"] is False, name


def test_every_answer_declares_its_x_request_id_and_creates_their_location():
    for method, path, operation in _operations():
        for status, response in operation["responses"].items():
            assert response["headers"]["X-Request-ID"]["required"] is True, (path, status)
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], (path, status)
    for path, status in (("/v1/accounts", "201"), ("/v1/deposits", "201"),
                         ("/v1/transfers", "202"), ("/v1/payments", "201"),
                         ("/v1/transfers/batch", "201")):
        assert "Location" in SPEC["paths"][path]["post"]["responses"][status]["headers"]


def test_the_constraints_the_server_enforces_are_in_the_document():
    key = next(p for p in SPEC["paths"]["/v1/deposits"]["post"]["parameters"]
               if p["name"] == "Idempotency-Key")["schema"]
    assert re.match(key["pattern"], "a") and not re.match(key["pattern"], "")
    assert not re.match(key["pattern"], " padded ") and not re.match(key["pattern"], "\x7f")
    query = {p["name"]: p["schema"] for p in SPEC["paths"]["/v1/accounts"]["get"]["parameters"]}
    assert (query["limit"]["minimum"], query["limit"]["maximum"]) == (1, 200)
    assert query["cursor"]["pattern"] == cursors.TIME_AND_ID_PATTERN
    entries = {p["name"]: p["schema"]
               for p in SPEC["paths"]["/v1/accounts/{account_id}/entries"]["get"]["parameters"]
               if p["in"] == "query"}
    assert entries["cursor"]["pattern"] == cursors.SEQUENCE_PATTERN
    metadata = SPEC["components"]["schemas"]["TransferRequest"]["properties"]["metadata"]
    assert metadata["maxProperties"] == 50 and "maxLength" not in metadata
    assert metadata["x-propertyNames"]["maxLength"] == 40
    assert metadata["additionalProperties"]["maxLength"] == 500
    register = SPEC["components"]["schemas"]["RegisterRequest"]["properties"]
    assert register["password"]["minLength"] == 12 and "pattern" in register["email"]


def test_every_cursor_of_the_documented_syntax_is_read_and_others_are_refused():
    now = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    item = str(uuid.uuid4())
    made = cursors.encode_time_and_id(now, item)
    assert re.match(cursors.TIME_AND_ID_PATTERN, made)
    assert cursors.decode_time_and_id(made) == (now, item)
    assert cursors.decode_time_and_id("0_" + "f" * 32)[1] == str(uuid.UUID("f" * 32))
    assert cursors.decode_sequence(cursors.encode_sequence(17)) == 17
    for bad in ("", "x", "1_" + "g" * 32, "0"):
        with pytest.raises(ValueError):
            cursors.decode_time_and_id(bad) if "_" in bad or not bad.isdigit() else \
                cursors.decode_sequence(bad)


def test_create_operations_link_to_the_reads_of_what_they_made():
    links = SPEC["paths"]["/v1/accounts"]["post"]["responses"]["201"]["links"]
    assert links["GetAccount"] == {"operationId": "get_account",
                                   "parameters": {"account_id": "$response.body#/id"}}
    operation_ids = {operation["operationId"] for _, _, operation in _operations()}
    for method, path, operation in _operations():
        for response in operation["responses"].values():
            for link in response.get("links", {}).values():
                assert link["operationId"] in operation_ids


def test_a_fixed_segment_is_never_a_path_parameter():
    from gateway.http import GatewayEndpoint
    from gateway.service import GatewayService
    from shared.config import load_config

    container = ServiceContainer(GatewayService, load_config())
    server = next(e for e in container.entrypoints if isinstance(e, GatewayEndpoint)).server
    for entrypoint in container.entrypoints:
        if isinstance(entrypoint, GatewayEndpoint):
            server.register_provider(entrypoint)
    adapter = server.make_url_map().bind("gateway")
    # GET /v1/transfers/batch is no read of a transaction called "batch": only POST is there.
    with pytest.raises(MethodNotAllowed) as refused:
        adapter.match("/v1/transfers/batch", "GET")
    assert refused.value.valid_methods == ["POST"]
    endpoint, values = adapter.match("/v1/transfers/" + str(uuid.uuid4()), "GET")
    assert endpoint.route.operation_id == "get_transfer"
    endpoint, values = adapter.match("/v1/transfers/not-an-id", "GET")
    assert values == {"transaction_id": "not-an-id"}  # the guard's 404, after the token
