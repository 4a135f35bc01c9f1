"""The Payments part of the HTTP contract, through the whole running system: authorize,
capture (whole or part), void, refund (up to what was captured), expiry."""
import hashlib
import hmac
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import PAYMENT_HOLD_S
from tests.support.api import assert_problem
from harness.servers import wait_for
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.system

PAYMENT_FIELDS = {"id", "status", "amount", "captured_amount", "refunded_amount", "currency",
                  "payer_account_id", "merchant_account_id", "reference", "metadata",
                  "failure_reason", "transactions", "created_at"}


def post(user, path, body=None, key=None):
    return user.post(path, json=body if body is not None else {},
                     headers={"Idempotency-Key": key or str(uuid.uuid4())})


def funded_account(user, amount, currency="USD"):
    account = user.open_account(currency)
    response = post(user, "/v1/deposits", {"account_id": account["id"], "amount": amount,
                                           "currency": currency})
    assert response.status_code == 201 and response.json()["status"] == "completed"
    return account


def pay(payer, payer_account, merchant_account, amount, capture=True, key=None, **extra):
    body = {"payer_account_id": payer_account["id"],
            "merchant_account_id": merchant_account["id"], "amount": amount,
            "currency": payer_account["currency"], "capture": capture}
    body.update(extra)
    return post(payer, "/v1/payments", body, key)


def authorized(payer, payer_account, merchant_account, amount):
    response = pay(payer, payer_account, merchant_account, amount, capture=False)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "authorized", payment
    return payment


def act(user, payment, action, amount=None, key=None):
    body = {} if amount is None else {"amount": amount}
    return post(user, "/v1/payments/{}/{}".format(payment["id"], action), body, key)


def balances(user, account):
    seen = user.get("/v1/accounts/" + account["id"]).json()
    return seen["balance"], seen["available_balance"]


@pytest.fixture
def shop(alice, bob):
    """Alice pays from a funded account; Bob owns the merchant account."""
    return funded_account(alice, 10_000), bob.open_account()


def test_a_payment_captured_at_once_moves_the_money(alice, bob, shop):
    payer, merchant = shop
    response = pay(alice, payer, merchant, 2_500, reference="order 17")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert set(payment) == PAYMENT_FIELDS
    assert (payment["status"], payment["amount"], payment["captured_amount"],
            payment["refunded_amount"], payment["reference"]) == (
        "captured", 2_500, 2_500, 0, "order 17")
    assert response.headers["Location"] == "/v1/payments/" + payment["id"]
    assert balances(alice, payer) == (7_500, 7_500)
    assert balances(bob, merchant) == (2_500, 2_500)
    [transaction_id] = payment["transactions"]
    transaction = alice.get("/v1/transfers/" + transaction_id).json()
    assert (transaction["type"], transaction["status"], transaction["amount"]) == (
        "payment", "completed", 2_500)
    for party in (alice, bob):  # both sides see the payment
        assert party.get("/v1/payments/" + payment["id"]).json() == payment


def test_an_authorization_holds_available_money_and_a_partial_capture_releases_the_rest(
        alice, bob, shop):
    payer, merchant = shop
    payment = authorized(alice, payer, merchant, 4_000)
    assert (payment["captured_amount"], len(payment["transactions"])) == (0, 1)
    assert balances(alice, payer) == (10_000, 6_000)  # held: available, not balance
    assert balances(bob, merchant) == (0, 0)

    response = act(bob, payment, "capture", 1_500)
    assert response.status_code == 200, response.text
    captured = response.json()
    assert (captured["status"], captured["captured_amount"]) == ("captured", 1_500)
    assert len(captured["transactions"]) == 2
    capture = bob.get("/v1/transfers/" + captured["transactions"][1]).json()
    assert (capture["type"], capture["status"], capture["amount"]) == (
        "capture", "completed", 1_500)
    # The capture moved 1,500 and released the other 2,500 of the hold.
    assert balances(alice, payer) == (8_500, 8_500)
    assert balances(bob, merchant) == (1_500, 1_500)
    # A capture is final.
    assert_problem(act(bob, payment, "capture", 100), 409, "payment_not_authorized")
    assert_problem(act(bob, payment, "void"), 409, "payment_not_authorized")


def test_a_capture_takes_the_whole_authorization_by_default_and_never_more(alice, bob, shop):
    payer, merchant = shop
    payment = authorized(alice, payer, merchant, 3_000)
    too_much = act(bob, payment, "capture", 3_001)
    assert_problem(too_much, 422, "amount_exceeds_authorization")
    assert balances(alice, payer) == (10_000, 7_000)  # nothing changed
    response = act(bob, payment, "capture")
    assert response.status_code == 200, response.text
    assert response.json()["captured_amount"] == 3_000
    assert balances(alice, payer) == (7_000, 7_000)


