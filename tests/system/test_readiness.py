"""/ready follows the design, on a system of its own: what the money path does without
(Redis, Kafka, one validator) leaves it 200 "degraded" and named; what it needs
(PostgreSQL, a quorum of validators) makes it a 503 problem naming the cause.

The shared Redis and PostgreSQL are never touched: this system's Redis URL points at a
port where nothing listens, and it reaches PostgreSQL through a proxy the test cuts."""
import os

import pytest

from harness import servers
from harness.proxy import TcpProxy
from harness.sandbox import System
from harness.servers import wait_for
from tests.support.api import PROBLEM_JSON, new_session

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def database_proxy():
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def system(tmp_path_factory, database_proxy):
    label = "ready_{}".format(os.getpid())
    dead_redis = "redis://127.0.0.1:{}/0".format(servers.free_port())
    running = System(label, tmp_path_factory.mktemp("ready"), redis_db=9, env={
        "PAYSYS_REDIS_URL": dead_redis,
        "PAYSYS_DATABASE_URL": "postgresql://postgres@127.0.0.1:{}/paysys_{}".format(
            database_proxy.port, label),
        # Each probe sees the system as it is now, not a second ago.
        "PAYSYS_READINESS_CACHE_MS": "0",
    })
    with running:
        yield running


def _ready(system):
    response = system.get("/ready", timeout=30)
    return response.status_code, response


def _until(system, predicate, what):
    """The /ready response once ``predicate(status, body)`` holds."""
    def check():
        status, response = _ready(system)
        # A list: a 503 Response is falsy itself.
        return [response] if predicate(status, response.json()) else None

    return wait_for(check, timeout_s=90, interval_s=1, what=what)[0]


def _degraded_by(names):
    return lambda status, body: status == 200 and set(body["degraded"]) == set(names)


def test_a_dead_redis_leaves_the_gateway_serving_and_ready_degraded(system):
    response = _until(system, _degraded_by(["redis"]), "/ready degraded by redis alone")
    body = response.json()
    assert body["status"] == "degraded" and body["unavailable"] == []
    assert body["checks"]["redis"] != "ok" and body["checks"]["postgresql"] == "ok"
    status = system.paysys("status", check=False)
    assert status.returncode == 0 and "degraded: redis" in status.stdout, status.stdout
    # Rate limits fail open: money still moves.
    user = new_session(system)
    account = user.open_account()
    deposit = user.post("/v1/deposits", json={
        "account_id": account["id"], "amount": 700, "currency": "USD"},
        headers={"Idempotency-Key": os.urandom(8).hex()})
    assert deposit.status_code == 201 and deposit.json()["status"] == "completed", deposit.text


def test_status_details_each_dependency_and_process_for_staff_only(system):
    auditor = new_session(system, role="auditor")
    response = auditor.get("/v1/status")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded" and body["degraded"] == ["redis"]
    redis = body["dependencies"]["redis"]
    assert (redis["state"], redis["role"]) == ("down", "optional") and redis["error"]
    assert body["dependencies"]["postgresql"]["state"] == "ok"
    assert body["dependencies"]["postgresql"]["role"] == "required"
    ledger = body["processes"]["ledger"]
    assert ledger["state"] == "ok" and ledger["error"] is None and ledger["latency_ms"] >= 0
    assert ledger["detail"]["schema_version"]
    assert body["quorum"] == {"pool": 3, "needed": 2, "answering": 3}

    customer = new_session(system)
    assert customer.get("/v1/status").status_code == 403
    assert system.get("/v1/status").status_code == 401


def test_kafka_and_one_validator_down_are_degraded_two_validators_down_is_503(system):
    system.supervisorctl("stop", "kafka")
    system.supervisorctl("stop", "validator_2")
    try:
        response = _until(system, _degraded_by(["redis", "kafka", "validator_2"]),
                          "/ready degraded by redis, kafka and validator_2")
        assert response.json()["unavailable"] == []

        system.supervisorctl("stop", "validator_3")
        response = _until(system, lambda status, body: status == 503,
                          "/ready 503 without a quorum")
        assert response.headers["Content-Type"] == PROBLEM_JSON
        assert int(response.headers["Retry-After"]) > 0
        body = response.json()
        assert body["status"] == 503 and body["code"] == "service_unavailable"
        assert body["unavailable"] == ["validator_2", "validator_3"]
        assert "validator_2" in body["detail"] and "validator_3" in body["detail"]
        assert set(body["degraded"]) == {"redis", "kafka"}
    finally:
        for program in ("validator_3", "validator_2", "kafka"):
            system.supervisorctl("start", program)
    _until(system, _degraded_by(["redis"]), "/ready degraded by redis alone again")


def test_postgresql_cut_is_503_naming_it_and_ready_again_once_healed(system, database_proxy):
    _until(system, _degraded_by(["redis"]), "/ready degraded by redis alone")
    database_proxy.cut()
    try:
        response = _until(system, lambda status, body: status == 503,
                          "/ready 503 with PostgreSQL cut")
        body = response.json()
        assert "postgresql" in body["unavailable"]
        assert body["checks"]["postgresql"] != "ok"
        assert "postgresql" in body["detail"]
    finally:
        database_proxy.heal()
    _until(system, _degraded_by(["redis"]), "/ready back to degraded by redis alone")
