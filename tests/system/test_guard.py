"""The gateway's guard, shared by every route: input, idempotency, rate limits, breakers."""
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.api import assert_problem, new_session
from chaos.servers import wait_for

pytestmark = pytest.mark.system


def _transfer_body(alice, **overrides):
    body = {"source_account_id": str(uuid.uuid4()), "destination_account_id": str(uuid.uuid4()),
            "amount": 100, "currency": "USD"}
    body.update(overrides)
    return body


# --- Input ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{", b'{"currency": "USD",}', b"\xff\xfe", b"{'a': 1}"])
def test_malformed_json_is_400(alice, raw):
    response = alice.post("/v1/accounts", data=raw,
                          headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "malformed_json")


def test_a_json_value_that_is_not_an_object_is_422(alice):
    assert_problem(alice.post("/v1/accounts", json=["USD"]), 422, "validation_error")


@pytest.mark.parametrize("amount", [1.5, 100.0, "100", True, 0, -5, 10**15 + 1, None])
def test_amounts_must_be_integers_in_range(alice, amount):
    response = alice.post("/v1/transfers", json=_transfer_body(alice, amount=amount),
                          headers={"Idempotency-Key": str(uuid.uuid4())})
    problem = assert_problem(response, 422, "validation_error")
    assert "amount" in problem["errors"]


@pytest.mark.parametrize("field,value", [("source_account_id", "acc-1"),
                                         ("destination_account_id", 42)])
def test_ids_in_a_body_must_be_well_formed(alice, field, value):
    response = alice.post("/v1/transfers", json=_transfer_body(alice, **{field: value}),
                          headers={"Idempotency-Key": str(uuid.uuid4())})
    assert field in assert_problem(response, 422, "validation_error")["errors"]


def test_a_money_moving_post_without_an_idempotency_key_is_400(alice):
    response = alice.post("/v1/transfers", json=_transfer_body(alice))
    assert_problem(response, 400, "idempotency_key_required")


@pytest.mark.parametrize("key", ["x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_idempotency_key_is_400(alice, key):
    response = alice.post("/v1/accounts", json={"currency": "USD"},
                          headers={"Idempotency-Key": key.encode("utf-8").decode("latin-1")})
    assert_problem(response, 400, "idempotency_key_invalid")


# --- Idempotency ------------------------------------------------------------------------


def test_the_same_key_and_body_replay_the_first_response(alice):
    key = str(uuid.uuid4())
    first = alice.post("/v1/accounts", json={"currency": "EUR"}, headers={"Idempotency-Key": key})
    again = alice.post("/v1/accounts", json={"currency": "EUR"}, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Location"] == first.headers["Location"]
    assert len(alice.get("/v1/accounts").json()["items"]) == 1


def test_the_same_key_with_another_body_is_422_and_changes_nothing(alice):
    key = str(uuid.uuid4())
    alice.post("/v1/accounts", json={"currency": "EUR"}, headers={"Idempotency-Key": key})
    response = alice.post("/v1/accounts", json={"currency": "GBP"},
                          headers={"Idempotency-Key": key})
    assert_problem(response, 422, "idempotency_key_reused")
    assert [a["currency"] for a in alice.get("/v1/accounts").json()["items"]] == ["EUR"]


def test_keys_are_scoped_to_the_user(system, alice):
    bob = new_session(system)
    key = str(uuid.uuid4())
    mine = alice.post("/v1/accounts", json={"currency": "EUR"}, headers={"Idempotency-Key": key})
    theirs = bob.post("/v1/accounts", json={"currency": "EUR"}, headers={"Idempotency-Key": key})
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["owner_id"] == bob.id != mine.json()["owner_id"]


def test_concurrent_first_uses_of_a_key_create_once(alice):
    key = str(uuid.uuid4())

    def attempt(_):
        return alice.post("/v1/accounts", json={"currency": "USD"},
                          headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(attempt, range(4)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {201, 409}, statuses
    created = {response.json()["id"] for response in responses if response.status_code == 201}
    assert len(created) == 1
    assert len(alice.get("/v1/accounts").json()["items"]) == 1


# --- Rate limits ------------------------------------------------------------------------


def _hammer(request, count, workers=8):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda _: request(), range(count)))


def test_one_client_ip_is_limited_with_retry_after(system):
    ip = "192.0.2.{}".format(uuid.uuid4().int % 250 + 1)
    responses = _hammer(lambda: system.get("/v1/users/me", headers={"X-Forwarded-For": ip}), 200)
    limited = [response for response in responses if response.status_code == 429]
    assert limited, [response.status_code for response in responses]
    assert_problem(limited[0], 429, "rate_limited")
    assert int(limited[0].headers["Retry-After"]) >= 1
    # Another client is not affected.
    assert system.get("/v1/users/me").status_code == 401


def test_one_user_is_limited_and_served_again_after_retry_after(alice):
    responses = _hammer(lambda: alice.get("/v1/users/me"), 120)
    limited = [response for response in responses if response.status_code == 429]
    assert limited, [response.status_code for response in responses]
    assert {response.status_code for response in responses} == {200, 429}
    time.sleep(int(limited[-1].headers["Retry-After"]))
    assert alice.get("/v1/users/me").status_code == 200


# --- Unavailable services ------------------------------------------------------------------


def test_a_stopped_service_is_a_503_with_retry_after_then_the_breaker_answers_at_once(
        system, alice):
    alice.open_account()
    system.supervisorctl("stop", "ledger")
    try:
        first = alice.get("/v1/accounts")
        assert_problem(first, 503, "service_unavailable")
        assert int(first.headers["Retry-After"]) >= 1
        alice.get("/v1/accounts")  # the second failure in a row opens the breaker
        started = time.monotonic()
        fast = alice.get("/v1/accounts")
        assert_problem(fast, 503, "circuit_open")
        assert time.monotonic() - started < 1.0  # no RPC deadline waited out
        assert int(fast.headers["Retry-After"]) >= 1
    finally:
        system.supervisorctl("start", "ledger")
    # Once it is back, a trial call after the breaker's pause closes it again.
    wait_for(lambda: alice.get("/v1/accounts").status_code == 200, timeout_s=30)
