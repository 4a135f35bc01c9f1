"""Every service process serves its metrics and liveness on a port of its own
(shared/metrics), against the whole running system."""
import re
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.servers import wait_for
from tests.support.api import assert_problem, new_session
from tests.support.gateway import another_gateway

pytestmark = pytest.mark.system

PROCESSES = ["auth", "transactions", "validator_1", "validator_2", "validator_3", "payments",
             "ledger", "notifications", "gateway"]


def samples(text):
    """``{(sample name, frozenset of labels): value}`` of a Prometheus text page."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(page, name, **labels):
    return page.get((name, frozenset(labels.items())))


def names(page):
    return {name for name, _ in page}


@pytest.fixture(scope="module")
def after_a_transfer(system):
    """A deposit and a transfer went through; every process's page read afterwards."""
    user = new_session(system)
    source, destination = user.open_account(), user.open_account()
    for path, body in (("/v1/deposits", {"account_id": source["id"], "amount": 5_000}),
                       ("/v1/transfers", {"source_account_id": source["id"],
                                          "destination_account_id": destination["id"],
                                          "amount": 1_200})):
        response = user.post(path, json=dict(body, currency="USD"),
                             headers={"Idempotency-Key": str(uuid.uuid4())})
        assert response.status_code == 201 and response.json()["status"] == "completed", \
            response.text

    def relayed():
        # The outboxes' relays have sent the transfer's events and Kafka messages. A
        # readiness probe asks every service for its health (an earlier test may have
        # restarted one, which starts its counts afresh).
        system.get("/ready")
        pages = {name: samples(system.metrics(name).text) for name in PROCESSES}
        ledger = value(pages["ledger"], "paysys_outbox_rows_waiting", outbox="ledger.outbox")
        events = value(pages["transactions"], "paysys_outbox_rows_waiting",
                       outbox="transactions.outbox")
        return pages if ledger == 0 and events == 0 else None

    return wait_for(relayed, timeout_s=60, interval_s=1, what="outboxes relayed")


def test_each_process_has_a_port_of_its_own_apart_from_the_api_port(system):
    ports = system.metrics_ports()
    assert list(ports) == PROCESSES
    assert len(set(ports.values())) == len(PROCESSES)
    assert system.port not in ports.values()


@pytest.mark.parametrize("process", PROCESSES)
def test_every_process_answers_livez_and_serves_its_process_metrics(system, after_a_transfer,
                                                                    process):
    livez = system.metrics(process, "/livez")
    assert livez.status_code == 200 and livez.text == "alive\n"
    page = after_a_transfer[process]
    assert value(page, "process_resident_memory_bytes") > 0
    assert value(page, "process_cpu_seconds_total") > 0
    assert not [name for name in names(page) if name.endswith("_created")]


@pytest.mark.parametrize("process", [name for name in PROCESSES if name != "gateway"])
def test_every_service_times_the_rpcs_it_served(after_a_transfer, process):
    # The gateway's readiness probe asks every service for its health.
    served = value(after_a_transfer[process], "paysys_rpc_duration_seconds_count",
                   service=process, method="health")
    assert served >= 1


def test_the_money_path_shows_in_each_service_it_crossed(after_a_transfer):
    pages = after_a_transfer
    assert value(pages["auth"], "paysys_rpc_duration_seconds_count",
                 service="auth", method="login") >= 1
    assert value(pages["transactions"], "paysys_rpc_duration_seconds_count",
                 service="transactions", method="submit_many") >= 2
    assert value(pages["transactions"], "paysys_transaction_decisions_total",
                 outcome="approve", reason="none") >= 2
    assert value(pages["transactions"], "paysys_transaction_decision_duration_seconds_count") >= 2
    assert value(pages["transactions"], "paysys_transactions_finished_total",
                 status="completed", reason="none") >= 2
    assert value(pages["transactions"], "paysys_transactions_pending") is not None
    assert value(pages["transactions"], "paysys_outbox_oldest_age_seconds",
                 outbox="transactions.outbox") == 0
    for validator in ("validator_1", "validator_2", "validator_3"):
        assert value(pages[validator], "paysys_validator_votes_total",
                     decision="approve", reason="none") >= 1
    assert value(pages["ledger"], "paysys_rpc_duration_seconds_count",
                 service="ledger", method="post") >= 2
    assert value(pages["ledger"], "paysys_outbox_rows_relayed_total",
                 outbox="ledger.outbox") >= 4
    assert value(pages["payments"], "paysys_outbox_rows_waiting",
                 outbox="payments.outbox") == 0
    assert value(pages["notifications"], "paysys_notification_deliveries_pending",
                 channel="webhook") is not None
    assert value(pages["notifications"], "paysys_notification_deliveries_overdue_seconds",
                 channel="webhook") is not None
    assert value(pages["gateway"], "paysys_http_requests_total",
                 method="POST", route="/v1/transfers", status="201") >= 1
    # The gateway's calls to auth went through a circuit breaker, closed.
    assert value(pages["gateway"], "paysys_circuit_breaker_state", target="auth") == 0


def test_an_rpc_refused_is_a_client_error_of_its_method(system):
    response = system.post("/v1/auth/login", json={"email": "nobody-{}@example.test".format(
        uuid.uuid4().hex[:8]), "password": "not the password at all"})
    assert response.status_code == 401
    page = samples(system.metrics("auth").text)
    refused = [labels for (name, labels), count in page.items()
               if name == "paysys_rpc_errors_total" and ("method", "login") in labels
               and count >= 1]
    assert refused and ("kind", "client_error") in refused[0], refused


def test_the_api_ports_metrics_are_the_gateway_processs_own(system):
    api_page = system.get("/metrics")
    assert api_page.status_code == 200
    assert "paysys_http_requests_total" in api_page.text
    assert "process_resident_memory_bytes" in api_page.text


def test_production_switches_the_api_ports_metrics_off(system):
    with another_gateway(system, PAYSYS_GATEWAY_API_METRICS="false") as gateway:
        assert_problem(gateway.get("/metrics"), 404, "not_found")
        assert gateway.get("/health").status_code == 200


def test_paysys_ps_shows_each_processs_answer_to_livez(system):
    listing = system.paysys("ps", check=False).stdout
    ports = system.metrics_ports()
    for process in PROCESSES:
        assert re.search(r"^  {}\s+127\.0\.0\.1:{}\s+live$".format(process, ports[process]),
                         listing, re.MULTILINE), listing
