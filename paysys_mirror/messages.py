"""A mirror message's key, ``(account_id, account_seq)``, and the consumer's rule per
account (the package's docstring): new, duplicate or gap."""

NEW, DUPLICATE, GAP = "new", "duplicate", "gap"


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
