"""The notifications service's webhook deliveries against real PostgreSQL and a real
HTTP receiver on loopback: each event posted once, with the exact body and a valid
signature, to the subscribed webhooks of the users concerned; failures retried with full
jitter backoff until they succeed or run out of attempts; a deleted webhook sent nothing."""
import json
import threading

import pytest
from sqlalchemy import text, update

from services.notifications import delivery, messages, records
from tests.support.notifications import (  # noqa: F401 - fixtures
    attempts,
    clean_notifications,
    delivered,
    deliveries,
    drive,
    event,
    make_worker,
    publish,
    receiver,
    secret_box,
    services,
    sink,
    subscribe,
    worker,
)
from tests.support.webhook_receiver import WebhookReceiver


# --- Webhooks ------------------------------------------------------------------------------


def test_an_event_is_posted_once_to_the_webhook_with_the_exact_body_and_a_valid_signature(
        worker, services, receiver, sink, engine):
    user, hook = subscribe(worker, services, receiver=receiver)
    payload = event([user])
    assert publish(worker, payload) is None

    drive(worker, until=lambda: all(r.status == "delivered" for r in deliveries(engine)))
    (request,) = receiver.wait_for(1)
    assert request.path == "/hook"
    assert messages.verify_signature(hook["secret"], request.body, request.headers["X-Signature"])
    assert request.headers["X-Signature"].startswith("sha256=")
    assert json.loads(request.body) == {
        "id": payload["id"], "type": "transaction.completed",
        "created_at": payload["created_at"], "data": payload["data"]}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Event-Id"] == payload["id"]
    assert request.headers["X-Event-Type"] == "transaction.completed"
    # Any other key does not verify: the signature is of these bytes with this secret.
    assert not messages.verify_signature("whsec_other", request.body,
                                         request.headers["X-Signature"])
    assert not messages.verify_signature(hook["secret"], request.body + b" ",
                                         request.headers["X-Signature"])

    row = deliveries(engine, channel="webhook")[0]
    assert (row.status, row.attempts, row.target, row.webhook_id) == (
        "delivered", 1, receiver.url, hook["id"])
    assert request.headers["X-Delivery-Id"] == row.id
    (attempt,) = attempts(engine, row.id)
    assert (attempt.attempt, attempt.outcome, attempt.status_code, attempt.error) == (
        1, "succeeded", 200, None)

    drive(worker, until=lambda: True)
    assert len(receiver.received) == 1  # delivered is final


def test_only_subscribed_webhooks_of_the_users_concerned_get_the_event(
        worker, services, receiver, sink, engine):
    concerned, hook = subscribe(worker, services, events=["transaction.failed"],
                                receiver=receiver)
    # Someone not concerned by the events below:
    subscribe(worker, services, events=["transaction.completed"], receiver=receiver)
    publish(worker, event([concerned]))  # completed: the concerned user's hook is for failed
    assert [row.channel for row in deliveries(engine)] == ["email"]

    failed = event([concerned], "transaction.failed", status="failed",
                   failure_reason="insufficient_funds")
    publish(worker, failed)
    drive(worker, until=lambda: len(receiver.received) == 1 and delivered(engine)())
    assert json.loads(receiver.received[0].body)["type"] == "transaction.failed"


def test_every_user_concerned_gets_a_delivery_per_subscribed_webhook(
        worker, services, receiver, sink, engine):
    payer, payer_hook = subscribe(worker, services, receiver=receiver)
    second_hook = worker.create_webhook(payer, receiver.url + "/second",
                                        ["transaction.completed"])
    payee, payee_hook = subscribe(worker, services, receiver=receiver)
    payload = event([payer, payee, payer])  # a user named twice gets one of each
    publish(worker, payload)
    rows = deliveries(engine, channel="webhook")
    assert sorted(row.webhook_id for row in rows) == sorted(
        [payer_hook["id"], second_hook["id"], payee_hook["id"]])
    drive(worker, until=lambda: len(receiver.received) == 3 and delivered(engine)())
    assert sorted(request.path for request in receiver.received) == [
        "/hook", "/hook", "/hook/second"]
    signed_with = {payer_hook["secret"], second_hook["secret"], payee_hook["secret"]}
    for request in receiver.received:
        assert any(messages.verify_signature(secret, request.body,
                                             request.headers["X-Signature"])
                   for secret in signed_with)
    assert {json.loads(request.body)["id"] for request in receiver.received} == {payload["id"]}


