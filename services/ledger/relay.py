"""The Kafka mirror's relay: publishes the ledger's outbox to Kafka, and replays it when
the broker has lost what it acknowledged.

What it sends: one message per outbox row (one per entry), in outbox id order, to the
topic ``kafka.ledger_topic``, keyed by the account id (same key, same partition: each
account's messages stay in its order), the value the row's JSON payload (the entry, its
``account_seq`` and the posting; services/ledger/outbox.py).

Never lost: a round reads up to ``batch_size`` unpublished rows, sends them with
``acks="all"``, waits for the broker's acknowledgements and only then stamps
``published_at``, in the same database transaction that read them. A crash or a broker
failure between the send and the stamp leaves the rows unpublished, so they are sent
again: a duplicate, which a consumer recognises by ``(account_id, account_seq)``. When
only part of a round is acknowledged, the acknowledged rows before the first failure are
stamped and everything from the failure on is sent again, in order.

Order: one producer, one request in flight per connection and retries inside the
delivery timeout, so a partition receives the round's messages in the order sent; and an
account's outbox ids follow its commit order (ledger_0004). A consumer may still see an
account's messages twice (replays) or, after a failed send, a later sequence number
before the resend of an earlier one: it applies ``seq == last + 1``, skips ``seq <= last``
and waits on a gap (services/ledger/mirror.py, ``follow``).

Replay when the broker lost messages (the embedded broker keeps them in memory only).
The rule, checked at every acknowledgement, after every (re)connection, every
``check_interval_s`` and whenever the topic is missing: the topic lost messages, and
every outbox row is unpublished again, when

* an acknowledged offset is at or below one acknowledged before in its partition (the
  partition's log started again), or
* a partition ends (``ListOffsets`` latest) at or before the first offset the newest
  round that wrote to it was given (the round is no longer there), or the partition or
  the topic is gone, or
* rows are marked published but nothing records what the topic holds (a new topic name,
  a checkpoint table emptied by hand).

Each replay names the rule that fired (in its log line and ``Relay.replay_rules``):
``offset_went_back``, ``partition_ends_early``, ``partitions_gone``, ``topic_gone`` or
``no_checkpoints``.

The checkpoints live in ``ledger.mirror_partitions``, written in the transaction that
stamps the rows. After a replay the relay reconnects (new clients, a fresh view of the
topic) and republishes from the lowest outbox id. Every round first makes sure the topic
exists: tansu, restarted, acknowledges writes to a topic it does not have and keeps them
nowhere.

Why not compare message counts (sum of end − beginning offsets) with the number of
published rows: duplicates make the topic longer than the outbox, and tansu 0.6 answers
``ListOffsets`` with the base offset of the partition's last record batch + 1, not the
offset after its last record, so a count would call a whole topic short and replay it
for ever. The rule above holds for both answers: whichever it gives, a partition holding
the newest round ends after that round's first offset.

Limits: it sees a partition that lost its tail or everything (what a broker restart
does), not a hole in the middle of a log that kept its end (no Kafka failure mode makes
one; ``paysys reconcile`` would list it as missing). A loss noticed only at the next
periodic check (the broker restarted between the topic check and the send, into a
partition never written before) is repaired within ``check_interval_s``. It assumes the
relay is the topic's only producer and the topic keeps its messages (retention ``-1``,
which the relay asks for when it creates the topic). A replay republishes every row, so
consumers see every posting again and skip what they already applied; the rows of the
round that noticed the loss are already in the new log ahead of the replay, so their
accounts show a gap there that the replay fills (``follow`` rewinds for it).

One relay per database: each round runs under a transaction-scoped advisory lock, so a
second ledger process's relay idles while the first one works.
"""
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass

