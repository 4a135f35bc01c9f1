"""The Kafka mirror's relay against real PostgreSQL and a real broker of the test's own
(tansu on a free port): every outbox row published in order, keyed by account, stamped
only once acknowledged, quiet through an outage, and replayed when the broker comes back
empty.

The unit-test database is shared by the whole test process, so the outbox holds other
tests' rows too. Each test gets a new topic, which the relay has no record of: its first
round replays the whole outbox there. The tests therefore compare the topic with the
whole outbox, and look closely at their own accounts."""
import json
import logging
import time
import uuid

import eventlet
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from nameko.containers import ServiceContainer
from nameko.testing.services import worker_factory
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from services.ledger.mirror import AccountSequences, follow, read_mirror
from services.ledger.outbox import outbox
from services.ledger.relay import (
    NO_CHECKPOINTS, OFFSET_WENT_BACK, PARTITION_ENDS_EARLY, PARTITIONS_GONE, TOPIC_GONE,
    KafkaUnavailable, MirrorRelay, Relay, RelaySettings, mirror_partitions,
)
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from shared.money import settlement_account_id
from tests.support.kafka import Broker, running_broker
from harness import process_faults
from harness.servers import wait_for
from tests.unit.test_ledger_postings import deposit, new_id, posting

USD_SETTLEMENT = settlement_account_id("USD")


@pytest.fixture
def kafka_broker():
    with running_broker() as broker:
        yield broker