def test_refunds_add_up_to_the_captured_amount_and_no_more(alice, bob, shop):
    payer, merchant = shop
    payment = pay(alice, payer, merchant, 1_000).json()
    first = act(bob, payment, "refund", 300)
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["refunded_amount"]) == (
        "partially_refunded", 300)
    assert_problem(act(bob, payment, "refund", 701), 422, "refund_exceeds_captured")
    rest = act(bob, payment, "refund")  # no amount: all that is left
    assert rest.status_code == 200, rest.text
    refunded = rest.json()
    assert (refunded["status"], refunded["refunded_amount"]) == ("refunded", 1_000)
    assert [alice.get("/v1/transfers/" + t).json()["type"]
            for t in refunded["transactions"]] == ["payment", "refund", "refund"]
    assert_problem(act(bob, payment, "refund", 1), 422, "refund_exceeds_captured")
    assert balances(alice, payer) == (10_000, 10_000)
    assert balances(bob, merchant) == (0, 0)


def test_concurrent_refunds_never_add_up_to_more_than_was_captured(alice, bob, shop):
    payer, merchant = shop
    payment = pay(alice, payer, merchant, 1_000).json()
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: act(bob, payment, "refund", 400), range(4)))
    succeeded = [r for r in responses if r.status_code == 200]
    assert len(succeeded) == 2, [(r.status_code, r.text) for r in responses]
    for refused in (r for r in responses if r.status_code != 200):
        assert_problem(refused, 422, "refund_exceeds_captured")
    final = bob.get("/v1/payments/" + payment["id"]).json()
    assert (final["status"], final["refunded_amount"]) == ("partially_refunded", 800)
    assert balances(alice, payer) == (9_800, 9_800)


def test_a_void_releases_the_hold_and_ends_the_payment(alice, bob, shop):
    payer, merchant = shop
    payment = authorized(alice, payer, merchant, 5_000)
    response = act(bob, payment, "void")
    assert response.status_code == 200, response.text
    voided = response.json()
    assert (voided["status"], voided["captured_amount"]) == ("voided", 0)
    assert balances(alice, payer) == (10_000, 10_000)
    assert_problem(act(bob, payment, "capture"), 409, "payment_not_authorized")
    assert_problem(act(bob, payment, "refund"), 409, "payment_not_captured")
    assert balances(bob, merchant) == (0, 0)


def test_an_authorization_not_captured_in_time_is_voided_by_the_system(alice, bob, shop):
    payer, merchant = shop
    payment = authorized(alice, payer, merchant, 2_000)
    assert balances(alice, payer) == (10_000, 8_000)
    wait_for(lambda: alice.get("/v1/payments/" + payment["id"]).json()["status"] == "voided",
             timeout_s=PAYMENT_HOLD_S + 20, interval_s=0.5)
    assert balances(alice, payer) == (10_000, 10_000)
    assert_problem(act(bob, payment, "capture"), 409, "payment_not_authorized")


def test_an_authorization_beyond_the_available_money_fails_and_holds_nothing(alice, bob, shop):
    payer, merchant = shop
    authorized(alice, payer, merchant, 9_000)
    response = pay(alice, payer, merchant, 2_000, capture=False)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "failed"
    assert balances(alice, payer) == (10_000, 1_000)


