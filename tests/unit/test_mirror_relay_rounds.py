"""The Kafka mirror's relay (services/ledger/mirror_relay/) against real PostgreSQL and a
real broker of the test's own (tansu on a free port): every outbox row published in order,
keyed by account, stamped only once acknowledged, one relay at a time, quiet through an
outage; and the ledger process runs it. The broker that comes back empty:
test_mirror_relay_replay.py."""
import json
import logging
import time

import eventlet
import pytest
from nameko.containers import ServiceContainer
from nameko.testing.services import worker_factory
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from paysys_mirror import read_mirror
from services.ledger.mirror_relay import KafkaUnavailable, MirrorRelay, RelaySettings
from services.ledger.outbox import outbox
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from tests.support.kafka import Broker
from tests.support.ledger import deposit, posting
from tests.support.mirror_relay import (  # noqa: F401 - fixtures
    USD_SETTLEMENT, assert_mirror_is_the_ledger, drain, kafka_broker, mirror_postings,
    new_topic, opened, outbox_postings, raw_records, read_applied, relays, service,
    some_postings, unpublished,
)
from harness import process_faults
from harness.servers import wait_for


# The logger of the relay's loop: its outage and recovery lines.
RELAY_LOOP = "shared.outbox_relay.loop"


# --- publishing ---------------------------------------------------------------------------


def test_every_outbox_row_is_published_in_order_keyed_by_its_account(
        service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker, batch_size=64)  # several rounds
    assert drain(relay) >= 3 * 2 + 4 * 2
    assert unpublished(engine) == 0

    records = raw_records(kafka_broker, relay.settings.topic)
    assert len(records) == 4  # the configured partitions
    seen = {}
    for partition, found in records.items():
        for record in found:
            message = json.loads(record.value)
            # The key is the account: each account's messages share one partition.
            assert record.key == message["account_id"].encode()
            assert seen.setdefault(message["account_id"], partition) == partition
    # Exactly the outbox: every row once (a new topic: nothing to replay twice).
    messages = [json.loads(record.value) for found in records.values() for record in found]
    assert len(messages) == len(outbox_postings(engine))
    assert {(m["account_id"], m["account_seq"]) for m in messages} == outbox_postings(engine)
    # Each account's messages in its order, and the payload as the outbox holds it.
    with engine.connect() as connection:
        payloads = {(row.account_id, row.account_seq): row.payload for row in connection.execute(
            select(outbox.c.account_id, outbox.c.account_seq, outbox.c.payload)
            .where(outbox.c.account_id.in_(people)))}
    for person in people + [USD_SETTLEMENT]:
        in_partition = [json.loads(r.value) for r in records[seen[person]]
                        if r.key == person.encode()]
        seqs = [message["account_seq"] for message in in_partition]
        assert seqs == list(range(1, len(seqs) + 1))
        if person != USD_SETTLEMENT:
            assert {(person, m["account_seq"]): m for m in in_partition} == {
                key: value for key, value in payloads.items() if key[0] == person}
            assert in_partition[0]["posting"]["type"] == "deposit"


def test_nothing_is_stamped_while_the_broker_is_down(service, engine, relays):
    broker = Broker()  # never started: nothing listens on its port
    relay = relays(broker)
    [result] = service.post([deposit(opened(service), 500)])
    # A refused connection costs nothing: the relay asks the port before it makes a Kafka
    # client (which would retry in the background for its whole timeout).
    with pytest.raises(KafkaUnavailable, match="nothing listens at"):
        relay.step()
    assert (relay.sink.clients.producer, relay.sink.clients.admin) == (None, None)
    assert unpublished(engine, transaction_ids=[result["transaction_id"]]) == 2


def test_a_row_is_stamped_only_after_the_broker_acknowledged_it(
        service, engine, kafka_broker, relays):
    relay = relays(kafka_broker)
    drain(relay)
    kafka_broker.stop()
    [result] = service.post([deposit(opened(service), 700)])
    # Connected, the producer sends; no acknowledgement comes, so nothing is stamped.
    with pytest.raises(KafkaUnavailable):
        relay.step()
    assert unpublished(engine, transaction_ids=[result["transaction_id"]]) == 2
    relay.close()

    kafka_broker.start()  # back, and empty
    drain(relay)
    assert unpublished(engine) == 0
    contents = read_mirror(kafka_broker.bootstrap_servers, relay.settings.topic)
    assert mirror_postings(contents) == outbox_postings(engine)


