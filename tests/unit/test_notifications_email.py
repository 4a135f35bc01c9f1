"""The notifications service's e-mail against real PostgreSQL and a real SMTP sink on
loopback: one message to the user's address, naming the reason of a failure; deferred,
without using up its attempts, while auth or the SMTP server does not answer; failed at
once for an unknown user or a refused mailbox; none when e-mail is switched off."""
import uuid

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
from tests.support.smtp_sink import SmtpSink


# --- E-mail ------------------------------------------------------------------------------------


def test_an_event_sends_an_email_to_the_users_address(worker, services, sink, engine):
    user = services.auth.add(email="ada@example.test")
    payload = event([user], amount=123456, currency="USD", type="transfer")
    publish(worker, payload)
    drive(worker, until=delivered(engine, "email"))
    (mail,) = sink.wait_for(1)
    assert mail.rcpt_to == ["ada@example.test"]
    assert mail.message["To"] == "ada@example.test"
    assert mail.message["From"] == worker.settings.smtp_from
    assert mail.message["Subject"] == "Transfer of 1,234.56 USD completed"
    body = mail.message.get_content()
    assert payload["data"]["id"] in body and "1,234.56 USD" in body and payload["id"] in body
    row = deliveries(engine, channel="email")[0]
    assert (row.target, row.attempts) == ("ada@example.test", 1)
    assert mail.message["Message-ID"] == "<{}@notifications.paysys>".format(row.id)
    assert [a.outcome for a in attempts(engine, row.id)] == ["succeeded"]


def test_a_failed_transaction_email_names_the_reason(worker, services, sink, engine):
    user = services.auth.add()
    publish(worker, event([user], "transaction.failed", status="failed", amount=500,
                          currency="JPY", type="withdrawal", failure_reason="insufficient_funds"))
    drive(worker, until=delivered(engine, "email"))
    (mail,) = sink.wait_for(1)
    assert mail.message["Subject"] == "Withdrawal of 500 JPY failed"
    assert "insufficient_funds" in mail.message.get_content()


def test_an_email_waits_for_auth_when_auth_does_not_answer(worker, services, sink, engine):
    user = services.auth.add(email="grace@example.test")
    services.auth.down = True
    publish(worker, event([user]))  # accepted without auth: nothing lost
    drive(worker, until=lambda: deliveries(engine, channel="email")[0].attempts >= 2)
    row = deliveries(engine, channel="email")[0]
    assert (row.status, row.target, row.failures) == ("pending", None, 0)
    assert {a.outcome for a in attempts(engine, row.id)} == {"deferred"}
    assert "ServiceUnavailable" in row.last_error
    assert sink.messages == []

    services.auth.down = False
    drive(worker, until=delivered(engine, "email"))
    assert sink.wait_for(1)[0].rcpt_to == ["grace@example.test"]


def test_deferrals_do_not_use_up_the_attempts(make_worker, services, sink, engine):
    worker = make_worker(max_attempts=2, retry_base_s=0.01, retry_cap_s=0.02)
    user = services.auth.add()
    services.auth.down = True
    publish(worker, event([user]))
    drive(worker, until=lambda: deliveries(engine, channel="email")[0].attempts >= 4)
    assert deliveries(engine, channel="email")[0].status == "pending"
    services.auth.down = False
    drive(worker, until=delivered(engine, "email"))


def test_an_email_to_an_unknown_user_fails_at_once(worker, services, sink, engine):
    publish(worker, event([str(uuid.uuid4())]))
    drive(worker, until=lambda: deliveries(engine, channel="email")[0].status == "failed")
    row = deliveries(engine, channel="email")[0]
    assert (row.attempts, row.last_error) == (1, "recipient: no such user")
    assert sink.messages == []


def test_a_mailbox_the_server_refuses_fails_at_once(make_worker, services, engine):
    refusing = SmtpSink(refuse=["nobody@example.test"]).start()
    try:
        worker = make_worker(smtp_port=refusing.port)
        user = services.auth.add(email="nobody@example.test")
        publish(worker, event([user]))
        drive(worker, until=lambda: deliveries(engine, channel="email")[0].status == "failed")
        row = deliveries(engine, channel="email")[0]
        assert row.attempts == 1 and "550" in row.last_error
        assert attempts(engine, row.id)[0].status_code == 550
        assert refusing.messages == []
    finally:
        refusing.stop()


def test_an_email_waits_for_the_smtp_server_to_come_back(worker, services, sink, engine):
    user = services.auth.add()
    sink.stop()
    publish(worker, event([user]))
    drive(worker, until=lambda: deliveries(engine, channel="email")[0].attempts >= 2)
    row = deliveries(engine, channel="email")[0]
    assert row.status == "pending" and row.last_error.startswith("SMTP")
    sink.start()
    drive(worker, until=delivered(engine, "email"))
    assert len(sink.wait_for(1)) == 1


def test_email_can_be_switched_off(make_worker, services, receiver, engine):
    worker = make_worker(email_enabled=False)
    user, _ = subscribe(worker, services, receiver=receiver)
    publish(worker, event([user]))
    assert [row.channel for row in deliveries(engine)] == ["webhook"]
