"""The money desk's batch (gateway/desk.py): the keys of its requests claimed in one go,
and only the requests that hold theirs submitted."""
import pytest

from gateway import idempotency
from gateway.desk import claim_then_submit
from shared.errors import Conflict, ServiceUnavailable, ValidationFailed


def claim(key):
    return idempotency.Claim(idempotency.Begin("user", key, "fingerprint-" + key))


class Recorder:
    """``claim_many`` and ``submit_many`` that answer as told and remember their calls."""

    def __init__(self, claims=None, submit_error=None, claim_error=None):
        self.claims = claims or {}
        self.submit_error = submit_error
        self.claim_error = claim_error
        self.claimed, self.submitted = [], []

    def claim_many(self, begins):
        self.claimed.append([begin.key for begin in begins])
        if self.claim_error:
            raise self.claim_error
        return [self.claims.get(begin.key, idempotency.Lease("token-" + begin.key))
                for begin in begins]

    def submit_many(self, movements):
        self.submitted.append(list(movements))
        if self.submit_error:
            raise self.submit_error
        return ["transaction of " + movement for movement in movements]


def test_a_batch_claims_its_keys_in_one_go_and_submits_the_requests_that_hold_them():
    held = claim("held")
    held.lease = idempotency.Lease("earlier")
    requests = [("a", claim("a")), ("b", claim("b")), ("held", held), ("keyless", None)]
    recorder = Recorder()
    answers = claim_then_submit(requests, recorder.claim_many, recorder.submit_many)
    assert recorder.claimed == [["a", "b"]]
    assert recorder.submitted == [["a", "b", "held", "keyless"]]
    assert answers == ["transaction of a", "transaction of b", "transaction of held",
                       "transaction of keyless"]
    assert [c.lease.token for _, c in requests[:3]] == ["token-a", "token-b", "earlier"]


def test_a_key_answered_before_replays_and_a_key_not_free_is_refused_without_submitting():
    stored = idempotency.StoredResponse(201, '{"id": "t1"}', {})
    in_flight, reused = Conflict("in flight"), ValidationFailed("another body")
    requests = [("replayed", claim("replayed")), ("busy", claim("busy")),
                ("other", claim("other")), ("new", claim("new"))]
    recorder = Recorder(claims={"replayed": stored, "busy": in_flight, "other": reused})
    answers = claim_then_submit(requests, recorder.claim_many, recorder.submit_many)
    assert recorder.submitted == [["new"]]
    assert isinstance(answers[0], idempotency.Replay) and answers[0].stored is stored
    assert isinstance(answers[1], idempotency.ClaimRefused) and answers[1].error is in_flight
    assert isinstance(answers[2], idempotency.ClaimRefused) and answers[2].error is reused
    assert answers[3] == "transaction of new"
    assert [c.lease for _, c in requests[:3]] == [None, None, None]


def test_a_claim_that_cannot_be_made_is_the_error_of_the_requests_it_was_for_only():
    away = ServiceUnavailable("the database is away")
    requests = [("a", claim("a")), ("keyless", None)]
    recorder = Recorder(claim_error=away)
    answers = claim_then_submit(requests, recorder.claim_many, recorder.submit_many)
    assert answers == [away, "transaction of keyless"]
    assert recorder.submitted == [["keyless"]]
    assert requests[0][1].lease is None


@pytest.mark.parametrize("everyone_replays", [False, True])
def test_a_failed_submit_answers_the_requests_submitted_and_no_others(everyone_replays):
    stored = idempotency.StoredResponse(201, "{}", {})
    lost = ServiceUnavailable("transactions did not answer")
    requests = [("replayed", claim("replayed"))] + ([] if everyone_replays else [("a", claim("a"))])
    recorder = Recorder(claims={"replayed": stored}, submit_error=lost)
    answers = claim_then_submit(requests, recorder.claim_many, recorder.submit_many)
    assert isinstance(answers[0], idempotency.Replay)
    if everyone_replays:
        assert recorder.submitted == []  # nothing left to submit: no call at all
    else:
        assert answers[1] is lost
        assert requests[1][1].lease.token == "token-a"  # the guard releases it (a 5xx)
