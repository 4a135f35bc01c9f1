"""The gateway's operations endpoints, against the whole running system."""
import json
import uuid

import pytest

from harness.servers import wait_for
from tests.support.api import new_session

pytestmark = pytest.mark.system

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def test_health_answers_ok(system):
    response = system.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_names_every_dependency_and_every_service_including_each_validator(system):
    response = system.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["unavailable"] == [] and body["degraded"] == []
    assert body["checks"] == {name: "ok" for name in [
        "rabbitmq", "postgresql", "redis", "kafka", "auth", "transactions",
        "validator_1", "validator_2", "validator_3", "payments", "ledger", "notifications"]}


def test_every_service_and_each_validator_runs_as_its_own_process(system):
    pids = system.process_ids()
    assert set(pids) == {"kafka", "gateway", "auth", "transactions", "validator_1",
                         "validator_2", "validator_3", "payments", "ledger", "notifications"}
    assert len(set(pids.values())) == len(pids)


def test_openapi_document_is_served(system):
    response = system.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert "/v1/transfers" in document["paths"]
    assert document["servers"] == [{"url": system.url}]


def test_a_method_a_route_does_not_take_is_a_405_problem(system):
    response = system.request("PUT", "/v1/payments/{}".format(uuid.uuid4()))
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/problem+json"
    assert PROBLEM_FIELDS <= set(response.json())


def test_unknown_paths_and_methods_are_problem_json(system):
    response = system.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    assert PROBLEM_FIELDS <= set(response.json())

    response = system.post("/health")
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_unknown_paths_and_methods_carry_the_request_id_and_are_counted(system):
    before = _samples(system.get("/metrics").text)
    mine = uuid.uuid4().hex
    response = system.get("/v1/no-such-thing", headers={"X-Request-ID": mine})
    assert response.status_code == 404 and response.headers["X-Request-ID"] == mine
    response = system.request("BREW", "/health")
    assert response.status_code == 405 and response.headers["X-Request-ID"]
    after = _samples(system.get("/metrics").text)
    for method, status in (("GET", "404"), ("OTHER", "405")):
        key = 'paysys_http_requests_total{{method="{}",route="unmatched",status="{}"}}'.format(
            method, status)
        assert after[key] - before.get(key, 0) == 1


def test_metrics_count_requests_by_route_and_status_with_latency_histograms(system):
    system.get("/health")
    system.get("/v1/no-such-thing")
    before = _samples(system.get("/metrics").text)
    for _ in range(3):
        system.get("/health")
    response = system.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    after = _samples(response.text)
    key = 'paysys_http_requests_total{method="GET",route="/health",status="200"}'
    assert after[key] - before[key] == 3
    bucket = ('paysys_http_request_duration_seconds_bucket'
              '{le="+Inf",method="GET",route="/health",status="200"}')
    assert after[bucket] - before[bucket] == 3


def test_the_correlation_id_of_a_request_reaches_the_logs_of_the_services_it_calls(system):
    # What an operator greps for one request: the gateway's access line and the batch of
    # the transactions service that decided its transfer (calls that went well log at
    # debug only: at hundreds a second, a line each cost more than the work).
    user = new_session(system)
    account = user.open_account()
    correlation_id = "test-" + uuid.uuid4().hex
    response = user.post("/v1/deposits", json={
        "account_id": account["id"], "amount": 500, "currency": "USD"}, headers={
        "Idempotency-Key": str(uuid.uuid4()), "X-Request-ID": correlation_id})
    assert response.status_code == 201 and response.headers["X-Request-ID"] == correlation_id
    for program, message in (("gateway", "POST /v1/deposits 201"),
                             ("transactions", "decided in")):
        mine = wait_for(lambda: _logged_under(system, program, correlation_id), timeout_s=10,
                        what="a log line of {} carrying {}".format(program, correlation_id))
        assert mine[0]["service"] == program and message in mine[0]["message"], mine


def _logged_under(system, program, correlation_id):
    """``program``'s log lines about ``correlation_id``: its own, or a batch carrying it."""
    return [entry for entry in map(json.loads, filter(None, system.log_lines(program)))
            if correlation_id in (entry.get("correlation_id"), entry.get("request_id"),
                                  *entry.get("request_ids", ()))]


def test_a_request_without_an_id_gets_one(system):
    first = system.get("/health").headers["X-Request-ID"]
    second = system.get("/health").headers["X-Request-ID"]
    assert first and second and first != second


def _samples(text):
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_every_problem_names_its_request_as_instance_and_a_replay_keeps_the_first(system):
    mine = "client-" + uuid.uuid4().hex
    response = system.get("/v1/no-such-thing", headers={"X-Request-ID": mine})
    assert response.json()["instance"] == response.headers["X-Request-ID"] == mine
    # Not a sane id (a space in it): the gateway gives the request one of its own.
    response = system.get("/v1/no-such-thing", headers={"X-Request-ID": "two words"})
    assert response.headers["X-Request-ID"] != "two words"
    assert response.json()["instance"] == response.headers["X-Request-ID"]

    alice = new_session(system)
    invalid = alice.post("/v1/accounts", json={"currency": "NOPE"})
    assert invalid.status_code == 422
    assert invalid.json()["instance"] == invalid.headers["X-Request-ID"]

    account = alice.open_account()
    key = str(uuid.uuid4())
    body = {"source_account_id": account["id"], "destination_account_id": str(uuid.uuid4()),
            "amount": 100, "currency": "USD"}
    first = alice.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    again = alice.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 404
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert first.json()["instance"] == first.headers["X-Request-ID"]
    assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]
