"""Property-based fuzzing of the public API from its own /openapi.json (schemathesis).

For each operation, schemathesis generates valid and invalid requests from the
document; every answer must be no 5xx and match what the document says (status code,
content type, headers and body schema).
"""
import itertools

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import new_session
from harness.sandbox import random_client_ip

pytestmark = pytest.mark.system

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
# Several callers, so the per-user rate limit (documented: 429) leaves most cases served.
CALLERS = 24


@pytest.fixture(scope="module")
def api_schema(system):
    return schemathesis.openapi.from_url(system.url + "/openapi.json")


@pytest.fixture(scope="module")
def callers(system):
    return itertools.cycle([new_session(system) for _ in range(CALLERS)])


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_5xx_and_every_answer_matches_the_document(case, callers):
    # A real caller's token, so the operations are explored past the 401.
    headers = dict(next(callers).headers, **{"X-Forwarded-For": random_client_ip()})
    case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
