"""Turning an HTTP request into validated values, or into a 4xx problem.

A body sent as anything but JSON is 415 ``unsupported_media_type``; malformed JSON is 400
``malformed_json``; JSON that breaks the route's schema
(unknown fields included, so ``balance``, ``owner_id`` or ``roles`` in a body
are refused, never silently dropped) is 422 ``validation_error`` with the
messages per field; a malformed id in the path is 404, like an unknown one.
"""
import functools
import ipaddress
import json
import uuid

from marshmallow import ValidationError

from shared.errors import BadRequest, NotFound, UnsupportedMediaType, ValidationFailed
from shared.wire_json import compact, parse


@functools.lru_cache(maxsize=None)
def schema(schema_class):
    """One instance per schema: loading keeps no state in it, and building one costs more
    than the load itself."""
    return schema_class()


def _plain(value):
    """Loaded values as JSON types (UUIDs and dates as strings), ready for an RPC."""
    return parse(compact(value, default=str))


def is_json(mimetype):
    """``application/json`` or a JSON-based type (``application/problem+json``)."""
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json"))


def sent_content_type(request):
    """Whether the client sent a Content-Type header. Eventlet's server fills in
    ``text/plain`` for a request without one (its raw headers still tell)."""
    raw_headers = request.environ.get("headers_raw")
    if raw_headers is not None:
        return any(name.lower() == "content-type" for name, _ in raw_headers)
    return bool(request.environ.get("CONTENT_TYPE"))


def load_body(route, request):
    raw = request.get_data(cache=True)
    # A body is read as JSON when it says so, or says nothing (a bare ``curl --data-binary``
    # or a client that forgets the header still means JSON here: every body of this API is);
    # one that says it is something else (a form, text) is refused, not guessed at.
    if raw.strip() and sent_content_type(request) and not is_json(request.mimetype):
        raise UnsupportedMediaType(
            "The body is {}; send it as JSON with Content-Type: application/json.".format(
                request.mimetype))
    if raw.strip():
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BadRequest("The body is not valid JSON: {}".format(exc), code="malformed_json")
    else:
        data = {}
    if route.body is None:
        if data != {}:
            raise ValidationFailed("This operation takes no body.",
                                   errors={"_schema": ["No body is accepted here."]})
        return {}
    try:
        return _plain(schema(route.body).load(data))
    except ValidationError as exc:
        raise ValidationFailed("The request body is not valid.", errors=flat(exc.messages))


def flat(messages, prefix=""):
    """Marshmallow's nested messages keyed by dotted paths: ``{"transfers": {3: {"amount":
    [...]}}}`` becomes ``{"transfers.3.amount": [...]}``."""
    if not isinstance(messages, dict):
        return {prefix or "_schema": messages}
    flattened = {}
    for name, value in messages.items():
        path = "{}.{}".format(prefix, name) if prefix else str(name)
        if isinstance(value, dict):
            flattened.update(flat(value, path))
        else:
            flattened[path] = value
    return flattened


def load_query(route, request):
    args = request.args
    repeated = sorted(name for name in args if len(args.getlist(name)) > 1)
    if repeated:
        raise ValidationFailed("Query parameters given more than once.",
                               errors={name: ["Give it once."] for name in repeated})
    if route.query is None:
        if args:
            raise ValidationFailed("This operation takes no query parameters.",
                                   errors={name: ["Unknown field."] for name in args})
        return {}
    try:
        return _plain(schema(route.query).load(args.to_dict()))
    except ValidationError as exc:
        raise ValidationFailed("The query parameters are not valid.", errors=exc.messages)


def load_path(route, path_values):
    """Every path parameter is an id: a malformed one names nothing, so it is a 404."""
    ids = {}
    for name in route.path_params:
        try:
            ids[name] = str(uuid.UUID(path_values[name]))
        except (KeyError, ValueError):
            raise NotFound("No such {}.".format(name.replace("_id", "").replace("_", " ")))
    return ids


def client_ip(request, trusted_proxies):
    """The client's address: the peer's, unless the peer is a trusted proxy, in which case
    the nearest address in X-Forwarded-For that is not one of ours."""
    peer = request.remote_addr or ""
    if peer not in trusted_proxies:
        return peer
    forwarded = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(forwarded):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            break  # a forged or garbled hop: stop believing the header here
        if address not in trusted_proxies:
            return address
    return peer


def trusted_proxies(config):
    """The addresses of config's ``gateway.trusted_proxies``, read through the gateway's
    settings model."""
    from gateway.settings import GatewaySettings
    from shared.settings import load

    return frozenset(load(GatewaySettings, config).gateway.trusted_proxies)
