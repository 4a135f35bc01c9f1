"""Counting validator votes: signed answers, duplicates, late votes, majorities of the pool.

Each vote goes the way the service counts it: in a validator's signed answer, through
``voting.count_answer``, into the transaction's ``Ballot``."""
import pytest

from services.transactions.quorum import NO_QUORUM, Ballot
from services.transactions.voting import count_answer
from shared.votes import PublicKey, PublicKeyring, SigningKey, sign_round

POOL = ("validator_1", "validator_2", "validator_3", "validator_4", "validator_5",
        "validator_9")
KEYS = {name: SigningKey.generate() for name in POOL}
POOL = POOL[:3]
TX = "6e3f9a40-2b8c-4bd4-9d0e-0a4e8f7f1a11"


def keyring(names=KEYS):
    """What the transactions service holds: public keys only."""
    return PublicKeyring({name: {KEYS[name].key_id: PublicKey(
        KEYS[name].key_id, KEYS[name].private_key.public_key())} for name in names})


def vote(validator_id, decision="approve", reasons=(), transaction_id=TX, key=None):
    """A validator's signed answer holding one vote."""
    return sign_round(key or KEYS[validator_id], validator_id,
                      [(transaction_id, decision, list(reasons))])


class Counting(Ballot):
    """A ballot fed as the service feeds it: ``add(answer)`` is True if its vote counted."""

    def __init__(self, pool=POOL):
        super().__init__(TX, pool)
        self.ring = keyring()

    def add(self, answer):
        if "votes" not in answer:
            return super().add(answer)
        return count_answer({TX: self}, answer["validator_id"], answer, self.ring) is not None


@pytest.fixture
def ballot():
    return Counting()


def test_two_approvals_of_three_approve_without_waiting_for_the_third(ballot):
    assert ballot.add(vote("validator_1"))
    assert ballot.decision is None
    assert ballot.add(vote("validator_2"))
    assert ballot.decision == "approve"


def test_two_rejections_reject_with_the_most_frequent_reason(ballot):
    ballot.add(vote("validator_1", "reject", ["insufficient_funds", "fraud_suspected"]))
    ballot.add(vote("validator_2", "reject", ["insufficient_funds"]))
    assert ballot.decision == "reject"
    assert ballot.failure_reason("reject") == "insufficient_funds"


def test_a_tie_between_reasons_goes_to_the_documented_priority(ballot):
    ballot.add(vote("validator_1", "reject", ["fraud_suspected"]))
    ballot.add(vote("validator_2", "reject", ["account_frozen"]))
    assert ballot.failure_reason("reject") == "account_frozen"


def test_a_bad_signature_is_not_counted(ballot):
    # Signed by another key that names validator_1's key id.
    forged = vote("validator_1", key=SigningKey(KEYS["validator_1"].key_id,
                                                SigningKey.generate().private_key))
    assert ballot.ring.check_round(forged) == (None, "bad signature")
    assert not ballot.add(forged)
    tampered = vote("validator_2", "reject", ["insufficient_funds"])
    tampered["votes"][0]["decision"] = "approve"
    assert ballot.ring.check_round(tampered) == (None, "bad signature")
    assert not ballot.add(tampered)
    assert ballot.counted == {}


def test_a_vote_dropped_from_or_added_to_a_signed_answer_breaks_its_signature():
    ring = keyring()
    answer = sign_round(KEYS["validator_1"], "validator_1",
                        [(TX, "reject", ["limit_exceeded"]), ("tx-2", "approve", [])])
    assert ring.check_round(answer)[1] is None
    dropped = dict(answer, votes=answer["votes"][1:])
    added = dict(answer, votes=answer["votes"] + [
        {"transaction_id": "tx-3", "decision": "approve", "reasons": []}])
    reordered = dict(answer, votes=answer["votes"][::-1])
    for broken in (dropped, added, reordered):
        assert ring.check_round(broken) == (None, "bad signature")


def test_one_validator_signing_as_another_is_not_counted(ballot):
    impostor = vote("validator_2", key=KEYS["validator_1"])
    assert ballot.ring.check_round(impostor) == (None, "unknown key")
    assert not ballot.add(impostor)
    # Naming the other's key id does not help: the signature is checked with that key.
    impostor = vote("validator_2", key=SigningKey(KEYS["validator_2"].key_id,
                                                  KEYS["validator_1"].private_key))
    assert ballot.ring.check_round(impostor) == (None, "bad signature")
    assert not ballot.add(impostor)
    assert ballot.counted == {}


def test_garbage_instead_of_an_answer_counts_nothing(ballot):
    for garbage in ({"votes": "x", "validator_id": "validator_1"},
                    dict(vote("validator_1"), signature=None),
                    dict(vote("validator_1"), votes=[{"transaction_id": TX}])):
        assert not ballot.add(garbage)
    assert count_answer({TX: ballot}, "validator_1", ["not", "a", "round"],
                        ballot.ring) is None
    assert ballot.counted == {}


def test_a_validator_votes_once(ballot):
    assert ballot.add(vote("validator_1"))
    assert not ballot.add(vote("validator_1"))
    assert ballot.decision is None  # one approval, not two


def test_a_vote_for_another_transaction_is_not_counted(ballot):
    other = "0b7c2f4e-3a51-4c8e-8f0e-9d7a6b5c4d3e"
    assert not ballot.add(vote("validator_1", transaction_id=other))


def test_a_validator_outside_the_pool_is_not_counted():
    ballot = Counting()
    assert not ballot.add(vote("validator_9"))


def test_late_votes_after_the_decision_are_ignored(ballot):
    ballot.add(vote("validator_1"))
    ballot.add(vote("validator_2"))
    assert not ballot.add(vote("validator_3", "reject", ["insufficient_funds"]))
    assert [v["validator_id"] for v in ballot.votes()] == ["validator_1", "validator_2"]
    assert ballot.decision == "approve"


def test_a_split_with_one_missing_has_no_quorum_at_the_deadline(ballot):
    ballot.add(vote("validator_1"))
    ballot.add(vote("validator_2", "reject", ["limit_exceeded"]))
    assert ballot.decision is None  # the third could still decide it
    assert ballot.close() == NO_QUORUM
    assert ballot.failure_reason(NO_QUORUM) == "no_quorum"


def test_one_vote_of_three_is_no_quorum(ballot):
    ballot.add(vote("validator_1"))
    assert ballot.close() == NO_QUORUM


def test_an_even_pool_can_be_undecidable_before_everyone_votes():
    pool = POOL + ("validator_4",)
    ballot = Counting(pool)
    ballot.add(vote("validator_1"))
    ballot.add(vote("validator_2"))
    ballot.add(vote("validator_3", "reject"))
    ballot.add(vote("validator_4", "reject"))
    assert ballot.decision == NO_QUORUM  # 2 of 4 is no majority either way


def test_the_majority_is_of_the_configured_pool_not_of_those_who_answered():
    ballot = Counting(POOL + ("validator_4", "validator_5"))
    ballot.add(vote("validator_1"))
    ballot.add(vote("validator_2"))
    assert ballot.close() == NO_QUORUM  # 2 of 5 answered: not 3
