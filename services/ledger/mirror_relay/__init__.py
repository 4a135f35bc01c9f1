"""The Kafka mirror's relay: the ledger's outbox published to Kafka by the outbox relay
(shared/outbox_relay) through the Kafka sink here, which replays the outbox when the broker
has lost what it acknowledged.

- settings.py: ``RelaySettings``, from config.yml's ``kafka`` section;
- clients.py: the Kafka clients' life (connect, the topic, send, close);
- sink.py: ``MirrorSink``, a relay round's Kafka side: the checks before it, the send,
  the checkpoints after it;
- checkpoints.py: what the broker acknowledged per partition (``ledger.mirror_partitions``);
- loss.py: the rules that find the topic short; replay.py: the replay;
- provider.py: ``MirrorRelay``, the ledger process's relay, and ``mirror_relay``.

What it sends: one message per outbox row (one per entry), in outbox id order, to the
topic ``kafka.ledger_topic``, keyed by the account id (same key, same partition: each
account's messages stay in its order), the value the row's JSON payload (the entry, its
``account_seq`` and the posting; services/ledger/outbox.py).

Never lost: a round reads up to ``batch_size`` unpublished rows, sends them with
``acks="all"``, waits for the broker's acknowledgements and only then stamps
``published_at``, with the checkpoints, in one database transaction. A crash or a broker
failure between the send and the stamp leaves the rows unpublished, so they are sent
again: a duplicate, which a consumer recognises by ``(account_id, account_seq)``. When
only part of a round is acknowledged, the acknowledged rows before the first failure are
stamped and everything from the failure on is sent again, in order.

Order: one producer, one request in flight per connection and retries inside the
delivery timeout, so a partition receives the round's messages in the order sent; and an
account's outbox ids follow its commit order (ledger_0004). A consumer may still see an
account's messages twice (replays) or, after a failed send, a later sequence number
before the resend of an earlier one: it applies ``seq == last + 1``, skips ``seq <= last``
and waits on a gap (paysys_mirror, ``follow``).

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

Each replay names the rule that fired (in its log line and ``MirrorSink.replay_rules``):
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

One relay per database: each round holds the outbox's claim (an advisory lock,
shared/outbox_relay/rounds.py), so a second ledger process's relay idles while the first
one works.
"""
from services.ledger.mirror_relay.clients import KafkaUnavailable
from services.ledger.mirror_relay.loss import (
    NO_CHECKPOINTS, OFFSET_WENT_BACK, PARTITION_ENDS_EARLY, PARTITIONS_GONE, TOPIC_GONE,
)
from services.ledger.mirror_relay.provider import MirrorRelay, mirror_relay
from services.ledger.mirror_relay.settings import RelaySettings

__all__ = [
    "NO_CHECKPOINTS", "OFFSET_WENT_BACK", "PARTITION_ENDS_EARLY", "PARTITIONS_GONE",
    "TOPIC_GONE", "KafkaUnavailable", "MirrorRelay", "RelaySettings", "mirror_relay",
]
