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
    # partition -> the offset read up to (the next one to read)
    offsets: dict = field(default_factory=dict)
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
    partition assigned and read up to where it ended when the read began, however busy
    the topic is meanwhile (``ReadTargets``). A topic that does not exist is an empty
    mirror; a broker that does not answer, or that hands over nothing new for
    ``timeout_s`` before the end, raises MirrorUnavailable. A long topic takes as long as
    it takes, as long as the read advances."""
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
        targets = ReadTargets(consumer.end_offsets(partitions, timeout_ms=request_timeout_ms))
        last_progress_s = time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=250)
            for records in batch.values():
                for record in records:
                    contents.add(record.value)
            targets.learn(consumer.highwater)
            positions = {tp: consumer.position(tp, timeout_ms=request_timeout_ms) or 0
                         for tp in partitions}
            contents.offsets = {tp.partition: offset for tp, offset in positions.items()}
            if targets.reached(positions):
                return contents
            if batch:
                last_progress_s = time.monotonic()
            elif time.monotonic() - last_progress_s > timeout_s:
                raise MirrorUnavailable(
                    "topic {} handed over nothing new for {:g} s, read to offsets {} of {}"
                    .format(topic, timeout_s, _by_partition(positions),
                            _by_partition(targets.ends)))
    except KafkaError as error:
        raise MirrorUnavailable("Kafka at {}: {}".format(bootstrap_servers, error)) from error
    finally:
        consumer.close()


class ReadTargets:
    """Where each partition ended when the read began: the offset to read up to.

    The end offsets taken at the start are raised to the high watermark of the first
    fetch answer of each partition, because the embedded broker (tansu 0.6) answers a
    partition's end offset as its last record batch's first offset + 1 (the rest of that
    batch lies beyond it), while its fetch answers carry the true high watermark. A fetch
    answer comes after the start, so its high watermark covers everything there then.

    Why not "read until a poll comes back empty": on a topic written every few hundred
    milliseconds (the relay under light load) no poll ever does, and the read ran into its
    time limit (`paysys reconcile` exited 2)."""

    def __init__(self, ends):
        self.ends = dict(ends)
        # An empty partition (end 0) was empty at the start: nothing there to read.
        self.targets = {tp: 0 for tp, end in self.ends.items() if not end}

    def learn(self, highwater):
        """Take each partition's high watermark (``highwater(tp)``, None before the
        partition's first fetch answer) the first time it is known."""
        for tp, end in self.ends.items():
            if tp not in self.targets:
                known = highwater(tp)
                if known is not None:
                    self.targets[tp] = max(end, known)

    def reached(self, positions):
        """Has every partition been read to its target?"""
        return all(tp in self.targets and positions[tp] >= self.targets[tp]
                   for tp in self.ends)


def _by_partition(offsets):
    return "{" + ", ".join("{}: {}".format(tp.partition, offset)
                           for tp, offset in sorted(offsets.items())) + "}"
