"""The Kafka mirror relay's tests (test_mirror_relay_*.py): their relays, the broker of
each test, postings to relay, and what the outbox and the topic hold.

The unit-test database is shared by the whole test process, so the outbox holds other
tests' rows too. Each test gets a new topic, which the relay has no record of: its first
round replays the whole outbox there. The tests therefore compare the topic with the
whole outbox, and look closely at their own accounts."""
import time
import uuid

import pytest
from kafka import KafkaConsumer, TopicPartition
from nameko.testing.services import worker_factory
from sqlalchemy import func, select

from paysys_mirror import AccountSequences, follow, read_mirror
from services.ledger.mirror_relay import RelaySettings, mirror_relay
from services.ledger.outbox import outbox
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from shared.money import settlement_account_id
from tests.support.kafka import running_broker
from tests.support.ledger import deposit, new_id, posting

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
        relay = mirror_relay(engine, settings_for(broker, **overrides))
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


def read_applied(broker, topic, expected):
    """``{account_id: [seqs applied]}`` by a consumer following the rule of paysys_mirror,
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
