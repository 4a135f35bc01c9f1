"""``read_mirror``: every message of the topic, read once from the beginning (the ledger's
reconciliation, ``paysys reconcile``), and what the read found (``MirrorContents``)."""
import json
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from paysys_mirror.messages import posting_key


class MirrorUnavailable(Exception):
    """Kafka did not answer, or did not hand over the whole topic in time."""


@dataclass
class MirrorContents:
    """What one pass over the topic found."""

    topic: str
    messages: int = 0
    unreadable: int = 0
    # account_id -> every account_seq seen (a set: duplicates count once)
    postings: dict = field(default_factory=dict)
    duplicates: int = 0  # messages repeating a posting seen before (replays)
    # (account_id, seq) that came after a higher seq of their account
    out_of_order: list = field(default_factory=list)
    _highest: dict = field(default_factory=dict, repr=False)

    def add(self, value):
        try:
            account, seq = posting_key(json.loads(value))
        except ValueError:  # JSONDecodeError is one too
            self.unreadable += 1
            return
        self.messages += 1
        seen = self.postings.setdefault(account, set())
        if seq in seen:
            self.duplicates += 1
            return
        if seq < self._highest.get(account, 0):
            self.out_of_order.append((account, seq))
        self._highest[account] = max(seq, self._highest.get(account, 0))
        seen.add(seq)

    def has(self, account, seq):
        return seq in self.postings.get(account, ())

    @property
    def distinct(self):
        """How many different (account_id, account_seq) the topic holds."""
        return sum(len(seqs) for seqs in self.postings.values())

    def gaps(self):
        """``{account_id: [missing seqs]}``: numbers below an account's highest that
        never came."""
        return {
            account: sorted(set(range(1, max(seqs) + 1)) - seqs)
            for account, seqs in self.postings.items() if len(seqs) != max(seqs)
        }


def read_mirror(bootstrap_servers, topic, timeout_s=10.0, request_timeout_ms=3000):
    """Every message of ``topic``, read once from the beginning: a MirrorContents.

    A standalone consumer: no group (nothing committed, no rebalance to wait for), every
    partition assigned, read up to the end offsets taken at the start, and on until a
    poll comes back empty, because the embedded broker (tansu 0.6) answers the end offset
    of a partition's last record batch rather than of its last record. A topic that does
    not exist is an empty mirror; a broker that does not answer, or does not hand over
    everything within ``timeout_s``, raises MirrorUnavailable."""
    deadline = time.monotonic() + timeout_s
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers.split(","),
            client_id="paysys-mirror-reader",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            request_timeout_ms=request_timeout_ms,
            bootstrap_timeout_ms=request_timeout_ms,
            fetch_max_wait_ms=100,
        )
    except KafkaError as error:
        raise MirrorUnavailable("Kafka at {}: {}".format(bootstrap_servers, error)) from error
    contents = MirrorContents(topic)
    try:
        if topic not in consumer.topics():
            return contents
        partitions = [TopicPartition(topic, partition)
                      for partition in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions, timeout_ms=request_timeout_ms)
        while True:
            batch = consumer.poll(timeout_ms=250)
            for records in batch.values():
                for record in records:
                    contents.add(record.value)
            if not batch and all(
                (consumer.position(tp, timeout_ms=request_timeout_ms) or 0) >= ends[tp]
                for tp in partitions
            ):
                return contents
            if time.monotonic() > deadline:
                raise MirrorUnavailable("topic {} not read to its end within {:g} s".format(
                    topic, timeout_s))
    except KafkaError as error:
        raise MirrorUnavailable("Kafka at {}: {}".format(bootstrap_servers, error)) from error
    finally:
        consumer.close()
