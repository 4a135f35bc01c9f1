"""The OpenAPI 3.0 document of the gateway, generated from the route table and its schemas.

It says everything the server checks, so that a client (or a fuzzer) that follows it is never
refused for the request's shape: patterns (cursors, the Idempotency-Key, text without NUL),
lengths, ranges and the metadata limits. The headers every answer carries are declared
(X-Request-ID everywhere, Location on creates, Retry-After on 429 and 503, WWW-Authenticate on
401, Idempotent-Replayed where keys are honoured), and links lead from each create to the
operations that read what it made. Request schemas refuse unknown fields
(``additionalProperties: false``); response schemas do not, so a client generated from the
document keeps working when a field is added.
"""
from http import HTTPStatus

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls

from gateway import problems, schemas
from gateway.openapi_text import DESCRIPTIONS, EXAMPLES
from gateway.routes import ROUTES
from shared.commands import MAX_METADATA_KEY_LENGTH

PROBLEM_JSON = "application/problem+json"
SCHEMA_REF = "#/components/schemas/"

# Printable ASCII, 1-255 characters, neither starting nor ending with a space (HTTP drops
# spaces around a header's value, so they could never arrive).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]{0,253}[!-~])?$"
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "1–255 printable ASCII characters, scoped to the caller. The same key with "
    "the same body replays the first response (header Idempotent-Replayed: true); with a "
    "different body it is 422 idempotency_key_reused; while the first request is in flight, "
    "409 idempotency_key_in_flight.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
               "pattern": IDEMPOTENCY_KEY_PATTERN},
    "example": "3f0c2a9e-7b1d-4c55-a2e4-9d8f6b1c0e7a",
}
OPTIONAL_IDEMPOTENCY_KEY = dict(
    IDEMPOTENCY_KEY, required=False,
    description="Optional here: 1–255 printable ASCII characters, scoped to the caller; a "
    "retry with the same key and body replays the first response instead of creating twice.")

REQUEST_ID = {"X-Request-ID": {
    "description": "The request's id: the client's own X-Request-ID when it sent a sane one "
    "(1-128 visible ASCII characters), else a new one. Problems carry it as instance.",
    "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 128}}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying",
                               "required": True, "schema": {"type": "integer", "minimum": 0}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {
    "description": 'The Bearer challenge (RFC 6750): Bearer realm="paysys", with '
    'error="invalid_token" when a token was sent and refused.',
    "required": True, "schema": {"type": "string"}}}
LOCATION = {"Location": {"description": "Where to read what was made (or poll a pending one)",
                         "required": True, "schema": {"type": "string"}}}
REPLAYED = {"Idempotent-Replayed": {
    "description": "true when this is the stored answer to an earlier request with the same "
    "Idempotency-Key", "required": False, "schema": {"type": "string", "enum": ["true"]}}}
ALLOW = {"Allow": {"description": "The methods the path takes", "required": True,
                   "schema": {"type": "string"}}}

# Answers that are not JSON: their media type, and an example.
PLAIN_BODIES = {
    "metrics": ("text/plain", "# HELP paysys_http_requests_total HTTP requests answered\n"),
    "openapi": ("application/json", {"openapi": "3.0.3", "info": {
        "title": "Payment system API", "version": "1.1.0"}, "paths": {}}),
    "problem_types": ("text/markdown", "# Problem types\n\n- [`not_found`](/problems/not_found)"
                                       " (404): Not found\n"),
    "problem_type": ("text/markdown", problems.page(problems.BY_CODE["not_found"])),
}

# operation -> {status: {link name: (operation it leads to, {parameter: expression})}}.
# For schemathesis' stateful phase as for readers: what a create made can be read at once.
_ID = "$response.body#/id"
LINKS = {
    "register": {201: {"LogIn": ("login", None)}},
    "create_account": {201: {"GetAccount": ("get_account", {"account_id": _ID}),
                             "ListEntries": ("list_entries", {"account_id": _ID}),
                             "ListTransactionsOfAccount": ("list_transactions",
                                                           {"account_id": _ID})}},
    "create_payment": {201: {"GetPayment": ("get_payment", {"payment_id": _ID}),
                             "CapturePayment": ("capture_payment", {"payment_id": _ID}),
                             "VoidPayment": ("void_payment", {"payment_id": _ID}),
                             "RefundPayment": ("refund_payment", {"payment_id": _ID})}},
    "transfer_batch": {status: {"GetBatch": ("get_transfer_batch", {"batch_id": _ID})}
                       for status in (201, 202)},
    "create_webhook": {201: {"DeleteWebhook": ("delete_webhook", {"webhook_id": _ID})}},
}
for _moves in ("deposit", "withdraw", "transfer"):
    LINKS[_moves] = {status: {
        "GetTransfer": ("get_transfer", {"transaction_id": _ID}),
        "GetTransaction": ("get_transaction", {"transaction_id": _ID})} for status in (201, 202)}
# The login a registration leads to takes the e-mail and password just registered.
LOGIN_BODY = {"email": "$request.body#/email", "password": "$request.body#/password"}

# Operations whose success sets Location.
LOCATED = {"create_account", "deposit", "withdraw", "transfer", "transfer_batch",
           "create_payment"}


def _schema_name(schema):
    return resolve_schema_cls(schema).__name__


def _example_of(schema):
    return EXAMPLES.get(_schema_name(schema)) if schema is not None else None


def _path_parameter(route, name):
    if name == "code":
        return {"name": name, "in": "path", "required": True,
                "description": "An error code (GET /problems lists them).",
                "schema": {"type": "string", "enum": sorted(problems.BY_CODE)},
                "example": "insufficient_funds"}
    return {"name": name, "in": "path", "required": True,
            "description": "The {}'s id.".format(name[:-3].replace("_", " ")),
            "schema": {"type": "string", "format": "uuid"},
            "example": "6c1a2f0e-3b8d-4e55-9a4f-1f2e3d4c5b6a"}


def _description(route):
    # A route without its prose yet still gets a document (the unit test asks for the prose).
    text = DESCRIPTIONS.get(route.operation_id, route.summary + ".")
    if route.roles:
        text += " Roles: {}.".format(", ".join(route.roles))
    return text


def _success(route, status, description, schema):
    response = {"description": description, "headers": dict(REQUEST_ID)}
    if schema is not None:
        media = {"schema": schema}
        example = _example_of(schema)
        if example is not None:
            media["example"] = example
        # An error answer described by its own schema (/ready's 503) is problem+json too.
        response["content"] = {PROBLEM_JSON if status >= 400 else "application/json": media}
    elif route.operation_id in PLAIN_BODIES:
        media_type, example = PLAIN_BODIES[route.operation_id]
        media = {"schema": {"type": "object"} if media_type == "application/json"
                 else {"type": "string"}}
        if example is not None:
            media["example"] = example
        response["content"] = {media_type: media}
    if route.operation_id == "ready" and status == 503:
        response["headers"].update(RETRY_AFTER)
    if route.operation_id in LOCATED and status in (201, 202):
        response["headers"].update(LOCATION)
    if route.moves_money or route.idempotent:
        response["headers"].update(REPLAYED)
    links = LINKS.get(route.operation_id, {}).get(status)
    if links:
        response["links"] = {}
        for name, (operation_id, parameters) in links.items():
            link = {"operationId": operation_id}
            if parameters:
                link["parameters"] = parameters
            if operation_id == "login":
                link["requestBody"] = LOGIN_BODY
            response["links"][name] = link
    return response


def _error(route, status):
    response = {
        "description": HTTPStatus(status).phrase,
        "headers": dict(REQUEST_ID),
        "content": {PROBLEM_JSON: {"schema": "Problem", "example": _problem_example(status)}},
    }
    if status in (429, 503):
        response["headers"].update(RETRY_AFTER)
    if status == 401:
        response["headers"].update(WWW_AUTHENTICATE)
    if route.moves_money or route.idempotent:
        response["headers"].update(REPLAYED)  # a 4xx answer is replayed too
    return response


def _problem_example(status):
    code = problems.FALLBACK_BY_STATUS.get(status, "internal_error")
    problem = problems.BY_CODE[code]
    return {"type": problem.type, "title": problem.title, "status": status,
            "detail": problem.meaning, "code": code,
            "instance": "6f1c0e9a4b7d4c0e8a51f2d3c4b5a697"}


def _operation(route):
    operation = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": _description(route),
        "tags": [route.tag],
        "security": [{"bearerAuth": []}] if route.auth else [],
        "responses": {},
    }
    parameters = [_path_parameter(route, name) for name in route.path_params]
    if route.query is not None:
        parameters.append({"in": "query", "schema": route.query})
    if route.moves_money:
        parameters.append(IDEMPOTENCY_KEY)
    elif route.idempotent:
        parameters.append(OPTIONAL_IDEMPOTENCY_KEY)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        media = {"schema": route.body}
        example = _example_of(route.body)
        if example is not None:
            media["example"] = example
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    for status, (description, schema) in route.responses.items():
        operation["responses"][str(status)] = _success(route, status, description, schema)
    for status in route.error_statuses():
        if str(status) not in operation["responses"]:
            operation["responses"][str(status)] = _error(route, status)
    return operation


