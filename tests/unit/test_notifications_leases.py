"""The notifications service's delivery leases against real PostgreSQL: a claimed
delivery whose lease ran out (its tick killed mid-send) is retried, two processes share a
backlog and send each delivery once, and a backlog survives a restart of the service."""
import json
import threading
import uuid

import eventlet
from sqlalchemy import text, update

from services.notifications import delivery_leases, records
from tests.support.concurrency import run_together
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


# --- Leases and several processes ------------------------------------------------------------


def lease_runs_out(engine):
    """The time a lease lasts passes: every claimed delivery's lease ends now."""
    with engine.begin() as connection:
        connection.execute(update(records.deliveries)
                           .where(records.deliveries.c.locked_until.is_not(None))
                           .values(locked_until=text("clock_timestamp()")))


def test_a_claimed_delivery_whose_lease_ran_out_is_retried(
        worker, services, receiver, sink, engine):
    user, _ = subscribe(worker, services, receiver=receiver)
    publish(worker, event([user]))
    # A process claims everything, then dies before sending.
    dead_token = str(uuid.uuid4())
    with engine.begin() as connection:
        claimed = delivery_leases.claim_due(connection, 10, 60, dead_token)
    assert {row.channel for row in claimed} == {"webhook", "email"}
    assert worker.deliver_due() == 0  # leased: not due for anyone else
    assert receiver.received == []

    lease_runs_out(engine)
    drive(worker, until=lambda: all(r.status == "delivered" for r in deliveries(engine)),
          timeout_s=15)
    assert len(receiver.received) == 1 and len(sink.messages) == 1
    # The dead process's late write-back (it was only slow) changes nothing but the log.
    row = next(r for r in claimed if r.channel == "webhook")
    with engine.begin() as connection:
        applied = delivery_leases.finish_attempt(connection, row, dead_token, {
            "outcome": "failed", "status": "pending", "retry_in_s": 1, "error": "late",
            "started_at": row.created_at, "finished_at": row.created_at})
    assert applied is False
    current = deliveries(engine, channel="webhook")[0]
    assert (current.status, current.attempts) == ("delivered", 1)


def test_a_tick_killed_mid_send_leaves_the_delivery_to_its_lease(make_worker, services, engine):
    # A killed container (or process) records nothing of the send it was in: the delivery
    # stays claimed until its lease runs out, then it is sent again.
    answer = threading.Event()
    slow = WebhookReceiver(script=[("hold", answer)]).start()  # mid-send until told
    try:
        settings = dict(webhook_timeout_s=30, smtp_timeout_s=0.5, rpc_timeout_ms=200,
                        lease_s=60, email_enabled=False)
        dying, survivor = make_worker(**settings), make_worker(**settings)
        user, _ = subscribe(dying, services, receiver=slow)
        publish(dying, event([user]))
        tick = eventlet.spawn(dying.deliver_due)
        slow.wait_for(1)
        tick.kill()
        answer.set()
        row = deliveries(engine)[0]
        assert (row.status, row.attempts, row.claim_token is not None) == ("pending", 0, True)
        assert attempts(engine, row.id) == []
        assert survivor.deliver_due() == 0  # still leased
        lease_runs_out(engine)
        drive(survivor, until=delivered(engine), timeout_s=15)
        assert len(slow.received) == 2
        assert [a.outcome for a in attempts(engine, row.id)] == ["succeeded"]
    finally:
        answer.set()
        slow.stop()


def test_two_processes_share_a_backlog_and_send_each_delivery_once(
        make_worker, services, receiver, sink, engine):
    first, second = make_worker(concurrency=3), make_worker(concurrency=3)
    user, _ = subscribe(first, services, events=["transaction.completed"], receiver=receiver)
    for _ in range(20):
        publish(first, event([user]))
    outcomes = run_together(first.deliver_due, second.deliver_due, first.deliver_due,
                            second.deliver_due)
    assert all(isinstance(count, int) for count in outcomes), outcomes
    assert outcomes[0] > 0 and outcomes[1] > 0, outcomes  # both took part
    drive(first, second, until=lambda: all(r.status == "delivered" for r in deliveries(engine)))
    ids = [request.headers["X-Delivery-Id"] for request in receiver.received]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert len(sink.messages) == 20
    assert len({m.message["Message-ID"] for m in sink.messages}) == 20


def test_a_backlog_survives_a_restart_of_the_service(make_worker, services, receiver, sink,
                                                     engine):
    before = make_worker(concurrency=2)
    user, _ = subscribe(before, services, events=["transaction.completed"], receiver=receiver)
    receiver.stop()
    published = [event([user]) for _ in range(15)]
    for payload in published:
        publish(before, payload)
    before.deliver_due()  # some attempts fail; then the process goes away
    del before

    receiver.start()
    after = make_worker()  # a new process: it knows only what is in the database
    drive(after, until=lambda: all(r.status == "delivered" for r in deliveries(engine)),
          timeout_s=15)
    assert sorted(json.loads(r.body)["id"] for r in receiver.received) == sorted(
        p["id"] for p in published)
    assert len(sink.messages) == 15