import eventlet
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic, OffsetSpec
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import DefaultPartitioner
from nameko.extensions import DependencyProvider
from sqlalchemy import (
    BigInteger, Column, DateTime, Integer, MetaData, Table, Text, cast, delete, exists, func,
    select, update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from services.ledger.outbox import outbox
from shared.config import kafka_bootstrap_servers
from shared.db import make_engine

log = logging.getLogger("paysys.ledger.relay")

ROUND_GAP_S = 0.05

# The rules that find the topic short (the module docstring's list), named in each replay.
OFFSET_WENT_BACK = "offset_went_back"  # an acknowledged offset at or below an earlier one
PARTITION_ENDS_EARLY = "partition_ends_early"  # ends at or before the newest round's start
PARTITIONS_GONE = "partitions_gone"
TOPIC_GONE = "topic_gone"
NO_CHECKPOINTS = "no_checkpoints"  # rows marked published, nothing records the topic
# pg_try_advisory_xact_lock key of the relay rounds ("ledger relay", any fixed number).
RELAY_LOCK_KEY = 7_283_912

metadata = MetaData(schema="ledger")
mirror_partitions = Table(
    "mirror_partitions",
    metadata,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("round_first_offset", BigInteger, nullable=False),
    Column("last_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


class RememberedPartitions(DefaultPartitioner):
    """Kafka's own partitioner (murmur2 of the key, as the Java client), remembered per
    key: an account's messages go to the partition they always went to, without hashing
    its id in Python for every message again."""

    def __init__(self, size=100_000):
        super().__init__()
        self.size = size
        self.known = {}

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        remembered = (topic, serialized_key, len(cluster.partitions_for_topic(topic) or ()))
        found = self.known.get(remembered)
        if found is None or serialized_key is None:
            found = super().partition(topic, key, serialized_key, value, serialized_value,
                                      cluster)
            if len(self.known) >= self.size:
                self.known.clear()
            self.known[remembered] = found
        return found


class KafkaUnavailable(Exception):
    """The broker did not answer, or did not acknowledge everything sent."""


@dataclass
class RelaySettings:
    bootstrap_servers: str
    topic: str
    partitions: int = 4
    replication_factor: int = 1
    batch_size: int = 500
    interval_s: float = 0.5
    check_interval_s: float = 10.0
    timeout_ms: int = 3000
    backoff_max_s: float = 5.0

    @classmethod
    def from_config(cls, config):
        kafka = config["kafka"]
        return cls(
            bootstrap_servers=kafka_bootstrap_servers(config),
            topic=kafka["ledger_topic"],
            partitions=int(kafka.get("ledger_partitions", 4)),
            replication_factor=int(kafka.get("ledger_replication_factor", 1)),
            batch_size=int(kafka.get("relay_batch_size", 500)),
            interval_s=int(kafka.get("relay_interval_ms", 500)) / 1000,
            check_interval_s=float(kafka.get("relay_check_interval_s", 10)),
            timeout_ms=int(kafka["request_timeout_ms"]),
            backoff_max_s=int(kafka.get("relay_backoff_max_ms", 5000)) / 1000,
        )

    @property
    def delivery_timeout_ms(self):
        # kafka-python wants at least linger (0) + request timeout; a little more lets
        # one retry of a lost connection fit.
        return self.timeout_ms + 500


def addresses(bootstrap_servers):
    """``[(host, port)]`` of a ``host:port,host:port`` list (``PLAINTEXT://`` allowed)."""
    found = []
    for address in bootstrap_servers.split(","):
        address = address.strip().split("://")[-1]
        host, _, port = address.rpartition(":")
        if host and port.isdigit():
            found.append((host.strip("[]"), int(port)))
    return found


def probe(bootstrap_servers, timeout_s):
    """Does any bootstrap address accept a TCP connection? Asked before any Kafka client
    is made, because a client left connecting to a dead broker logs every few
    milliseconds (kafka-python), and this asks silently."""
    for host, port in addresses(bootstrap_servers):
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            return True
        except OSError:
            continue
    return False


def encode(payload):
    """A message's value: the payload's JSON (as the outbox gives it, or made from a dict)."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


class Relay:
    """The outbox relay of one process: its Kafka clients, its rounds and its loop."""

    def __init__(self, engine, settings, clock=time.monotonic):
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.producer = None
        self.admin = None
        self.replay_rules = []  # the rule behind each replay of this relay, oldest first
        self._next_check = 0.0
        self._down = None  # (what, since) while something the relay needs is unavailable
        self._reconnect = False
        self._wake = threading.Event()
        self._stopping = threading.Event()

    @property
    def replays(self):
        """How many times this relay found the mirror short."""
        return len(self.replay_rules)

    # --- the loop ---------------------------------------------------------------------

    def run(self):
        """Publish until ``stop()``: a round at once while rows are waiting, else every
        ``interval_s`` or when woken. A dead broker or database costs the loop a
        backoff (doubling up to ``backoff_max_s``) and one log line per outage; nothing
        here ever raises, since an exception in a managed thread kills the service."""
        backoff_s = self.settings.interval_s
        while not self._stopping.is_set():
            try:
                published = self.step()
            except KafkaUnavailable as error:
                self._unavailable("Kafka", error)
                self.close()
            except SQLAlchemyError as error:
                self._unavailable("PostgreSQL", error)
            except Exception as error:  # noqa: BLE001 - a bug must not kill the service
                self._unavailable("the relay", error, exc_info=True)
                self.close()
            else:
                self._available()
                backoff_s = self.settings.interval_s
                if published >= self.settings.batch_size:
                    eventlet.sleep(0)  # more waiting: go on, after letting others run
                else:
                    # A short pause before the next round lets the postings of a busy
                    # moment share it, instead of one Kafka round trip per posting.
                    self._stopping.wait(ROUND_GAP_S)
                    self._wake.wait(self.settings.interval_s)
                    self._wake.clear()
                continue
            self._stopping.wait(backoff_s)
            backoff_s = min(backoff_s * 2, self.settings.backoff_max_s)
        self.close()

    def step(self):
        """Connect if need be, then one round; the number of rows published. A round
        that finds the topic short ends with the replay: a second one, with new
        clients, starts publishing it."""
        try:
            for _ in range(2):
                if self._reconnect:
                    self.close()
                    self._reconnect = False
                if self.producer is None:
                    self.connect()
                published = self.publish_round()
                if not self._reconnect:
                    break
            return published
        except KafkaError as error:
            raise KafkaUnavailable("{}: {}".format(type(error).__name__, error)) from error

    def wake(self):
        """Something was posted: publish it now rather than at the next interval."""
        self._wake.set()

    def stop(self):
        self._stopping.set()
        self._wake.set()

    def _unavailable(self, what, error, exc_info=False):
        if self._down is None or self._down[0] != what:
            log.warning("Kafka mirror relay: %s unavailable (%s); publishing resumes when it "
                        "is back, nothing is lost meanwhile", what,
                        "{}: {}".format(type(error).__name__, error), exc_info=exc_info)
            self._down = (what, self.clock())

    def _available(self):
        if self._down is not None:
            what, since = self._down
            log.info("Kafka mirror relay: %s back after %.1f s", what, self.clock() - since)
            self._down = None

    # --- Kafka clients ----------------------------------------------------------------

    def connect(self):
        settings = self.settings
        if not probe(settings.bootstrap_servers, settings.timeout_ms / 1000):
            raise KafkaUnavailable("nothing listens at {}".format(settings.bootstrap_servers))
        servers = settings.bootstrap_servers.split(",")
        try:
            self.admin = KafkaAdminClient(
                bootstrap_servers=servers, client_id="paysys-ledger-relay",
                request_timeout_ms=settings.timeout_ms,
                bootstrap_timeout_ms=settings.timeout_ms)
            self.producer = KafkaProducer(
                bootstrap_servers=servers,
                client_id="paysys-ledger-relay",
                acks="all",
                # Ordering comes from one request in flight; duplicates are the
                # consumers' to skip (by account_seq) whatever the producer does, and
                # an idempotent producer's state does not survive a broker that
                # restarted empty.
                enable_idempotence=False,
                max_in_flight_requests_per_connection=1,
                batch_size=256 * 1024,
                linger_ms=0,
                request_timeout_ms=settings.timeout_ms,
                delivery_timeout_ms=settings.delivery_timeout_ms,
                max_block_ms=settings.timeout_ms,
                bootstrap_timeout_ms=settings.timeout_ms,
                allow_auto_create_topics=False,
                reconnect_backoff_max_ms=1000,
                partitioner=RememberedPartitions(),
            )
            self.ensure_topic()
        except BaseException:
            self.close()
            raise
        self._next_check = 0.0  # whatever happened while away: check the topic first

    def ensure_topic(self):
        """Create the topic if the broker does not have it (with the configured
        partitions and retention for ever). True if it was created."""
        settings = self.settings
        if settings.topic in self.admin.list_topics():
            return False
        try:
            self.admin.create_topics([NewTopic(
                settings.topic, settings.partitions, settings.replication_factor,
                topic_configs={"retention.ms": "-1"})])
        except TopicAlreadyExistsError:
            return False
        log.info("Kafka mirror relay: created topic %s (%d partitions)",
                 settings.topic, settings.partitions)
        return True

    def close(self):
        producer, admin, self.producer, self.admin = self.producer, self.admin, None, None
        for client in (producer, admin):
            if client is None:
                continue
            try:
                # Unacknowledged sends expire within the delivery timeout; the rows
                # stay unpublished and go again.
                client.close(**({"timeout": self.settings.delivery_timeout_ms / 1000 + 1}
                                if client is producer else {}))
            except Exception:  # noqa: BLE001 - closing a broken client may fail; drop it
                pass

    # --- one round --------------------------------------------------------------------

    def publish_round(self):
        """Publish up to ``batch_size`` unpublished rows; the number acknowledged (0: the
        outbox had nothing to publish, or another relay holds the lock). Raises
        KafkaUnavailable after stamping what was acknowledged before a failure."""
        failure = None
        with self.engine.begin() as connection:
            locked = connection.execute(
                select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY))).scalar_one()
            if not locked:
                return 0  # another process's relay is at work
            # The embedded broker acknowledges writes to a topic it does not have (after
            # a restart) and keeps them nowhere: every round makes sure it is there.
            if (self.clock() >= self._next_check
                    or self.settings.topic not in self.admin.list_topics()):
                replayed = self.check_mirror(connection)
                self._next_check = self.clock() + self.settings.check_interval_s
                if replayed:
                    return 0
            rows = connection.execute(
                # The payload as PostgreSQL's JSON text, sent as it is: no parse and no
                # re-encoding of every message.
                select(outbox.c.id, outbox.c.account_id,
                       cast(outbox.c.payload, Text).label("payload"))
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.id)
                .limit(self.settings.batch_size)
            ).all()
            if not rows:
                return 0
            acks, failure = self.send(rows)
            if acks:
                reset = self.log_restarted(connection, acks)
                if reset:
                    # Acknowledged into a log that started again: everything goes again,
                    # these rows included (the count says the round was not idle).
                    self.replay(connection, OFFSET_WENT_BACK, reset)
                    return len(acks)
                self.stamp(connection, rows[:len(acks)], acks)
        if failure is not None:
            raise KafkaUnavailable("{} of {} messages acknowledged: {}".format(
                len(acks), len(rows), failure))
        return len(rows)

    def send(self, rows):
        """Send ``rows`` in order; ``(acks, failure)``: the RecordMetadata of the
        acknowledged prefix, and what stopped it (None if everything was)."""
        producer = self.producer
        futures = []
        failure = None
        try:
            for row in rows:
                futures.append(producer.send(
                    self.settings.topic, key=row.account_id.encode("utf-8"),
                    value=encode(row.payload)))  # text from the outbox, or a dict
            producer.flush(timeout=self.settings.delivery_timeout_ms / 1000 + 1)
        except KafkaError as error:
            failure = error
        acks = []
        for future in futures:
            if not future.is_done:
                failure = failure or "no acknowledgement in time"
                break
            if future.failed():
                failure = future.exception
                break
            acks.append(future.value)
        return acks, failure

    def stamp(self, connection, rows, acks):
        connection.execute(
            update(outbox).where(outbox.c.id.in_([row.id for row in rows]))
            .values(published_at=func.now()))
        offsets = {}
        for ack in acks:
            offsets.setdefault(ack.partition, []).append(ack.offset)
        statement = insert(mirror_partitions).values([
            {"topic": self.settings.topic, "partition": partition,
             "round_first_offset": min(found), "last_offset": max(found)}
            for partition, found in sorted(offsets.items())
        ])
        connection.execute(statement.on_conflict_do_update(
            index_elements=[mirror_partitions.c.topic, mirror_partitions.c.partition],
            set_={
                "round_first_offset": statement.excluded.round_first_offset,
                "last_offset": func.greatest(mirror_partitions.c.last_offset,
                                             statement.excluded.last_offset),
                "updated_at": func.now(),
            }))

    # --- has the broker lost messages? --------------------------------------------------

    def checkpoints(self, connection):
        """``{partition: row}`` of what the broker acknowledged on the topic."""
        rows = connection.execute(select(mirror_partitions).where(
            mirror_partitions.c.topic == self.settings.topic)).all()
        return {row.partition: row for row in rows}

    def log_restarted(self, connection, acks):
        """Why the acknowledgements ``acks`` show a partition whose log started again
        (an offset at or below an earlier one), or None."""
        known = self.checkpoints(connection)
        last = {}
        for ack in acks:
            before = last.get(ack.partition)
            if before is None and ack.partition in known:
                before = known[ack.partition].last_offset
            if before is not None and ack.offset <= before:
                return "partition {} acknowledged offset {} after {}".format(
                    ack.partition, ack.offset, before)
            last[ack.partition] = ack.offset
        return None

    def check_mirror(self, connection):
        """Replay if the topic lost messages (the rule in the module's docstring).
        True if it did."""
        created = self.ensure_topic()
        known = self.checkpoints(connection)
        if not known:
            published = connection.execute(select(exists().where(
                outbox.c.published_at.is_not(None)))).scalar_one()
            if published:
                self.replay(connection, NO_CHECKPOINTS, "nothing records what topic {} holds"
                            .format(self.settings.topic))
                return True
            return False
        if created:
            self.replay(connection, TOPIC_GONE, "topic {} was gone".format(self.settings.topic))
            return True
        [description] = self.admin.describe_topics([self.settings.topic])
        partitions = {found["partition_index"] for found in description["partitions"]}
        gone = sorted(set(known) - partitions)
        if gone:
            self.replay(connection, PARTITIONS_GONE, "partitions {} are gone".format(gone))
            return True
        ends = self.admin.list_partition_offsets({
            TopicPartition(self.settings.topic, partition): OffsetSpec.LATEST
            for partition in known})
        for partition, checkpoint in sorted(known.items()):
            end = ends[TopicPartition(self.settings.topic, partition)].offset
            if end <= checkpoint.round_first_offset:
                self.replay(connection, PARTITION_ENDS_EARLY,
                            "partition {} ends at offset {}, it held offset {}".format(
                                partition, end, checkpoint.last_offset))
                return True
        return False

    def replay(self, connection, rule, detail):
        """Everything published goes again, in outbox order, through new clients (the
        old producer's view of the topic is from before the loss): the next round
        reconnects, after this transaction commits. ``rule``: which rule found the loss."""
        count = connection.execute(
            update(outbox).where(outbox.c.published_at.is_not(None))
            .values(published_at=None)).rowcount
        connection.execute(delete(mirror_partitions).where(
            mirror_partitions.c.topic == self.settings.topic))
        self.replay_rules.append(rule)
        self._reconnect = True
        log.warning("Kafka mirror relay: the topic lost messages (%s: %s); replaying %d from "
                    "the outbox", rule, detail, count, extra={"fields": {"replay_rule": rule}})


class MirrorRelay(DependencyProvider):
    """Runs the relay inside the ledger process.

    Why a DependencyProvider with a managed thread rather than a ``@timer``: a timer
    tick is a worker, so a round waiting on a dead broker (seconds) would hold one of the
    ``max_workers`` slots the RPCs need, and a tick that raises is logged as a failed
    worker each time; the managed thread holds no worker slot, keeps its Kafka
    connection and its outage state between rounds, can be woken by ``post`` for low
    latency, and stops with the container. It has its own two database connections, so
    it never waits for (or takes) a worker's. Workers see ``wake()``."""

    def __init__(self):
        self.relay = None
        self.engine = None
        self.thread = None

    def setup(self):
        config = self.container.config
        self.engine = make_engine(config["database"], 2, "paysys-ledger-relay")
        self.relay = Relay(self.engine, RelaySettings.from_config(config))

    def start(self):
        self.thread = self.container.spawn_managed_thread(
            self.relay.run, identifier="ledger.mirror_relay")

    def stop(self):
        self.relay.stop()
        if self.thread is not None:
            # A round in progress ends within the delivery timeout.
            with eventlet.Timeout(self.relay.settings.delivery_timeout_ms / 1000 * 2 + 2,
                                  False):
                self.thread.wait()
            self.thread.kill()
        self.relay.close()
        self.engine.dispose()

    def kill(self):
        if self.relay is not None:
            self.relay.stop()
        if self.thread is not None:
            self.thread.kill()
        if self.engine is not None:
            self.engine.dispose()

    def get_dependency(self, worker_ctx):
        return self.relay
