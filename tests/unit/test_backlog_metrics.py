"""The backlog gauges read at scrape time, against real PostgreSQL: outbox rows waiting and
their age, pending transactions, deliveries pending and overdue."""
import os
import uuid

import pytest
from sqlalchemy import text

from services.notifications.metrics import OVERDUE, PENDING
from services.notifications.metrics import backlog_source as deliveries_source
from services.transactions.metrics import PENDING_COUNT, PENDING_OLDEST, pending_source
from shared.event_outbox import outbox_table
from shared.outbox_relay.events import events_outbox
from shared.outbox_relay.metrics import OLDEST_AGE, ROWS_WAITING, backlog_source


@pytest.fixture
def scratch_outbox(engine):
    """An events outbox of a schema of its own, shaped as every service's."""
    schema = "metrics_test_{}".format(os.getpid())
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}; "
                                "CREATE TABLE {0}.outbox (LIKE transactions.outbox "
                                "INCLUDING ALL)".format(schema)))
    yield outbox_table(schema)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA {} CASCADE".format(schema)))


def add_outbox_rows(engine, table, ages_s, sent=False):
    with engine.begin() as connection:
        for age_s in ages_s:
            connection.execute(text(
                "INSERT INTO {}.outbox (event_id, event_type, payload, created_at, "
                "dispatched_at) VALUES (:id, 'x', '{{}}', now() - make_interval(secs => :age), "
                "CASE WHEN :sent THEN now() END)".format(table.schema)),
                {"id": str(uuid.uuid4()), "age": age_s, "sent": sent})


def test_an_outbox_backlog_is_its_unsent_rows_and_the_age_of_the_oldest(engine,
                                                                         scratch_outbox):
    name = "{}.outbox".format(scratch_outbox.schema)
    source = backlog_source(engine, events_outbox(scratch_outbox))
    assert source.read() == {ROWS_WAITING: {(name,): 0}, OLDEST_AGE: {(name,): 0.0}}
    add_outbox_rows(engine, scratch_outbox, [3600], sent=True)
    add_outbox_rows(engine, scratch_outbox, [90, 30, 5])
    values = source.read()
    assert values[ROWS_WAITING] == {(name,): 3}
    [age_s] = values[OLDEST_AGE].values()
    assert 90 <= age_s < 90 + 60  # the oldest unsent row, not the sent one


def test_pending_transactions_are_the_ones_in_flight(engine):
    source = pending_source(engine)
    before = source.read()[PENDING_COUNT][()]
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    with engine.begin() as connection:
        for transaction_id in ids:
            connection.execute(text(
                "INSERT INTO transactions.in_flight (transaction_id, created_at) "
                "VALUES (:id, now() - interval '1 day')"), {"id": transaction_id})
    try:
        values = source.read()
        assert values[PENDING_COUNT] == {(): before + 2}
        assert values[PENDING_OLDEST][()] >= 86400
    finally:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM transactions.in_flight "
                                    "WHERE transaction_id = ANY(CAST(:ids AS uuid[]))"),
                               {"ids": ids})


def test_deliveries_pending_and_overdue_per_channel_leave_out_the_ones_being_sent(engine):
    with engine.begin() as connection:
        connection.execute(text(
            "TRUNCATE notifications.delivery_attempts, notifications.deliveries, "
            "notifications.events, notifications.webhooks"))
        webhook, event = str(uuid.uuid4()), str(uuid.uuid4())
        connection.execute(text(
            "INSERT INTO notifications.webhooks (id, owner_id, url, events, secret) VALUES "
            "(:id, :owner, 'https://example.test/hook', ARRAY['transaction.completed'], 's')"),
            {"id": webhook, "owner": str(uuid.uuid4())})
        connection.execute(text(
            "INSERT INTO notifications.events (id, source, type, body, user_ids) VALUES "
            "(:id, 'transactions', 'transaction.completed', '{}', ARRAY[]::uuid[])"),
            {"id": event})
        # due 120 s ago; due 600 s ago but being sent now (leased); due in an hour; done.
        for due_s, leased, status, channel in ((120, False, "pending", "webhook"),
                                                (600, True, "pending", "webhook"),
                                                (-3600, False, "pending", "webhook"),
                                                (900, False, "delivered", "webhook"),
                                                (30, False, "pending", "email")):
            connection.execute(text(
                "INSERT INTO notifications.deliveries (id, event_id, event_type, user_id, "
                "channel, webhook_id, status, next_attempt_at, locked_until) VALUES "
                "(:id, :event, 'transaction.completed', :user, :channel, :webhook, :status, "
                "now() - make_interval(secs => :due), "
                "CASE WHEN :leased THEN now() + interval '1 minute' END)"),
                {"id": str(uuid.uuid4()), "event": event, "user": str(uuid.uuid4()),
                 "channel": channel, "webhook": webhook if channel == "webhook" else None,
                 "status": status, "due": due_s, "leased": leased})
    values = deliveries_source(engine).read()
    assert values[PENDING] == {("webhook",): 3, ("email",): 1}
    assert 120 <= values[OVERDUE][("webhook",)] < 180
    assert 30 <= values[OVERDUE][("email",)] < 90
