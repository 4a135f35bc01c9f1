"""Reading the Kafka mirror (paysys_mirror) from a real broker of the test's
own: the whole-topic reader finds duplicates, gaps and order breaks, and the consumer
loop a downstream team copies applies each posting once, in its account's order."""
import json
import threading
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from paysys_mirror import (
    DUPLICATE, GAP, NEW, AccountSequences, MirrorUnavailable, follow, read_mirror,
)
from tests.support.kafka import Broker, running_broker

A, B = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
def kafka_broker():
    with running_broker() as broker:
        yield broker


def message(account, seq):
    return json.dumps({"account_id": account, "account_seq": seq, "amount": 1}).encode()


def new_topic(broker, partitions=3):
    topic = "mirror.test.{}".format(uuid.uuid4().hex[:12])
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers, request_timeout_ms=2000)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    return topic


def produce(broker, topic, values, partition=None):
    """Send ``values`` (bytes, or (account, seq)) in order, keyed by account; flushed."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all",
                             enable_idempotence=False, max_in_flight_requests_per_connection=1)
    try:
        for value in values:
            if isinstance(value, tuple):
                producer.send(topic, key=value[0].encode(), value=message(*value),
                              partition=partition)
            else:
                producer.send(topic, value=value, partition=partition)
        producer.flush(5)
    finally:
        producer.close(timeout=5)


def test_the_reader_counts_duplicates_and_finds_gaps_and_order_breaks(kafka_broker):
    topic = new_topic(kafka_broker)
    produce(kafka_broker, topic, [
        (A, 1), (A, 2), (A, 2), (A, 4),  # a duplicate, and 3 never came
        (B, 2), (B, 1),                  # B complete, but out of order
        b"not json", json.dumps({"what": "else"}).encode(),
    ])
    contents = read_mirror(kafka_broker.bootstrap_servers, topic, timeout_s=10)
    assert contents.messages == 6 and contents.unreadable == 2
    assert contents.postings == {A: {1, 2, 4}, B: {1, 2}}
    assert contents.distinct == 5
    assert contents.duplicates == 1
    assert contents.gaps() == {A: [3]}
    assert contents.out_of_order == [(B, 1)]
    assert contents.has(A, 4) and not contents.has(A, 3) and not contents.has("nobody", 1)


def test_the_reader_reads_every_record_of_multi_record_batches(kafka_broker):
    # tansu answers a partition's end offset as its last record batch's first offset
    # + 1: a reader that stopped there would miss the rest of the last batch.
    topic = new_topic(kafka_broker, partitions=1)
    for start in (1, 201, 401):
        produce(kafka_broker, topic, [(A, seq) for seq in range(start, start + 200)])
    contents = read_mirror(kafka_broker.bootstrap_servers, topic)
    assert contents.messages == 600 and contents.postings[A] == set(range(1, 601))
    assert contents.gaps() == {} and contents.duplicates == 0


def test_a_topic_written_all_the_while_is_read_to_where_it_ended_at_the_start(kafka_broker):
    # The relay under light load writes a few messages every few tens of milliseconds: a
    # reader that waited for a quiet poll never finished (`paysys reconcile` exited 2).
    topic = new_topic(kafka_broker)
    produce(kafka_broker, topic, [(A, seq) for seq in range(1, 501)])
    stop, written = threading.Event(), []

    def keep_writing():
        producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
        try:
            seq = 0
            while not stop.is_set():
                for _ in range(3):
                    seq += 1
                    producer.send(topic, key=B.encode(), value=message(B, seq))
                producer.flush(5)
                written.append(seq)
                time.sleep(0.03)
        finally:
            producer.close(timeout=5)

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        while len(written) < 5:  # the topic is busy before the read begins
            time.sleep(0.01)
        before = written[-1]
        contents = read_mirror(kafka_broker.bootstrap_servers, topic, timeout_s=10)
    finally:
        stop.set()
        writer.join(10)
    assert contents.postings[A] == set(range(1, 501))
    assert set(range(1, before + 1)) <= contents.postings[B]
    assert sum(contents.offsets.values()) == contents.messages


def test_a_topic_that_does_not_exist_is_an_empty_mirror(kafka_broker):
    contents = read_mirror(kafka_broker.bootstrap_servers, "no.such.topic")
    assert (contents.messages, contents.distinct, contents.postings) == (0, 0, {})
    # Reading did not create it.
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap_servers, group_id=None)
    try:
        assert "no.such.topic" not in consumer.topics()
    finally:
        consumer.close()


def test_a_broker_that_does_not_answer_is_mirror_unavailable():
    broker = Broker()  # never started
    # It gives up at the end of the client's bootstrap timeout, and says why.
    with pytest.raises(MirrorUnavailable, match="Unable to bootstrap"):
        read_mirror(broker.bootstrap_servers, "ledger.postings", request_timeout_ms=1000)


def test_the_consumer_rule():
    sequences = AccountSequences({A: 2})
    assert [sequences.classify(A, seq) for seq in (1, 2, 3, 4)] == [
        DUPLICATE, DUPLICATE, NEW, GAP]
    assert sequences.classify(B, 1) == NEW and sequences.classify(B, 2) == GAP
    sequences.applied(A, 3)
    assert sequences.classify(A, 4) == NEW


def assigned_consumer(broker, topic, offset=None):
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    for tp in partitions:
        if offset is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, offset)
    return consumer


def followed(consumer, sequences):
    try:
        return [(posting["account_id"], posting["account_seq"])
                for posting in follow(consumer, sequences, poll_timeout_ms=300, idle_polls=5)]
    finally:
        consumer.close()


def test_follow_applies_each_posting_once_in_its_accounts_order(kafka_broker):
    topic = new_topic(kafka_broker)
    produce(kafka_broker, topic, [(A, 1), (B, 1), (A, 2), (A, 1), (A, 2), (B, 2), (A, 3),
                                  b"noise"])
    sequences = AccountSequences()
    applied = followed(assigned_consumer(kafka_broker, topic), sequences)
    assert [seq for account, seq in applied if account == A] == [1, 2, 3]
    assert [seq for account, seq in applied if account == B] == [1, 2]
    assert sequences.last == {A: 3, B: 2}


def test_follow_rewinds_once_for_a_posting_replayed_before_its_position(kafka_broker):
    # After the broker lost its log, the relay replayed it: the posting this consumer
    # needs next (A 2) now sits before the offset it resumes from.
    topic = new_topic(kafka_broker, partitions=1)
    produce(kafka_broker, topic, [(A, 1), (A, 2), (A, 3), (A, 4)])
    applied = followed(assigned_consumer(kafka_broker, topic, offset=2),
                       AccountSequences({A: 1}))
    assert applied == [(A, 2), (A, 3), (A, 4)]


def test_follow_does_not_loop_on_a_gap_nothing_fills(kafka_broker):
    topic = new_topic(kafka_broker, partitions=1)
    produce(kafka_broker, topic, [(A, 1), (A, 3)])
    sequences = AccountSequences()
    started = time.monotonic()
    assert followed(assigned_consumer(kafka_broker, topic), sequences) == [(A, 1)]
    assert len(sequences.rewound) == 1
    assert time.monotonic() - started < 10
