"""Webhooks and e-mail about transactions, through the whole running system."""
import hashlib
import hmac
import json
import uuid

import psycopg2
import pytest

from tests.support.api import assert_problem, new_session
from harness.servers import wait_for
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.system


@pytest.fixture
def receiver():
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def register_webhook(user, url, events=("transaction.completed", "transaction.failed")):
    response = user.post("/v1/webhooks", json={"url": url, "events": list(events)})
    assert response.status_code == 201, response.text
    return response.json()


def deposit(user, account_id, amount):
    response = user.post("/v1/deposits", headers={"Idempotency-Key": str(uuid.uuid4())},
                         json={"account_id": account_id, "amount": amount, "currency": "USD"})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_completed_transaction_is_posted_to_the_webhook_signed(alice, receiver):
    webhook = register_webhook(alice, receiver.url)
    assert set(webhook) == {"id", "url", "events", "secret"}
    transaction = deposit(alice, alice.open_account()["id"], 700)
    request = receiver.wait_for(1, timeout_s=30)[0]
    expected = hmac.new(webhook["secret"].encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Signature"] == "sha256=" + expected
    event = json.loads(request.body)
    assert set(event) == {"id", "type", "created_at", "data"}
    assert (event["type"], event["data"]["id"]) == ("transaction.completed", transaction["id"])
    assert event["data"] == transaction


def test_a_receiver_that_fails_at_first_gets_the_event_later_and_every_attempt_is_listed(
        alice):
    receiver = WebhookReceiver(script=[500, 503]).start()
    try:
        register_webhook(alice, receiver.url)
        deposit(alice, alice.open_account()["id"], 300)
        requests_seen = receiver.wait_for(3, timeout_s=30)
        assert [request.status for request in requests_seen[:3]] == [500, 503, 200]
        assert len({json.loads(r.body)["id"] for r in requests_seen}) == 1  # the same event

        def delivered():
            items = alice.get("/v1/notifications").json()["items"]
            hooks = [item for item in items if item["channel"] == "webhook"]
            return hooks if hooks and hooks[0]["status"] == "delivered" else None

        delivery = wait_for(delivered, timeout_s=30, what="the delivery listed")[0]
        assert delivery["attempts"] == 3
        assert [attempt["outcome"] for attempt in delivery["history"]] == [
            "failed", "failed", "succeeded"]
    finally:
        receiver.stop()


def test_the_user_gets_an_email(alice, smtp_sink):
    deposit(alice, alice.open_account()["id"], 1_234)

    def mail_to_alice():
        return [mail for mail in smtp_sink.messages if alice.email in mail.rcpt_to]

    mail = wait_for(mail_to_alice, timeout_s=30, what="an e-mail to the user")[0]
    assert "12.34 USD" in mail.message["Subject"]


def test_webhooks_are_listed_and_deleted_by_their_owner_only(system, alice, receiver):
    webhook = register_webhook(alice, receiver.url)
    listed = alice.get("/v1/webhooks").json()["items"]
    assert [item["id"] for item in listed] == [webhook["id"]]
    assert "secret" not in listed[0]
    mallory = new_session(system)
    assert_problem(mallory.request("DELETE", "/v1/webhooks/" + webhook["id"]), 404)
    assert mallory.get("/v1/webhooks").json()["items"] == []
    assert alice.request("DELETE", "/v1/webhooks/" + webhook["id"]).status_code == 204
    assert alice.get("/v1/webhooks").json()["items"] == []


def test_a_webhook_needs_a_known_event_and_an_http_url(alice):
    for body in ({"url": "ftp://example.test/hook", "events": ["transaction.completed"]},
                 {"url": "http://example.test/hook", "events": ["account.hacked"]},
                 {"url": "http://example.test/hook", "events": []}):
        assert_problem(alice.post("/v1/webhooks", json=body), 422, "validation_error")


def test_events_raised_while_notifications_is_down_are_all_delivered_after_its_restart(
        system, alice, receiver):
    register_webhook(alice, receiver.url, events=["transaction.completed"])
    account = alice.open_account()["id"]
    system.supervisorctl("stop", "notifications")
    try:
        made = [deposit(alice, account, amount)["id"] for amount in (11, 12, 13, 14, 15)]
    finally:
        system.supervisorctl("start", "notifications")
    received = receiver.wait_for(5, timeout_s=60)
    delivered = {json.loads(request.body)["data"]["id"] for request in received}
    assert delivered == set(made)
    assert len(received) == 5  # each once


# --- Where webhooks may go (server-side request forgery) --------------------------------------


@pytest.mark.parametrize("url, reason", [
    ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
    ("http://172.16.0.1/hook", "172.16.0.1 is a private address"),
    ("http://172.31.255.254/hook", "private"),
    ("http://192.168.1.1/hook", "192.168.1.1 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[::1]:8080/hook", "::1 is a loopback address"),  # only 127.0.0.0/8 is allowed
    ("http://[fc00::1]/hook", "fc00::1 is a unique local address"),
    ("http://[fd00:ec2::254]/", "unique local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://0.0.0.0:8080/", "unspecified"),
])
def test_a_webhook_to_a_private_link_local_or_ipv6_local_address_is_refused(alice, url,
                                                                           reason):
    response = alice.post("/v1/webhooks", json={"url": url, "events": ["transaction.completed"]})
    problem = assert_problem(response, 422, "validation_error")
    (message,) = problem["errors"]["url"]
    assert reason in message and "public addresses only" in message, message
    assert alice.get("/v1/webhooks").json()["items"] == []


def test_loopback_is_let_in_by_the_development_setting_by_name_too(alice, receiver):
    # config.yml allows 127.0.0.0/8 (production sets none): `localhost` resolves there, and
    # the POST goes to the address checked while the Host header still names the host.
    url = "http://localhost:{}/hook".format(receiver.port)
    assert register_webhook(alice, url)["url"] == url
    deposit(alice, alice.open_account()["id"], 250)
    request = receiver.wait_for(1, timeout_s=30)[0]
    assert request.headers["Host"] == "localhost:{}".format(receiver.port)


def test_a_redirect_is_not_followed(alice):
    inside = WebhookReceiver().start()
    redirecting = WebhookReceiver(script=[("redirect", inside.url)]).start()
    try:
        register_webhook(alice, redirecting.url)
        deposit(alice, alice.open_account()["id"], 400)
        redirecting.wait_for(2, timeout_s=30)  # the 302, then the retry that succeeds

        def delivered():
            hooks = [item for item in alice.get("/v1/notifications").json()["items"]
                     if item["channel"] == "webhook"]
            return hooks if hooks and hooks[0]["status"] == "delivered" else None

        history = wait_for(delivered, timeout_s=30, what="the delivery")[0]["history"]
        assert [(a["outcome"], a["status_code"]) for a in history] == [
            ("failed", 302), ("succeeded", 200)]
        assert inside.received == []
    finally:
        redirecting.stop()
        inside.stop()


def test_the_secret_is_sealed_in_the_database_and_still_signs(system, alice, receiver):
    webhook = register_webhook(alice, receiver.url)
    with psycopg2.connect(system.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT w::text, w.secret FROM notifications.webhooks w WHERE id = %s",
                       (webhook["id"],))
        row, stored = cursor.fetchone()
    connection.close()
    assert webhook["secret"] not in row and not stored.startswith("whsec_")
    deposit(alice, alice.open_account()["id"], 100)
    request = receiver.wait_for(1, timeout_s=30)[0]
    expected = hmac.new(webhook["secret"].encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Signature"] == "sha256=" + expected
