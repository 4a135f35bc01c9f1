"""``follow``: the consumer loop of a service that keeps up with the ledger."""
import json

from paysys_mirror.messages import GAP, NEW, posting_key


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
