"""Validator: one of N independent voters on every transaction; each keeps its own view of risk.

``vote(transactions)`` takes a batch and answers one vote per item, in order, under one
signature (shared/votes.py ``sign_round``). The
rules are in ``rules.py``, the batch and the Redis policy in ``voter.py``, the risk state
in ``risk.py``.
"""
from prometheus_client import Counter

from services.validator.dependencies import RiskChecks, VoteKey
from shared import faults
from shared.errors import ValidationFailed
from shared.metrics import REGISTRY
from shared.service import ServiceBase, rpc
from shared.votes import sign_round

# A bound on one call's work; the transactions service sends far smaller batches.
MAX_BATCH = 10000

votes_total = Counter(
    "paysys_validator_votes", "Votes this validator cast, by decision and the first reason "
    "of a rejection (none for an approval)", ["decision", "reason"], registry=REGISTRY)
_votes = {}


def count_vote(decision, reasons):
    key = (decision, reasons[0] if reasons else "none")
    child = _votes.get(key)
    if child is None:
        child = _votes[key] = votes_total.labels(*key)
    child.inc()


class ValidatorService(ServiceBase):
    # Each process of the pool runs under its own RPC identity (validator_1 … validator_N):
    # `paysys serve validator_2` sets the name; see paysys/runner.py.
    name = "validator"
    vote_key = VoteKey()
    risk = RiskChecks()

    @rpc
    def vote(self, transactions):
        """``{validator_id, key_id, signature, votes: [{transaction_id, decision,
        reasons}]}``: one vote per item, in order, and one signature over them all.

        A malformed item gets a rejection (``malformed_transaction``) of its own; only a
        call that is not a list of items at all is refused."""
        if not isinstance(transactions, list) or len(transactions) > MAX_BATCH:
            raise ValidationFailed(
                "transactions: must be a list of at most {} items".format(MAX_BATCH),
                errors={"transactions": ["must be a list of at most {} items".format(
                    MAX_BATCH)]})
        # Test-only (shared/faults.py): a slow validator, or one whose votes are forged.
        forge = faults.voting(self.name) if faults.armed else None
        decisions = self.risk.decide(transactions)
        for _, decision, reasons in decisions:
            count_vote(decision, reasons)
        if forge:
            return forge(decisions, self.vote_key)
        return sign_round(self.vote_key, self.name, decisions)

    def deep_health(self):
        """The validator keeps nothing in PostgreSQL (its risk state is in Redis), so it
        holds no connection pool: deep health says whether Redis answers now. A vote does
        without Redis (the stateful rules are skipped), so this reports, never fails."""
        return {"risk_state": self.risk.store.reachability()}
