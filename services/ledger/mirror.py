"""Reading the ledger's Kafka mirror: what a downstream team copies.

The topic (``kafka.ledger_topic``) holds one message per ledger entry, keyed by the
account id, so each account's messages are in one partition, in the account's order.
The value is JSON::

    {"id", "account_id", "transaction_id", "amount", "balance_after", "created_at",
     "account_seq", "currency", "counterparty_account_id",
     "posting": {"transaction_id", "type", "currency", "amount",
                 "debit_account_id", "credit_account_id", "posted_at"}}

``account_seq`` is 1, 2, 3… per account. Delivery is at least once: after a broker
failure the relay republishes (services/ledger/relay.py), so a consumer sees some
messages twice. The rule for a consumer, per account (``AccountSequences``):

* ``seq == last + 1``: new, apply it and remember ``seq`` (in the same database
  transaction as what you do with it, so a crash never applies it twice);
* ``seq <= last``: a duplicate of a replay, skip it;
* ``seq > last + 1``: a gap, earlier messages are missing here. Do not apply it: the
  relay sends the missing message and every later one again. If the broker lost its
  log, the replay may have put the missing message before your position: rewind the
  partition to its beginning once (``follow`` does).

``read_mirror`` reads the whole topic once (reconciliation); ``follow`` is a consumer
loop for a service that keeps up with the ledger.
"""
import json
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

NEW, DUPLICATE, GAP = "new", "duplicate", "gap"


class MirrorUnavailable(Exception):
    """Kafka did not answer, or did not hand over the whole topic in time."""


def posting_key(message):
    """``(account_id, account_seq)`` of a message's JSON value; ValueError if it has none."""
    try:
        account, seq = message["account_id"], message["account_seq"]
    except (KeyError, TypeError) as error:
        raise ValueError("not a ledger mirror message") from error
    if not isinstance(account, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise ValueError("not a ledger mirror message")
    return account, seq


class AccountSequences:
    """The last sequence number applied per account, and the consumer's rule; and the
    gaps ``follow`` already rewound for (a partition is read again once per gap)."""

    def __init__(self, last=None):
        self.last = dict(last or {})
        self.rewound = set()  # (TopicPartition, offset)

    def classify(self, account, seq):
        expected = self.last.get(account, 0) + 1
        return NEW if seq == expected else DUPLICATE if seq < expected else GAP

    def applied(self, account, seq):
        self.last[account] = seq


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


def follow(consumer, sequences, poll_timeout_ms=1000, idle_polls=None):
    """Yield each posting of the mirror once, in its account's order: the consumer loop
    of a downstream team. ``consumer`` is theirs, subscribed (a consumer group) or
    assigned, with ``auto_offset_reset="earliest"``; ``sequences`` is an AccountSequences
    loaded from their own store. Store each posting's ``(account_id, account_seq)``
    with what you do with it; asking for the next posting counts this one as applied.
    Commit offsets whenever convenient: a message read again is a duplicate, skipped.

        consumer = KafkaConsumer(topic, bootstrap_servers=..., group_id="analytics",
                                 enable_auto_commit=False, auto_offset_reset="earliest")
        for posting in follow(consumer, AccountSequences(load_last_seqs())):
            with db.begin():
                record(posting)                      # your work
                save_last_seq(posting["account_id"], posting["account_seq"])
            consumer.commit()

    ``idle_polls``: stop after that many empty polls in a row (None: never)."""
    empty = 0
    while idle_polls is None or empty < idle_polls:
        batch = consumer.poll(timeout_ms=poll_timeout_ms)
        empty = 0 if batch else empty + 1
        for tp, records in batch.items():
            for record in records:
                try:
                    posting = json.loads(record.value)
                    account, seq = posting_key(posting)
                except ValueError:
                    continue  # not ours
                verdict = sequences.classify(account, seq)
                if verdict == NEW:
                    yield posting
                    sequences.applied(account, seq)
                elif verdict == GAP and (tp, record.offset) not in sequences.rewound:
                    # The broker may have lost its log and the relay replayed it before
                    # this position: read the partition again, once per gap.
                    sequences.rewound.add((tp, record.offset))
                    consumer.seek_to_beginning(tp)
                    empty = 0
                    break
