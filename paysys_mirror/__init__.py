"""The ledger's Kafka mirror for a downstream consumer: reading it, following it.

A client package: it needs kafka-python and nothing else of paysys, so a downstream team
can use it as it is (or copy it).

The topic (``kafka.ledger_topic``) holds one message per ledger entry, keyed by the
account id, so each account's messages are in one partition, in the account's order.
The value is JSON::

    {"id", "account_id", "transaction_id", "amount", "balance_after", "created_at",
     "account_seq", "currency", "counterparty_account_id",
     "posting": {"transaction_id", "type", "currency", "amount",
                 "debit_account_id", "credit_account_id", "posted_at"}}

``account_seq`` is 1, 2, 3… per account. Delivery is at least once: after a broker
failure the ledger's relay republishes (services/ledger/mirror_relay/), so a consumer
sees some messages twice. The rule for a consumer, per account (``AccountSequences``):

* ``seq == last + 1``: new, apply it and remember ``seq`` (in the same database
  transaction as what you do with it, so a crash never applies it twice);
* ``seq <= last``: a duplicate of a replay, skip it;
* ``seq > last + 1``: a gap, earlier messages are missing here. Do not apply it: the
  relay sends the missing message and every later one again. If the broker lost its
  log, the replay may have put the missing message before your position: rewind the
  partition to its beginning once (``follow`` does).

- messages.py: a message's key and the consumer's rule (``AccountSequences``);
- follow.py: ``follow``, the consumer loop of a service that keeps up with the ledger;
- read.py: ``read_mirror``, the whole topic read once (reconciliation);
- brokers.py: ``probe``, is any broker there at all (asked before making a client).
"""
from paysys_mirror.brokers import addresses, probe
from paysys_mirror.follow import follow
from paysys_mirror.messages import DUPLICATE, GAP, NEW, AccountSequences, posting_key
from paysys_mirror.read import MirrorContents, MirrorUnavailable, read_mirror

__all__ = [
    "DUPLICATE", "GAP", "NEW", "AccountSequences", "MirrorContents", "MirrorUnavailable",
    "addresses", "follow", "posting_key", "probe", "read_mirror",
]
