"""The Kafka mirror's relay when the broker lost what it acknowledged: each test loses
the topic's messages one way, and the rule meant for that loss, and only that one,
replays the outbox until the mirror is whole again (services/ledger/mirror_relay/)."""
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from sqlalchemy import select

from paysys_mirror import read_mirror
from services.ledger.mirror_relay import (
    NO_CHECKPOINTS, OFFSET_WENT_BACK, PARTITION_ENDS_EARLY, PARTITIONS_GONE, TOPIC_GONE,
    KafkaUnavailable,
)
from services.ledger.mirror_relay.checkpoints import mirror_partitions
from tests.support.ledger import deposit
from tests.support.mirror_relay import (  # noqa: F401 - fixtures
    assert_mirror_is_the_ledger, drain, kafka_broker, mirror_postings, outbox_postings,
    relays, service, some_postings, unpublished,
)


# Each test checks the rule in MirrorSink.replay_rules. A new posting is made only where a
# test needs an acknowledgement to see by.


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
    replays = relay.sink.replays

    recreate_topic(kafka_broker, relay.settings.topic)  # the producer stays connected
    # The deposit goes to partitions the relay has written before (the settlement
    # account's among them): acknowledged from offset 0 again.
    service.post([deposit(people[0], 1)])
    drain(relay)
    assert relay.sink.replay_rules[replays:] == [OFFSET_WENT_BACK]
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_a_partition_that_ends_at_or_before_the_newest_rounds_first_offset_replays(
        service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker, check_interval_s=0)  # every round checks first
    drain(relay)
    replays = relay.sink.replays

    recreate_topic(kafka_broker, relay.settings.topic)  # every partition there, all empty
    drain(relay)  # nothing new to send: only the check can tell
    assert relay.sink.replay_rules[replays:] == [PARTITION_ENDS_EARLY]
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_partitions_gone_replay(service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker, check_interval_s=0)
    drain(relay)
    replays = relay.sink.replays
    assert checkpointed_partitions(engine, relay.settings.topic) - {0}

    recreate_topic(kafka_broker, relay.settings.topic, partitions=1)
    drain(relay)
    assert relay.sink.replay_rules[replays:] == [PARTITIONS_GONE]
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_a_topic_gone_replays(service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker)  # no periodic check: the round finds the topic missing
    drain(relay)
    replays = relay.sink.replays

    recreate_topic(kafka_broker, relay.settings.topic, partitions=0)
    drain(relay)
    assert relay.sink.replay_rules[replays:] == [TOPIC_GONE]
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_a_broker_restarted_empty_is_refilled_by_the_periodic_check(
        service, engine, kafka_broker, relays):
    people = some_postings(service)
    relay = relays(kafka_broker, check_interval_s=0)
    drain(relay)
    replays = relay.sink.replays

    kafka_broker.restart()  # every message gone, the topic too; no new posting
    # As the loop does: a round on a connection the restart broke fails, and the clients
    # are made again (then the check runs first).
    try:
        drain(relay)
    except KafkaUnavailable:
        relay.close()
        drain(relay)
    # One replay. Which rule sees the loss depends on who makes the topic again first:
    # the relay's check (the topic was gone), or the failed round's producer asking the
    # broker for it (then the partition ends before what it held).
    assert relay.sink.replay_rules[replays:] in ([TOPIC_GONE], [PARTITION_ENDS_EARLY])
    assert unpublished(engine) == 0
    assert_mirror_is_the_ledger(engine, kafka_broker, relay.settings.topic, people)


def test_rows_marked_published_without_checkpoints_replay(service, engine, kafka_broker, relays):
    relay = relays(kafka_broker)
    drain(relay)
    replays = relay.sink.replays
    with engine.begin() as connection:  # as if the checkpoints were never written
        connection.execute(mirror_partitions.delete().where(
            mirror_partitions.c.topic == relay.settings.topic))
    relay.close()
    drain(relay)  # reconnects: checks first
    assert relay.sink.replay_rules[replays:] == [NO_CHECKPOINTS]
    contents = read_mirror(kafka_broker.bootstrap_servers, relay.settings.topic)
    assert contents.duplicates == len(outbox_postings(engine))
    assert mirror_postings(contents) == outbox_postings(engine)
