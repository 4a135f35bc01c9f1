"""One vote round: every validator of the pool asked in parallel, with a deadline.

A dead validator fails fast (its circuit breaker opens after a few misses), a
paused or slow one costs at most the deadline, never a hang; the round ends as
soon as every ballot is decided, so two quick approvals out of three do not
wait for the third.

Each answer carries all of one validator's votes of the round under one signature
(shared/votes.py): one verification per answer, however many votes it holds. An answer
whose signature does not verify (forged, a retired key, a name not its own) counts as no
vote at all. It is logged at warning once, with the answering validator, the validator
it claimed to be, the key, the reason, how many votes and the first transaction: a
forging validator answering a batch of 500 makes one line, not 500. The answers whose
votes counted are kept with the decisions (``SignedRound``), so every stored vote can be
verified later.
"""
import logging
import time
import uuid
from dataclasses import dataclass

import eventlet

from eventlet.queue import Empty, LightQueue

from services.transactions.quorum import Ballot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedRound:
    """A validator's answer whose votes counted, as the transactions service keeps it."""

    id: str
    validator_id: str
    key_id: str
    signature: str
    leaves: bytes  # the SHA-256 of each vote's line, in order (shared/votes.py)


@dataclass
class RoundResult:
    ballots: dict  # transaction id -> Ballot
    signed: list  # SignedRound, one per answer with a counted vote


def collect_votes(rpc, pool, items, keyring, deadline_s):
    """The ``RoundResult`` of asking ``pool`` about ``items``: each item's ballot,
    decided or closed at the deadline, and the signed answers its votes came in."""
    result = RoundResult({item["id"]: Ballot(item["id"], pool) for item in items}, [])
    answers = LightQueue()

    def ask(validator_id):
        try:
            answers.put((validator_id, rpc[validator_id].vote(items, timeout_s=deadline_s)))
        except Exception as exc:  # noqa: BLE001 - a validator that fails is a missing vote
            answers.put((validator_id, exc))

    for validator_id in pool:
        # Not waited for once the round is decided: a late answer lands in a queue
        # nobody reads, and the RPC's own deadline ends the greenthread.
        eventlet.spawn_n(ask, validator_id)
    deadline = time.monotonic() + deadline_s
    unanswered = len(pool)
    while unanswered and any(ballot.decision is None for ballot in result.ballots.values()):
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            break
        try:
            validator_id, answer = answers.get(timeout=remaining_s)
        except Empty:
            break
        unanswered -= 1
        if isinstance(answer, Exception):
            log.warning("no votes from %s: %s", validator_id, answer)
            continue
        signed = count_answer(result.ballots, validator_id, answer, keyring)
        if signed is not None:
            result.signed.append(signed)
    return result


def count_answer(ballots, validator_id, answer, keyring):
    """Count the votes of one validator's answer into ``ballots`` if its signature
    verifies; the ``SignedRound`` to keep if any vote counted, else None."""
    leaves, why = keyring.check_round(answer) if isinstance(answer, dict) else (
        None, "not a signed round")
    if why:
        votes = answer.get("votes") if isinstance(answer, dict) else None
        votes = votes if isinstance(votes, list) else []
        first = votes[0].get("transaction_id") if votes and isinstance(votes[0], dict) \
            else None
        claimed, key_id = ((answer.get("validator_id"), answer.get("key_id"))
                           if isinstance(answer, dict) else (None, None))
        log.warning("%d vote(s) from %s claiming to be %s (key %s) not counted: %s; "
                    "first for transaction %s", len(votes), validator_id, claimed, key_id,
                    why, first)
        return None
    signed = SignedRound(str(uuid.uuid4()), answer["validator_id"], answer["key_id"],
                         answer["signature"], leaves)
    counted = 0
    for vote in answer["votes"]:
        ballot = ballots.get(vote.get("transaction_id")) if isinstance(vote, dict) else None
        if ballot is not None and ballot.add({
                "transaction_id": vote["transaction_id"], "validator_id": signed.validator_id,
                "decision": vote["decision"], "reasons": vote["reasons"],
                "key_id": signed.key_id, "round_id": signed.id}):
            counted += 1
    return signed if counted else None