@pytest.fixture
def service(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


def new_topic():
    return "ledger.test.{}".format(uuid.uuid4().hex[:12])


def settings_for(broker, topic=None, **overrides):
    values = dict(bootstrap_servers=broker.bootstrap_servers, topic=topic or new_topic(),
                  partitions=4, batch_size=500, interval_s=0.05, check_interval_s=3600,
                  timeout_ms=1000, backoff_max_s=0.3)
    values.update(overrides)
    return RelaySettings(**values)


@pytest.fixture
def relays(engine):
    """Makes relays on the tests' database; closes them after the test."""
    made = []

    def make(broker, **overrides):
        relay = Relay(engine, settings_for(broker, **overrides))
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.stop()
        relay.close()


def drain(relay, rounds=50):
    """Rounds until one publishes nothing; how many rows were published."""
    total = 0
    for _ in range(rounds):
        published = relay.step()
        total += published
        if published == 0:
            return total
    raise AssertionError("the relay never ran out of rows")


def unpublished(engine, **where):
    query = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
    if "transaction_ids" in where:
        query = query.where(outbox.c.transaction_id.in_(where["transaction_ids"]))
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()


def outbox_postings(engine):
    """Every ``(account_id, account_seq)`` of the outbox."""
    with engine.connect() as connection:
        return {(row.account_id, row.account_seq) for row in connection.execute(
            select(outbox.c.account_id, outbox.c.account_seq))}


def mirror_postings(contents):
    return {(account, seq) for account, seqs in contents.postings.items() for seq in seqs}


def raw_records(broker, topic):
    """Every record of the topic: ``{partition: [records in offset order]}``."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, request_timeout_ms=2000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found = {tp.partition: [] for tp in partitions}
        empty = 0
        while empty < 2:
            batch = consumer.poll(timeout_ms=300)
            empty = 0 if batch else empty + 1
            for tp, records in batch.items():
                found[tp.partition].extend(records)
        return found
    finally:
        consumer.close()


def opened(service, currency="USD"):
    """A new account of a new owner (the ledger posts only to accounts it has opened)."""
    return service.create_account(new_id(), currency)["id"]


def some_postings(service, accounts=3, transfers=4):
    """Deposits into new accounts and transfers among them; the accounts."""
    people = [opened(service) for _ in range(accounts)]
    results = service.post([deposit(person, 10_000) for person in people])
    assert all(result["status"] == "posted" for result in results)
    for index in range(transfers):
        source, target = people[index % accounts], people[(index + 1) % accounts]
        [result] = service.post([posting(source, target, 100 + index)])
        assert result["status"] == "posted"
    return people


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
    assert (relay.producer, relay.admin) == (None, None)
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
    replays = relay.replays
    people = some_postings(service, accounts=2, transfers=2)

    stamp = relay.stamp

    def crash(*args):
        raise OperationalError("UPDATE ledger.outbox", {}, Exception("server closed"))

    monkeypatch.setattr(relay, "stamp", crash)
    with pytest.raises(OperationalError):
        relay.step()  # sent and acknowledged, never stamped
    assert unpublished(engine) > 0
    monkeypatch.setattr(relay, "stamp", stamp)
    drain(relay)
    assert unpublished(engine) == 0
    assert relay.replays == replays  # no loss seen here: the rows only went again

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
    replays = relay.replays
    results = service.post([deposit(opened(service), 100 + n) for n in range(3)])
    rows = round_rows(engine, [result["transaction_id"] for result in results])
    assert len(rows) == 6
    acknowledged = 3

    # The broker stops answering (SIGSTOP) once the first three messages of the round are
    # acknowledged, before the fourth is sent.
    send, futures = relay.producer.send, []

    def send_then_pause_the_broker(*args, **kwargs):
        if len(futures) == acknowledged:
            for future in futures:
                future.get(timeout=10)
            process_faults.pause(kafka_broker.process.pid)
        futures.append(send(*args, **kwargs))
        return futures[-1]

    monkeypatch.setattr(relay.producer, "send", send_then_pause_the_broker)
    try:
        with pytest.raises(KafkaUnavailable, match="3 of 6 messages acknowledged"):
            relay.step()
    finally:
        process_faults.resume(kafka_broker.process.pid)
    assert stamped(engine, rows) == {row: index < acknowledged for index, row in enumerate(rows)}

    relay.close()  # what the loop does after a failed round
    drain(relay)
    assert relay.replays == replays  # nothing was lost: the rest only went again
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


def read_applied(broker, topic, expected):
    """``{account_id: [seqs applied]}`` by a consumer following the rule of mirror.py,
    once it has applied ``expected`` postings (or after ten seconds)."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             request_timeout_ms=2000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        applied, count = {}, 0
        sequences = AccountSequences()
        deadline = time.monotonic() + 10
        while count < expected and time.monotonic() < deadline:
            for message in follow(consumer, sequences, poll_timeout_ms=200, idle_polls=1):
                applied.setdefault(message["account_id"], []).append(message["account_seq"])
                count += 1
        return applied
    finally:
        consumer.close()


def test_one_relay_at_a_time_per_database(service, engine, kafka_broker, relays):
    relay = relays(kafka_broker)
    [result] = service.post([deposit(opened(service), 900)])
    with engine.begin() as connection:  # another ledger process's relay, mid-round
        connection.execute(text("SELECT pg_advisory_xact_lock(7283912)"))
        assert relay.step() == 0
        assert unpublished(engine, transaction_ids=[result["transaction_id"]]) == 2
    drain(relay)
    assert unpublished(engine, transaction_ids=[result["transaction_id"]]) == 0


# --- the broker comes back empty ------------------------------------------------------------


def assert_mirror_is_the_ledger(engine, broker, topic, accounts=()):
    contents = read_mirror(broker.bootstrap_servers, topic)
    assert mirror_postings(contents) == outbox_postings(engine)
    for account in accounts:
        seqs = contents.postings[account]
        assert seqs == set(range(1, max(seqs) + 1))  # no gap
    applied = read_applied(broker, topic, contents.distinct)
    for account in accounts:
        # After dedupe a consumer has every posting once, in order.
        assert applied[account] == sorted(contents.postings[account])
    return contents


# Each test loses the topic's messages one way, then checks that the rule meant for that
# loss, and only that one, replayed the outbox (Relay.replay_rules), and that the mirror is
# whole again. A new posting is made only where a test needs an acknowledgement to see by.


def recreate_topic(broker, topic, partitions=4):
    """Delete the topic and, unless ``partitions`` is 0, make it again, empty: what an
    operator does, or a broker restarted empty and a consumer that auto-created it. Each
    partition's log starts again at offset 0."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers,
                             request_timeout_ms=2000)
    try:
        admin.delete_topics([topic])
        if partitions:
            admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def checkpointed_partitions(engine, topic):
    with engine.connect() as connection:
        return set(connection.execute(select(mirror_partitions.c.partition).where(
            mirror_partitions.c.topic == topic)).scalars())


def test_an_acknowledged_offset_at_or_below_an_earlier_one_replays(
        service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker)  # no periodic check: only an acknowledgement can tell
    drain(relay)
    replays = relay.replays

    recreate_topic(kafka_broker, relay.settings.topic)  # the producer stays connected
    # The deposit goes to partitions the relay has written before (the settlement
    # account's among them): acknowledged from offset 0 again.
    service.post([deposit(people[0], 1)])
    drain(relay)
    assert relay.replay_rules[replays:] == [OFFSET_WENT_BACK]
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_a_partition_that_ends_at_or_before_the_newest_rounds_first_offset_replays(
        service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker, check_interval_s=0)  # every round checks first
    drain(relay)
    replays = relay.replays

    recreate_topic(kafka_broker, relay.settings.topic)  # every partition there, all empty
    drain(relay)  # nothing new to send: only the check can tell
    assert relay.replay_rules[replays:] == [PARTITION_ENDS_EARLY]
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_partitions_gone_replay(service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker, check_interval_s=0)
    drain(relay)
    replays = relay.replays
    assert checkpointed_partitions(engine, relay.settings.topic) - {0}

    recreate_topic(kafka_broker, relay.settings.topic, partitions=1)
    drain(relay)
    assert relay.replay_rules[replays:] == [PARTITIONS_GONE]
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_a_topic_gone_replays(service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker)  # no periodic check: the round finds the topic missing
    drain(relay)
    replays = relay.replays

    recreate_topic(kafka_broker, relay.settings.topic, partitions=0)
    drain(relay)
    assert relay.replay_rules[replays:] == [TOPIC_GONE]
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_a_broker_restarted_empty_is_refilled_by_the_periodic_check(
        service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker, check_interval_s=0)
    drain(relay)
    replays = relay.replays

    kafka_broker.restart()  # every message gone, the topic too; no new posting
    # As the loop does: a round on a connection the restart broke fails, and the clients
    # are made again (then the check runs first).
    try:
        drain(relay)
    except KafkaUnavailable:
        relay.close()
        drain(relay)
    assert relay.replay_rules[replays:] == [TOPIC_GONE]
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_rows_marked_published_without_checkpoints_replay(service, engine, kafka_broker, relays):
    relay = relays(kafka_broker)
    drain(relay)
    replays = relay.replays
    with engine.begin() as connection:  # as if the checkpoints were never written
        connection.execute(mirror_partitions.delete().where(
            mirror_partitions.c.topic == relay.settings.topic))
    relay.close()
    drain(relay)  # reconnects: checks first
    assert relay.replay_rules[replays:] == [NO_CHECKPOINTS]
    contents = read_mirror(kafka_broker.bootstrap_servers, relay.settings.topic)
    assert contents.duplicates == len(outbox_postings(engine))
    assert mirror_postings(contents) == outbox_postings(engine)


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
        wait_for(lambda: [r for r in caplog.records if r.name == "paysys.ledger.relay"], 10,
                 what="the relay noticing")
        time.sleep(1)  # a few more failed attempts
        outage = [r for r in caplog.records if r.name == "paysys.ledger.relay"]
        assert [r.levelno for r in outage] == [logging.WARNING]  # once per outage
        assert "Kafka unavailable" in outage[0].getMessage()
        # No Kafka client is left retrying in the background either: the relay closed its
        # clients and makes none while nothing listens.
        assert (relay.producer, relay.admin) == (None, None)

        kafka_broker.start()  # empty
        wait_for(lambda: unpublished(engine) == 0, 15, what="the backlog published")
        wait_for(lambda: any("back after" in r.getMessage() for r in caplog.records
                             if r.name == "paysys.ledger.relay"), 15, what="the relay says so")
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
                           bootstrap_servers, ledger_topic=new_topic(), request_timeout_ms=1000,
                           relay_interval_ms=50)
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