def build_spec(server_url):
    """The OpenAPI document of every route, served at ``server_url``."""
    spec = APISpec(
        title="Payment system API",
        version="1.1.0",
        # 3.0, whose schemas read as JSON Schema draft 4: there 2.0 is no integer, as the
        # contract says (a float amount is a 422); 3.1's 2020-12 would count it as one.
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)],
        info={"description": "The gateway's HTTP contract. Errors are application/problem+json "
              "with a stable `code`; each code's `type` URI (/problems/<code>) documents it."},
        servers=[{"url": server_url}],
    )
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    spec.components.schema("Problem", schema=schemas.Problem)
    paths = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _finish_schemas(document)
    return document


def _finish_schemas(document):
    """What apispec cannot say from the marshmallow schemas alone."""
    components = document["components"]["schemas"]
    requests = _request_schema_names(document)
    for name, schema in components.items():
        if name not in requests and schema.get("additionalProperties") is False:
            del schema["additionalProperties"]  # responses may grow new fields
        for prop in schema.get("properties", {}).values():
            if prop.pop("x-metadata", False):
                _metadata_limits(prop)
        if name in EXAMPLES:
            schema.setdefault("example", EXAMPLES[name])


def _metadata_limits(prop):
    """A metadata object: at most N keys (marshmallow's Length on a Dict reads as a string's
    maxLength to apispec). OpenAPI 3.0 has no keyword for what keys may be, so their limit
    is said in the description and in ``x-propertyNames``, the JSON Schema it would be."""
    prop["maxProperties"] = prop.pop("maxLength")
    prop["x-propertyNames"] = {"type": "string", "maxLength": MAX_METADATA_KEY_LENGTH,
                               "pattern": schemas.NO_NUL_PATTERN}


def _request_schema_names(document):
    """The component schemas a request body refers to, directly or through another."""
    components = document["components"]["schemas"]
    names, pending = set(), []
    for operations in document["paths"].values():
        for operation in operations.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                pending.extend(_refs(media["schema"]))
    while pending:
        name = pending.pop()
        if name not in names:
            names.add(name)
            pending.extend(_refs(components[name]))
    return names


def _refs(node):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMA_REF):
            yield ref[len(SCHEMA_REF):]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)

