"""The OpenAPI 3 document of the gateway, generated from the route table and its schemas."""
from http import HTTPStatus

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls

from gateway import schemas
from gateway.routes import ROUTES

PROBLEM_JSON = "application/problem+json"

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "1–255 printable characters, scoped to the caller. The same key with the "
    "same body replays the first response (header Idempotent-Replayed: true); with a "
    "different body it is 422; while the first request is in flight, 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
OPTIONAL_IDEMPOTENCY_KEY = dict(
    IDEMPOTENCY_KEY, required=False,
    description="Optional here: 1–255 printable characters, scoped to the caller; a retry "
    "with the same key and body replays the first response instead of creating twice.")
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "The Bearer challenge",
                                         "schema": {"type": "string"}}}


def _schema_name(schema):
    return resolve_schema_cls(schema).__name__


def _operation(route):
    operation = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "responses": {},
    }
    if route.auth:
        operation["security"] = [{"bearerAuth": []}]
    else:
        operation["security"] = []
    if route.roles:
        operation["description"] = "Roles: {}.".format(", ".join(route.roles))
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.path_params
    ]
    if route.query is not None:
        parameters.append({"in": "query", "schema": route.query})
    if route.moves_money:
        parameters.append(IDEMPOTENCY_KEY)
    elif route.idempotent:
        parameters.append(OPTIONAL_IDEMPOTENCY_KEY)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.body}},
        }
    for status, (description, schema) in route.responses.items():
        response = {"description": description}
        if schema is not None:
            media_type = PROBLEM_JSON if status >= 400 else "application/json"
            response["content"] = {media_type: {"schema": schema}}
        if status == 503:
            response["headers"] = RETRY_AFTER
        if route.moves_money or route.idempotent:
            response["headers"] = {
                "Idempotent-Replayed": {
                    "description": "true when this is the stored first response",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            }
        operation["responses"][str(status)] = response
    for status in route.error_statuses():
        response = {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": "Problem"}},
        }
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        if status == 401:
            response["headers"] = WWW_AUTHENTICATE
        operation["responses"][str(status)] = response
    return operation


def build_spec(server_url):
    """The OpenAPI document of every route, served at ``server_url``."""
    spec = APISpec(
        title="Payment system API",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)],
        info={"description": "The gateway's HTTP contract. Errors are application/problem+json."},
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
    return spec.to_dict()
