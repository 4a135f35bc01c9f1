"""The Kafka clients of the mirror's relay: made (only once a broker listens), the topic
made sure of, a round's rows sent and acknowledged, closed."""
import json
import logging

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import DefaultPartitioner

from paysys_mirror import probe
from shared.outbox_relay.rounds import SinkUnavailable

log = logging.getLogger(__name__)


class KafkaUnavailable(SinkUnavailable):
    """The broker did not answer, or did not acknowledge everything sent."""

    what = "Kafka"


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


def encode(payload):
    """A message's value: the payload's JSON (as the outbox gives it, or made from a dict)."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


class KafkaClients:
    """A producer and an admin client, made by ``connect`` and dropped by ``close``."""

    def __init__(self, settings):
        self.settings = settings
        self.producer = None
        self.admin = None

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

    def ensure_topic(self):
        """Create the topic if the broker does not have it (with the configured
        partitions and retention for ever). True if it was created."""
        settings = self.settings
        if settings.topic in self.topics():
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

    def topics(self):
        return self.admin.list_topics()

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
                    value=encode(row.payload),  # text from the outbox, or a dict
                    headers=_headers(row)))
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


def _headers(row):
    """The message's headers: the posting's W3C ``traceparent`` when it has one."""
    traceparent = getattr(row, "traceparent", None)
    return [("traceparent", traceparent.encode("ascii"))] if traceparent else None