def test_a_crash_between_send_and_stamp_only_republishes(
        service, engine, kafka_broker, relays, monkeypatch):
    relay = relays(kafka_broker)
    drain(relay)
    replays = relay.sink.replays
    people = some_postings(service, accounts=2, transfers=2)

    record = relay.sink.record

    def crash(*args):
        raise OperationalError("UPDATE ledger.outbox", {}, Exception("server closed"))

    monkeypatch.setattr(relay.sink, "record", crash)
    with pytest.raises(OperationalError):
        relay.step()  # sent and acknowledged, never stamped
    assert unpublished(engine) > 0
    monkeypatch.setattr(relay.sink, "record", record)
    drain(relay)
    assert unpublished(engine) == 0
    assert relay.sink.replays == replays  # no loss seen here: the rows only went again

    contents = read_mirror(kafka_broker.bootstrap_servers, relay.settings.topic)
    assert contents.duplicates >= 2 * 2 + 2 * 2  # the crashed round, sent twice
    assert mirror_postings(contents) == outbox_postings(engine)
    assert contents.gaps() == {} and contents.out_of_order == []
    # A consumer that skips duplicates applies each posting once, in order.
    applied = read_applied(kafka_broker, relay.settings.topic, contents.distinct)
    for person in people:
        assert applied[person] == sorted(contents.postings[person])
        assert applied[person] == list(range(1, len(applied[person]) + 1))


def round_rows(engine, transaction_ids):
    """The outbox ids of these transactions' rows, in the order a round sends them."""
    with engine.connect() as connection:
        return list(connection.execute(
            select(outbox.c.id).where(outbox.c.transaction_id.in_(transaction_ids))
            .order_by(outbox.c.id)).scalars())


def stamped(engine, ids):
    with engine.connect() as connection:
        return {row.id: row.published_at is not None for row in connection.execute(
            select(outbox.c.id, outbox.c.published_at).where(outbox.c.id.in_(ids)))}


def test_a_round_acknowledged_in_part_stamps_only_that_part_and_sends_the_rest_again(
        service, engine, kafka_broker, relays, monkeypatch):
    relay = relays(kafka_broker)
    drain(relay)
    replays = relay.sink.replays
    results = service.post([deposit(opened(service), 100 + n) for n in range(3)])
    rows = round_rows(engine, [result["transaction_id"] for result in results])
    assert len(rows) == 6
    acknowledged = 3

    # The broker stops answering (SIGSTOP) once the first three messages of the round are
    # acknowledged, before the fourth is sent.
    send, futures = relay.sink.clients.producer.send, []

    def send_then_pause_the_broker(*args, **kwargs):
        if len(futures) == acknowledged:
            for future in futures:
                future.get(timeout=10)
            process_faults.pause(kafka_broker.process.pid)
        futures.append(send(*args, **kwargs))
        return futures[-1]

    monkeypatch.setattr(relay.sink.clients.producer, "send", send_then_pause_the_broker)
    try:
        with pytest.raises(KafkaUnavailable, match="3 of 6 messages acknowledged"):
            relay.step()
    finally:
        process_faults.resume(kafka_broker.process.pid)
    assert stamped(engine, rows) == {row: index < acknowledged for index, row in enumerate(rows)}

    relay.close()  # what the loop does after a failed round
    drain(relay)
    assert relay.sink.replays == replays  # nothing was lost: the rest only went again
    assert unpublished(engine) == 0
    published = [json.loads(record.value) for found in raw_records(
        kafka_broker, relay.settings.topic).values() for record in found]
    with engine.connect() as connection:
        keys = {row.id: (row.account_id, row.account_seq) for row in connection.execute(
            select(outbox.c.id, outbox.c.account_id, outbox.c.account_seq)
            .where(outbox.c.id.in_(rows)))}
    sent = [(message["account_id"], message["account_seq"]) for message in published]
    # The acknowledged part went once; the rest at least once (the paused broker may still
    # have taken the first try).
    assert [sent.count(keys[row]) for row in rows[:acknowledged]] == [1] * acknowledged
    assert all(sent.count(keys[row]) >= 1 for row in rows[acknowledged:])


def test_one_relay_at_a_time_per_database(service, engine, kafka_broker, relays):
    relay = relays(kafka_broker)
    [result] = service.post([deposit(opened(service), 900)])
    with engine.begin() as connection:  # another ledger process's relay, mid-round
        connection.execute(text("SELECT pg_advisory_xact_lock(7283912)"))
        assert relay.step() == 0
        assert unpublished(engine, transaction_ids=[result["transaction_id"]]) == 2
    drain(relay)
    assert unpublished(engine, transaction_ids=[result["transaction_id"]]) == 0


# --- the loop -------------------------------------------------------------------------------


