"""The gateway's guard, shared by every route: input, idempotency, rate limits, breakers."""
import uuid
from concurrent.futures import ThreadPoolExecutor

import kombu
import pytest

from tests.support.api import assert_problem, new_session
from tests.support.gateway import another_gateway
from harness.servers import wait_for

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


@pytest.mark.parametrize("content_type,raw", [
    ("text/plain", b'{"currency": "USD"}'),
    ("application/x-www-form-urlencoded", b"currency=USD"),
    ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"'
                                        b'\r\n\r\nUSD\r\n--x--\r\n'),
])
def test_a_body_that_is_not_json_is_415_and_opens_nothing(alice, content_type, raw):
    response = alice.post("/v1/accounts", data=raw, headers={"Content-Type": content_type})
    problem = assert_problem(response, 415, "unsupported_media_type")
    assert problem["type"] == "/problems/unsupported_media_type"
    assert alice.get("/v1/accounts").json()["items"] == []


def test_a_json_body_without_a_content_type_is_read_as_json(alice):
    response = alice.post("/v1/accounts", data=b'{"currency": "EUR"}')
    assert "Content-Type" not in response.request.headers
    assert response.status_code == 201, response.text
    assert response.json()["currency"] == "EUR"


def test_a_problem_type_resolves_to_its_documentation(system, alice):
    problem = assert_problem(alice.get("/v1/accounts/" + str(uuid.uuid4())), 404, "not_found")
    page = system.get(problem["type"])
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/markdown")
    assert "`not_found`" in page.text and "Not found" in page.text
    assert "/problems/insufficient_funds" in system.get("/problems").text
    assert_problem(system.get("/problems/no_such_code"), 404, "not_found")


def test_the_routers_404_and_405_have_the_codes_type_and_title(system):
    assert_problem(system.get("/v1/nowhere"), 404, "not_found")
    response = system.request("PUT", "/v1/accounts")
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


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


# --- Rate limits ---------------------------------------------------------------------------
# A gateway of the system with limits a few requests exhaust, refilled once an hour: which
# request is refused follows from the counts alone, however slowly this machine sends them.
# How a bucket refills with time is the limiter's own test (tests/unit/test_rate_limiter.py,
# with a clock the test moves).

IP_BURST, USER_BURST = 5, 3
ONCE_AN_HOUR = str(1 / 3600)


@pytest.fixture(scope="module")
def strict_gateway(system):
    with another_gateway(system, PAYSYS_RATE_LIMIT_IP_PER_S=ONCE_AN_HOUR,
                         PAYSYS_RATE_LIMIT_IP_BURST=str(IP_BURST),
                         PAYSYS_RATE_LIMIT_USER_PER_S=ONCE_AN_HOUR,
                         PAYSYS_RATE_LIMIT_USER_BURST=str(USER_BURST)) as gateway:
        yield gateway


def test_one_client_ip_is_limited_with_retry_after(strict_gateway):
    ip = "192.0.2.{}".format(uuid.uuid4().int % 250 + 1)
    responses = [strict_gateway.get("/v1/users/me", headers={"X-Forwarded-For": ip})
                 for _ in range(IP_BURST + 1)]
    # The burst passes the limit (to the token check: none here), the next one does not.
    assert [response.status_code for response in responses] == [401] * IP_BURST + [429]
    assert_problem(responses[-1], 429, "rate_limited")
    assert 3000 < int(responses[-1].headers["Retry-After"]) <= 3600
    # Another client is not affected.
    assert strict_gateway.get("/v1/users/me").status_code == 401


def test_one_user_is_limited_with_retry_after_and_another_is_not(strict_gateway, alice, bob):
    responses = [strict_gateway.get("/v1/users/me", headers=alice.headers)
                 for _ in range(USER_BURST + 1)]  # each from another address
    assert [response.status_code for response in responses] == [200] * USER_BURST + [429]
    assert_problem(responses[-1], 429, "rate_limited")
    assert 3000 < int(responses[-1].headers["Retry-After"]) <= 3600
    assert strict_gateway.get("/v1/users/me", headers=bob.headers).status_code == 200


# --- Unavailable services ------------------------------------------------------------------


def calls_waiting(system, service):
    """How many RPC calls wait in ``service``'s queue (exact, from the broker at once)."""
    with kombu.Connection(system.amqp_uri) as connection:
        return connection.default_channel.queue_declare(
            queue="rpc-" + service, passive=True).message_count


def test_a_stopped_service_is_a_503_with_retry_after_then_the_breaker_answers_at_once(
        system, alice):
    alice.open_account()
    system.supervisorctl("stop", "ledger")
    try:
        first = alice.get("/v1/accounts")
        assert_problem(first, 503, "service_unavailable")
        assert int(first.headers["Retry-After"]) >= 1
        alice.get("/v1/accounts")  # the second failure in a row opens the breaker
        # Each call so far waits in the stopped service's queue; the open breaker answers
        # without sending one (so without waiting out an RPC deadline).
        sent = calls_waiting(system, "ledger")
        assert sent >= 2
        fast = alice.get("/v1/accounts")
        assert_problem(fast, 503, "circuit_open")
        assert calls_waiting(system, "ledger") == sent
        assert int(fast.headers["Retry-After"]) >= 1
    finally:
        system.supervisorctl("start", "ledger")
    # Once it is back, a trial call after the breaker's pause closes it again.
    wait_for(lambda: alice.get("/v1/accounts").status_code == 200, timeout_s=30)
