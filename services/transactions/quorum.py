"""Counting votes: which count, and when the pool has decided.

A vote counts once the answer it came in is signed by the validator it names (with one
of its public keys valid now: shared/votes.py, checked once per answer by voting.py),
that validator is in the configured pool, it is about this transaction, and it is that
validator's first vote. A majority of the
configured pool (not of those who answered) decides, so a dead validator can never
let two others' votes be outweighed by one. The round ends as soon as the outcome cannot change; votes
arriving after that are ignored.
"""
from collections import Counter

from shared.votes import APPROVE, REJECT

NO_QUORUM = "no_quorum"
# When rejecting validators disagree on why, the most frequent reason wins; ties go
# to the first of this list (the reasons a customer can do least about come first).
REASON_PRIORITY = (
    "compliance_blocked", "account_frozen", "currency_mismatch", "insufficient_funds",
    "limit_exceeded", "fraud_suspected",
)


class Ballot:
    """The votes of one transaction, as they arrive."""

    def __init__(self, transaction_id, pool):
        self.transaction_id = transaction_id
        self.pool = tuple(pool)
        self.counted = {}  # validator id -> vote, in arrival order
        self.ignored = []  # (vote, why) for the audit log

    @property
    def majority(self):
        return len(self.pool) // 2 + 1

    def add(self, vote):
        """Count ``vote`` if it may be counted; True if it was."""
        why = self._why_not(vote)
        if why:
            self.ignored.append((vote, why))
            return False
        self.counted[vote["validator_id"]] = vote
        return True

    def _why_not(self, vote):
        if not isinstance(vote, dict):
            return "not a vote"
        if self.decision is not None:
            return "late: the round is decided"
        validator_id = vote.get("validator_id")
        if validator_id not in self.pool:
            return "not in the pool"
        if validator_id in self.counted:
            return "duplicate"
        if vote.get("transaction_id") != self.transaction_id:
            return "another transaction"
        if vote.get("decision") not in (APPROVE, REJECT):
            return "no decision"
        if not isinstance(vote.get("reasons"), list):
            return "no reasons"
        return None

    def _count(self, decision):
        return sum(1 for vote in self.counted.values() if vote["decision"] == decision)

    @property
    def decision(self):
        """approve, reject, no_quorum once the outcome is certain; None while it is open."""
        approvals, rejections = self._count(APPROVE), self._count(REJECT)
        if approvals >= self.majority:
            return APPROVE
        if rejections >= self.majority:
            return REJECT
        outstanding = len(self.pool) - len(self.counted)
        if approvals + outstanding < self.majority and rejections + outstanding < self.majority:
            return NO_QUORUM
        return None

    def close(self):
        """The round's deadline passed: whatever is undecided has no quorum."""
        return self.decision or NO_QUORUM

    def failure_reason(self, decision):
        if decision == NO_QUORUM:
            return NO_QUORUM
        if decision != REJECT:
            return None
        reasons = Counter(reason for vote in self.counted.values()
                          if vote["decision"] == REJECT for reason in vote["reasons"])
        if not reasons:
            return "rejected"
        return min(reasons, key=lambda reason: (
            -reasons[reason],
            REASON_PRIORITY.index(reason) if reason in REASON_PRIORITY else len(REASON_PRIORITY),
            reason))

    def votes(self):
        """The counted votes, each naming its signed round, for the transaction's record."""
        return list(self.counted.values())