def test_a_receiver_failing_its_first_two_attempts_gets_the_event_on_the_third_with_growing_backoff(
        make_worker, services, sink, engine, monkeypatch):
    monkeypatch.setattr(delivery, "jitter_fraction", lambda: 1.0)  # the ceiling: no jitter
    scheduled = []  # (attempt, seconds to the next one) as the loop decides them
    backoff_s = delivery.backoff_s

    def recorded_backoff_s(attempt, base_s, cap_s):
        scheduled.append((attempt, backoff_s(attempt, base_s, cap_s)))
        return scheduled[-1][1]

    monkeypatch.setattr(delivery, "backoff_s", recorded_backoff_s)
    failing = WebhookReceiver(script=[500, 503]).start()
    try:
        worker = make_worker(retry_base_s=0.3, retry_cap_s=5.0)
        user, hook = subscribe(worker, services, receiver=failing)
        publish(worker, event([user]))
        drive(worker, until=delivered(engine), timeout_s=10)
        first, second, third = failing.wait_for(3)
        assert [r.status for r in failing.received] == [500, 503, 200]
        assert first.body == second.body == third.body
        assert {r.headers["X-Signature"] for r in failing.received} == {
            messages.signature(hook["secret"], first.body)}
        assert [r.headers["X-Delivery-Attempt"] for r in failing.received] == ["1", "2", "3"]
        # base * 2^(n-1): 0.3 s after the first failure, then 0.6 s.
        assert scheduled == [(1, 0.3), (2, 0.6)]

        row = deliveries(engine, channel="webhook")[0]
        assert (row.status, row.attempts, row.failures, row.last_error) == (
            "delivered", 3, 2, None)
        logged = attempts(engine, row.id)
        assert [(a.attempt, a.outcome, a.status_code) for a in logged] == [
            (1, "failed", 500), (2, "failed", 503), (3, "succeeded", 200)]
        assert "HTTP 500" in logged[0].error and "HTTP 503" in logged[1].error
        assert all(a.started_at <= a.finished_at for a in logged)
        # No retry came before its time (one clock: PostgreSQL and this process share the
        # machine's).
        for before, after, (_, wait_s) in zip(logged, logged[1:], scheduled):
            assert (after.started_at - before.finished_at).total_seconds() >= wait_s
        assert len(failing.received) == 3
    finally:
        failing.stop()


def test_a_receiver_that_is_down_gets_the_event_once_it_is_back(
        worker, services, receiver, sink, engine):
    user, _ = subscribe(worker, services, receiver=receiver)
    receiver.stop()
    publish(worker, event([user]))
    webhook_row = lambda: deliveries(engine, channel="webhook")[0]  # noqa: E731
    drive(worker, until=lambda: webhook_row().attempts >= 2)
    row = webhook_row()
    assert row.status == "pending" and row.next_attempt_at is not None
    assert "Connection" in row.last_error or "refused" in row.last_error.lower(), row.last_error
    assert {a.outcome for a in attempts(engine, row.id)} == {"failed"}

    receiver.start()  # the same port
    drive(worker, until=delivered(engine))
    assert len(receiver.wait_for(1)) == 1
    row = webhook_row()
    assert row.attempts >= 3 and row.delivered_at is not None


def test_a_receiver_slower_than_the_timeout_is_retried(make_worker, services, sink, engine):
    answer = threading.Event()
    slow = WebhookReceiver(script=[("hold", answer)]).start()  # answers when told
    try:
        worker = make_worker(webhook_timeout_s=0.3)
        user, _ = subscribe(worker, services, receiver=slow)
        publish(worker, event([user]))
        webhook_row = lambda: deliveries(engine, channel="webhook")[0]  # noqa: E731
        drive(worker, until=lambda: webhook_row().attempts >= 1, timeout_s=15)
        [first] = attempts(engine, webhook_row().id)
        assert first.outcome == "failed" and "timed out" in first.error
        # The sender gave up on its own timeout: the receiver had not answered yet.
        assert slow.received[0].status is None
        answer.set()
        drive(worker, until=delivered(engine), timeout_s=15)
        assert attempts(engine, webhook_row().id)[-1].outcome == "succeeded"
    finally:
        answer.set()
        slow.stop()