def test_the_loop_rides_out_an_outage_quietly_and_catches_up(
        service, engine, kafka_broker, relays, caplog):
    caplog.set_level(logging.INFO)
    relay = relays(kafka_broker, check_interval_s=0.5)
    thread = eventlet.spawn(relay.run)
    try:
        people = some_postings(service, accounts=2, transfers=2)
        wait_for(lambda: unpublished(engine) == 0, 10, what="everything published")

        caplog.clear()
        kafka_broker.stop()
        during = []
        for _ in range(6):
            [result] = service.post([posting(people[0], people[1], 1)])
            assert result["status"] == "posted"  # the ledger posts whatever Kafka does
            during.append(result["transaction_id"])
            time.sleep(0.5)
        assert unpublished(engine, transaction_ids=during) == 2 * len(during)
        wait_for(lambda: [r for r in caplog.records if r.name == RELAY_LOOP], 10,
                 what="the relay noticing")
        time.sleep(1)  # a few more failed attempts
        outage = [r for r in caplog.records if r.name == RELAY_LOOP]
        assert [r.levelno for r in outage] == [logging.WARNING]  # once per outage
        assert "Kafka unavailable" in outage[0].getMessage()
        # No Kafka client is left retrying in the background either: the relay closed its
        # clients and makes none while nothing listens.
        assert (relay.sink.clients.producer, relay.sink.clients.admin) == (None, None)

        kafka_broker.start()  # empty
        wait_for(lambda: unpublished(engine) == 0, 15, what="the backlog published")
        wait_for(lambda: any("back after" in r.getMessage() for r in caplog.records
                             if r.name == RELAY_LOOP), 15, what="the relay says so")
        wait_for(lambda: mirror_postings(read_mirror(
            kafka_broker.bootstrap_servers, relay.settings.topic)) == outbox_postings(engine),
            10, interval_s=0.5, what="the mirror equal to the ledger")
    finally:
        relay.stop()
        thread.wait()
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


class RelayOnly:
    """A service with nothing but the ledger's relay: the provider's life cycle."""

    name = "ledger_relay_only"
    relay = MirrorRelay()


def test_the_ledger_process_runs_the_relay_and_stops_it(
        service, engine, service_config, kafka_broker):
    config = dict(service_config)
    config["kafka"] = dict(service_config["kafka"], bootstrap_servers=kafka_broker.
                           bootstrap_servers, ledger_topic=new_topic(), request_timeout_ms=1000)
    config["ledger"] = dict(service_config["ledger"], relay_interval_ms=50)
    container = ServiceContainer(RelayOnly, config)
    container.start()
    try:
        [result] = service.post([deposit(opened(service), 300)])
        wait_for(lambda: unpublished(engine, transaction_ids=[result["transaction_id"]]) == 0,
                 10, what="published by the service's relay")
    finally:
        container.stop()
    # The relay's loop ended by itself when asked to stop (a loop the provider had to kill
    # raises GreenletExit here).
    [provider] = [dependency for dependency in container.dependencies
                  if isinstance(dependency, MirrorRelay)]
    assert provider.thread.dead and provider.thread.wait() is None
    contents = read_mirror(kafka_broker.bootstrap_servers, config["kafka"]["ledger_topic"])
    assert mirror_postings(contents) == outbox_postings(engine)


def test_a_posting_wakes_the_relay(engine):
    # The ledger's post() tells the relay there is something to publish.
    relay_handle = type("Handle", (), {"woken": 0,
                                       "wake": lambda self: setattr(self, "woken", 1)})()
    ledger = worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"),
                            relay=relay_handle)
    ledger.post([deposit(opened(ledger), 1)])
    assert relay_handle.woken == 1


def test_settings_come_from_the_configuration(service_config):
    settings = RelaySettings.from_config(service_config)
    assert settings.topic == service_config["kafka"]["ledger_topic"]
    assert settings.timeout_ms == int(service_config["kafka"]["request_timeout_ms"])
    assert settings.batch_size > 0 and settings.partitions > 0
    assert settings.delivery_timeout_ms > settings.timeout_ms


def test_each_message_carries_the_traceparent_of_the_posting_that_wrote_it(
        service, engine, kafka_broker, relays):
    from shared import tracing

    traced_person, untraced_person = opened(service), opened(service)
    sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tracing.traced(sent) as span:
        [result] = service.post([deposit(traced_person, 500)])
    assert result["status"] == "posted"
    [result] = service.post([deposit(untraced_person, 500)])
    relay = relays(kafka_broker)
    drain(relay)

    headers = {}
    for found in raw_records(kafka_broker, relay.settings.topic).values():
        for record in found:
            headers[json.loads(record.value)["account_id"]] = dict(record.headers or [])
    assert headers[traced_person] == {"traceparent": span.traceparent.encode()}
    assert tracing.trace_id_of(span.traceparent) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert headers[untraced_person] == {}
