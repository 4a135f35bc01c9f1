"""Schemathesis hooks for fuzzing this API from its document (``SCHEMATHESIS_HOOKS=
tests.support.fuzz_hooks st run ...``; tests/system/test_fuzz_openapi.py loads them too).
They say what the document cannot, nothing more.

Metadata keys are drawn within their documented limit (``x-propertyNames``: at most 40
characters, no NUL): OpenAPI 3.0 has no keyword for what an object's keys may be, so a
fuzzer reading it draws any string, and the server refuses a longer key, as the contract says.

A well-formed Idempotency-Key of a schema-valid request is made unique. A fuzzer draws keys from
the documented syntax, so it sends the same short key ("0") with different bodies, which the
contract answers 422 idempotency_key_reused (API.md; the IETF Idempotency-Key draft says the
same): a refusal the document cannot express, since it depends on what was sent before. A
key outside the syntax is left as drawn, so the server's refusal of malformed keys is still
tested.
"""
import re
import uuid

import schemathesis

HEADER = "Idempotency-Key"
# The documented pattern (gateway/openapi.py), kept here so an outside run needs no import
# of the gateway.
KEY_PATTERN = re.compile(r"^[!-~](?:[ -~]{0,253}[!-~])?$")


@schemathesis.hook
def before_call(context, case, kwargs):
    # Schema-valid cases only: a schema-violating one is refused before its key is looked at
    # (the guard checks the token, the path, the query and the body first), and editing it
    # would make schemathesis judge it again as if it were valid.
    meta = getattr(case, "meta", None)
    if meta is not None and not meta.generation.mode.is_positive:
        return
    headers = case.headers or {}
    key = headers.get(HEADER)
    if isinstance(key, str) and KEY_PATTERN.match(key):
        headers[HEADER] = unique_key(key)


def unique_key(key):
    """``key`` made unique, still of the documented syntax (at most 255 characters)."""
    return "{}.{}".format(key[:200], uuid.uuid4().hex)


MAX_METADATA_KEY_LENGTH = 40


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, dict):
        _bound_metadata_keys(body)
        for item in body.get("transfers") or ():
            _bound_metadata_keys(item)
    return body


def _bound_metadata_keys(item):
    metadata = item.get("metadata") if isinstance(item, dict) else None
    if isinstance(metadata, dict):
        item["metadata"] = {key.replace("\x00", "")[:MAX_METADATA_KEY_LENGTH]: value
                            for key, value in metadata.items()}
