"""One vote round: every validator of the pool asked in parallel, with a deadline.

A dead validator fails fast (its circuit breaker opens after a few misses), a
paused or slow one costs at most the deadline, never a hang; the round ends as
soon as every ballot is decided, so two quick approvals out of three do not
wait for the third.

A vote that is not counted (a signature that does not verify, a retired key, a name
not its own) counts as no vote. It is logged at warning once per round, per answering
validator, validator it claimed to be and reason, with how many votes and the first
transaction: a forging validator answering a batch of 500 makes one line, not 500.
"""
import logging
import time

import eventlet
from collections import Counter

from eventlet.queue import Empty, LightQueue

from services.transactions.quorum import Ballot

log = logging.getLogger(__name__)


def collect_votes(rpc, pool, items, keyring, deadline_s):
    """``{transaction_id: Ballot}`` for ``items``, each decided or closed at the deadline."""
    ballots = {item["id"]: Ballot(item["id"], pool, keyring) for item in items}
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
    while unanswered and any(ballot.decision is None for ballot in ballots.values()):
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
        _count_answer(ballots, validator_id, answer)
    return ballots


def _count_answer(ballots, validator_id, answer):
    refused = Counter()
    first = {}
    for vote in answer if isinstance(answer, list) else []:
        ballot = ballots.get(vote.get("transaction_id")) if isinstance(vote, dict) else None
        if ballot is not None and not ballot.add(vote):
            what = (vote.get("validator_id"), vote.get("key_id"), ballot.ignored[-1][1])
            refused[what] += 1
            first.setdefault(what, vote.get("transaction_id"))
    for (claimed, key_id, why), count in refused.items():
        log.warning("%d vote(s) from %s claiming to be %s (key %s) not counted: %s; "
                    "first for transaction %s", count, validator_id, claimed, key_id, why,
                    first[(claimed, key_id, why)])
