"""Access lines and traces, as an operator reads them in the logs of a running system
that exports its spans over OTLP to a receiver of the test's own (real HTTP)."""
import json
import os
import re
import time
import uuid

import pytest

from harness.sandbox import System
from harness.servers import wait_for
from shared.logs import FLUSH_EVERY_S
from tests.support.api import new_session
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def otlp_receiver():
    """An OTLP/HTTP receiver: it keeps what the system POSTs to /v1/traces."""
    receiver = WebhookReceiver(path="/v1/traces").start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def system(tmp_path_factory, otlp_receiver):
    # The base address, as an operator sets it: each process adds /v1/traces.
    endpoint = otlp_receiver.url.rsplit("/v1/traces", 1)[0]
    running = System("observe_{}".format(os.getpid()), tmp_path_factory.mktemp("observe"),
                     redis_db=8, env={"PAYSYS_OTLP_ENDPOINT": endpoint})
    with running:
        yield running

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def _entries(system, program):
    return [json.loads(line) for line in system.log_lines(program) if line.strip()]


def _access_lines(system, request_id):
    return [entry for entry in _entries(system, "gateway")
            if entry.get("logger") == "gateway.access" and entry.get("request_id") == request_id]


def _one_access_line(system, request_id):
    """The access line of ``request_id``, once it is written; and there is one only."""
    lines = wait_for(lambda: _access_lines(system, request_id), timeout_s=10,
                     what="the access line of {}".format(request_id))
    assert len(lines) == 1, lines
    return lines[0]


def test_each_request_writes_one_access_line_with_route_status_user_and_client(system):
    user = new_session(system)
    account = user.open_account()
    request_id = "access-" + uuid.uuid4().hex
    response = user.get("/v1/accounts/{}".format(account["id"]), headers={
        "X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200
    line = _one_access_line(system, request_id)
    assert line["level"] == "info"
    assert (line["method"], line["route"], line["status"]) == (
        "GET", "/v1/accounts/{account_id}", 200)
    assert line["user_id"] == user.id
    # The address the per-IP rate limit counts: the sandbox trusts its loopback proxy.
    assert line["client_ip"] == "203.0.113.9"
    assert line["duration_ms"] >= 0
    assert line["trace_id"] == TRACEPARENT.match(response.headers["traceparent"]).group(1)

    anonymous_id = "access-" + uuid.uuid4().hex
    missing = system.get("/v1/nothing-here", headers={"X-Request-ID": anonymous_id,
                                                      "X-Forwarded-For": "198.51.100.4"})
    assert missing.status_code == 404
    line = _one_access_line(system, anonymous_id)
    assert (line["method"], line["route"], line["status"], line["user_id"],
            line["client_ip"]) == ("GET", "unmatched", 404, None, "198.51.100.4")


def test_successful_rpcs_are_not_logged_at_info(system):
    user = new_session(system)
    request_id = "rpc-" + uuid.uuid4().hex
    assert user.get("/v1/users/me", headers={"X-Request-ID": request_id}).status_code == 200
    _one_access_line(system, request_id)
    # Info lines reach a service's log within FLUSH_EVERY_S: one written would be there.
    time.sleep(2 * FLUSH_EVERY_S)
    auth_lines = [entry for entry in _entries(system, "auth")
                  if entry.get("correlation_id") == request_id]
    assert auth_lines == []


def test_a_traceparent_is_continued_into_the_services_behind_the_gateway(system):
    user = new_session(system)
    account = user.open_account()
    trace_id = uuid.uuid4().hex
    sent = "00-{}-{}-01".format(trace_id, uuid.uuid4().hex[:16])
    response = user.post("/v1/deposits", json={
        "account_id": account["id"], "amount": 250, "currency": "USD"}, headers={
        "Idempotency-Key": str(uuid.uuid4()), "traceparent": sent})
    assert response.status_code == 201, response.text
    answered = TRACEPARENT.match(response.headers["traceparent"])
    assert answered.group(1) == trace_id and answered.group(2) != sent.split("-")[2]

    def in_trace(program):
        return [entry for entry in _entries(system, program)
                if trace_id in (entry.get("trace_id"), *entry.get("trace_ids", ()))]

    access = wait_for(lambda: in_trace("gateway"), timeout_s=10, what="the gateway's line")
    assert access[0]["message"] == "POST /v1/deposits 201"
    # The transactions service decided it (its batch line joins the trace), and its
    # transaction.completed event reached notifications through the outbox relay.
    decided = wait_for(lambda: in_trace("transactions"), timeout_s=10,
                       what="a line of transactions in the trace")
    assert "decided in" in decided[0]["message"]
    accepted = wait_for(lambda: in_trace("notifications"), timeout_s=20,
                        what="a line of notifications in the trace")
    assert "events accepted" in accepted[0]["message"]


@pytest.mark.parametrize("header", [
    "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
])
def test_an_invalid_traceparent_starts_a_new_trace(system, header):
    response = system.get("/health", headers={"traceparent": header})
    answered = TRACEPARENT.match(response.headers["traceparent"])
    assert answered and answered.group(1) not in header


def test_a_request_without_a_traceparent_gets_a_trace_of_its_own(system):
    first = TRACEPARENT.match(system.get("/health").headers["traceparent"]).group(1)
    second = TRACEPARENT.match(system.get("/v1/none").headers["traceparent"]).group(1)
    assert first != second


def _exported_spans(receiver, trace_id):
    """``[(service, span)]`` of every span of ``trace_id`` the receiver got so far."""
    spans = []
    for request in list(receiver.received):
        for resource in json.loads(request.body)["resourceSpans"]:
            service = {attribute["key"]: attribute["value"]["stringValue"]
                       for attribute in resource["resource"]["attributes"]}["service.name"]
            for scope in resource["scopeSpans"]:
                spans.extend((service, span) for span in scope["spans"]
                             if span["traceId"] == trace_id)
    return spans


def test_spans_of_a_traced_request_are_exported_over_otlp_from_every_process_it_crossed(
        system, otlp_receiver):
    user = new_session(system)
    account = user.open_account()
    trace_id, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    response = user.post("/v1/deposits", json={
        "account_id": account["id"], "amount": 300, "currency": "USD"}, headers={
        "Idempotency-Key": str(uuid.uuid4()),
        "traceparent": "00-{}-{}-01".format(trace_id, client_span)})
    assert response.status_code == 201, response.text

    def exported():
        spans = _exported_spans(otlp_receiver, trace_id)
        services = {service for service, _ in spans}
        return spans if {"gateway", "transactions", "ledger"} <= services else None

    spans = wait_for(exported, timeout_s=20, what="spans of gateway, transactions and ledger")
    by_id = {span["spanId"]: (service, span) for service, span in spans}
    request = [span for service, span in spans if span["name"] == "POST /v1/deposits"]
    assert len(request) == 1
    assert request[0]["parentSpanId"] == client_span and request[0]["kind"] == 2
    assert response.headers["traceparent"].split("-")[2] == request[0]["spanId"]
    attributes = {a["key"]: a["value"] for a in request[0]["attributes"]}
    assert attributes["http.route"] == {"stringValue": "/v1/deposits"}
    assert attributes["http.response.status_code"] == {"intValue": "201"}
    # Every other span of the trace hangs off one the receiver got, up to the request's.
    for service, span in spans:
        if span is request[0]:
            continue
        assert span["parentSpanId"] in by_id, (service, span)
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > 0