def test_a_delivery_that_keeps_failing_is_failed_after_max_attempts(
        make_worker, services, sink, engine):
    broken = WebhookReceiver(default_status=500).start()
    try:
        worker = make_worker(max_attempts=3, retry_base_s=0.05)
        user, _ = subscribe(worker, services, receiver=broken)
        publish(worker, event([user]))
        drive(worker, until=lambda: deliveries(engine, channel="webhook")[0].status == "failed")
        drive(worker, until=lambda: True)
        row = deliveries(engine, channel="webhook")[0]
        assert (row.attempts, row.failures, row.next_attempt_at is not None) == (3, 3, True)
        assert "HTTP 500" in row.last_error
        assert len(broken.received) == 3
        view = worker.list_deliveries(user)["items"]
        failed = [item for item in view if item["channel"] == "webhook"][0]
        assert (failed["status"], failed["attempts"], failed["next_attempt_at"]) == (
            "failed", 3, None)
    finally:
        broken.stop()


def test_a_redirect_is_not_followed_and_counts_as_a_failure(make_worker, services, sink, engine):
    moved = WebhookReceiver(script=[301]).start()
    try:
        worker = make_worker()
        user, _ = subscribe(worker, services, receiver=moved)
        publish(worker, event([user]))
        drive(worker, until=delivered(engine))
        assert [r.status for r in moved.received] == [301, 200]
    finally:
        moved.stop()


def test_deleting_a_webhook_fails_its_pending_deliveries_and_sends_nothing_more(
        worker, services, receiver, sink, engine):
    user, hook = subscribe(worker, services, receiver=receiver)
    receiver.stop()
    publish(worker, event([user]))
    drive(worker, until=lambda: deliveries(engine, channel="webhook")[0].attempts >= 1)
    worker.delete_webhook(user, hook["id"])
    receiver.start()
    row = deliveries(engine, channel="webhook")[0]
    assert (row.status, row.last_error) == ("failed", "webhook deleted")
    drive(worker, until=lambda: True)
    drive(worker, until=lambda: True)
    assert receiver.received == []


def test_a_pending_delivery_of_a_webhook_deleted_meanwhile_is_abandoned(
        worker, services, receiver, sink, engine):
    # The race: an event's deliveries commit just after a concurrent delete_webhook failed
    # the webhook's pending deliveries; the loop still finds the webhook deleted at send time.
    user, hook = subscribe(worker, services, receiver=receiver)
    publish(worker, event([user]))
    with engine.begin() as connection:
        connection.execute(update(records.webhooks).where(records.webhooks.c.id == hook["id"])
                           .values(deleted_at=text("now()")))
    drive(worker, until=lambda: deliveries(engine, channel="webhook")[0].status == "failed")
    row = deliveries(engine, channel="webhook")[0]
    assert (row.last_error, row.attempts, row.claim_token) == ("webhook deleted", 0, None)
    assert receiver.received == []


# --- Backoff -----------------------------------------------------------------------------------


def test_full_jitter_backoff_stays_under_a_growing_capped_ceiling(monkeypatch):
    monkeypatch.setattr(delivery, "jitter_fraction", lambda: 0.999999)
    ceilings = [delivery.backoff_s(n, 1.0, 300.0) for n in range(1, 15)]
    assert ceilings[:4] == pytest.approx([1, 2, 4, 8], rel=1e-5)
    assert all(a <= b for a, b in zip(ceilings, ceilings[1:]))
    assert max(ceilings) == pytest.approx(300, rel=1e-5)
    assert delivery.backoff_s(10_000, 1.0, 300.0) == pytest.approx(300, rel=1e-5)
    monkeypatch.setattr(delivery, "jitter_fraction", lambda: 0.0)
    assert delivery.backoff_s(5, 1.0, 300.0) == 0.0


def test_full_jitter_backoff_spreads_retries_over_the_whole_range():
    draws = [delivery.backoff_s(4, 1.0, 300.0) for _ in range(2000)]
    assert all(0 <= d < 8 for d in draws)
    assert min(draws) < 0.5 and max(draws) > 7.5
    assert 3.5 < sum(draws) / len(draws) < 4.5