def test_a_retried_payment_is_made_once(alice, bob, shop):
    payer, merchant = shop
    key = str(uuid.uuid4())
    first = pay(alice, payer, merchant, 700, capture=False, key=key)
    again = pay(alice, payer, merchant, 700, capture=False, key=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert balances(alice, payer) == (10_000, 9_300)
    capture_key = str(uuid.uuid4())
    captured = act(bob, first.json(), "capture", 500, key=capture_key)
    assert act(bob, first.json(), "capture", 500, key=capture_key).json() == captured.json()
    assert balances(alice, payer) == (9_500, 9_500)


def test_only_the_merchant_or_an_admin_settles_a_payment(alice, bob, mallory, admin, shop):
    payer, merchant = shop
    payment = authorized(alice, payer, merchant, 1_000)
    assert_problem(act(alice, payment, "capture"), 403, "forbidden")  # the payer
    assert_problem(act(mallory, payment, "void"), 404, "not_found")  # a stranger
    assert_problem(mallory.get("/v1/payments/" + payment["id"]), 404, "not_found")
    response = act(admin, payment, "capture", 400)
    assert response.status_code == 200, response.text
    assert response.json()["captured_amount"] == 400


def test_nobody_pays_from_another_users_account(alice, mallory, shop):
    payer, merchant = shop
    response = pay(mallory, payer, merchant, 100)
    assert_problem(response, 404, "not_found")
    assert balances(alice, payer) == (10_000, 10_000)


def test_the_merchant_hears_of_captures_and_refunds_by_webhook(alice, bob, shop):
    payer, merchant = shop
    receiver = WebhookReceiver().start()
    try:
        webhook = bob.post("/v1/webhooks", json={
            "url": receiver.url, "events": ["payment.captured", "payment.refunded"]}).json()
        payment = pay(alice, payer, merchant, 600).json()
        act(bob, payment, "refund", 200)
        requests_seen = receiver.wait_for(2, timeout_s=30)
        events = [json.loads(request.body) for request in requests_seen]
        assert sorted(event["type"] for event in events) == [
            "payment.captured", "payment.refunded"]
        for request in requests_seen:
            expected = hmac.new(webhook["secret"].encode(), request.body,
                                hashlib.sha256).hexdigest()
            assert request.headers["X-Signature"] == "sha256=" + expected
        refunded = next(e for e in events if e["type"] == "payment.refunded")["data"]
        assert (refunded["id"], refunded["refunded_amount"]) == (payment["id"], 200)
    finally:
        receiver.stop()


def test_a_payment_keeps_its_metadata_and_refuses_metadata_beyond_the_limits(alice, bob, shop):
    payer, merchant = shop
    payment = pay(alice, payer, merchant, 300, metadata={"order": "A-17", "channel": "web"})
    assert payment.status_code == 201, payment.text
    assert payment.json()["metadata"] == {"order": "A-17", "channel": "web"}
    assert bob.get("/v1/payments/" + payment.json()["id"]).json()["metadata"] == {
        "order": "A-17", "channel": "web"}
    for metadata in ({"k{}".format(i): "v" for i in range(51)}, {"k" * 41: "v"},
                     {"order": "v" * 501}, {"order": 17}, ["order"]):
        response = pay(alice, payer, merchant, 300, metadata=metadata)
        problem = assert_problem(response, 422, "validation_error")
        assert any(field.startswith("metadata") for field in problem["errors"]), problem
    assert balances(alice, payer) == (9_700, 9_700)


def test_payments_are_listed_for_payer_and_merchant_newest_first_and_by_status(
        alice, bob, mallory, admin, shop):
    payer, merchant = shop
    captured = pay(alice, payer, merchant, 100).json()
    held = authorized(alice, payer, merchant, 200)
    voided = authorized(alice, payer, merchant, 300)
    assert act(bob, voided, "void").status_code == 200
    for user in (alice, bob):
        listed = user.get("/v1/payments").json()
        assert [p["id"] for p in listed["items"]] == [voided["id"], held["id"], captured["id"]]
        assert listed["next_cursor"] is None
    assert [p["id"] for p in alice.get("/v1/payments?status=authorized").json()["items"]] == [
        held["id"]]
    assert [p["status"] for p in bob.get("/v1/payments?status=voided").json()["items"]] == [
        "voided"]
    assert mallory.get("/v1/payments").json()["items"] == []
    staff_ids = {p["id"] for p in admin.get("/v1/payments?limit=200").json()["items"]}
    assert {captured["id"], held["id"]} <= staff_ids or admin.get(
        "/v1/payments?limit=200").json()["next_cursor"] is not None
    first = alice.get("/v1/payments?limit=2").json()
    second = alice.get("/v1/payments?limit=2&cursor=" + first["next_cursor"]).json()
    assert [p["id"] for p in first["items"] + second["items"]] == [
        voided["id"], held["id"], captured["id"]]
    assert_problem(alice.get("/v1/payments?status=pending"), 422, "validation_error")
    assert_problem(alice.get("/v1/payments?cursor=not-a-cursor"), 422, "validation_error")


def test_the_payer_and_merchant_hear_of_authorizations_voids_expiries_and_failures(
        alice, bob, shop):
    payer, merchant = shop
    receiver = WebhookReceiver().start()
    try:
        response = bob.post("/v1/webhooks", json={"url": receiver.url, "events": [
            "payment.authorized", "payment.voided", "payment.expired", "payment.failed"]})
        assert response.status_code == 201, response.text
        voided = authorized(alice, payer, merchant, 100)
        act(bob, voided, "void")
        expiring = authorized(alice, payer, merchant, 200)
        failing = pay(alice, payer, merchant, 1_000_000, capture=False,
                      metadata={"why": "too much"}).json()
        assert failing["status"] == "failed" and failing["failure_reason"] == "insufficient_funds"
        # authorized twice, voided, expired, failed.
        seen = receiver.wait_for(5, timeout_s=PAYMENT_HOLD_S + 30)
        events = [json.loads(request.body) for request in seen]
        by_payment = {}
        for event in events:
            by_payment.setdefault(event["data"]["id"], []).append(event["type"])
        assert sorted(by_payment[voided["id"]]) == ["payment.authorized", "payment.voided"]
        assert sorted(by_payment[expiring["id"]]) == ["payment.authorized", "payment.expired"]
        assert by_payment[failing["id"]] == ["payment.failed"]
        failed_event = next(e for e in events if e["type"] == "payment.failed")
        assert failed_event["data"]["metadata"] == {"why": "too much"}
        assert failed_event["data"]["failure_reason"] == "insufficient_funds"
        expired_event = next(e for e in events if e["type"] == "payment.expired")
        assert expired_event["data"]["status"] == "voided"
    finally:
        receiver.stop()
