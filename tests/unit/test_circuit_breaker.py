"""The circuit breaker of RPC calls: when it opens, what it lets through, when it closes."""
import pytest

from shared.circuit import CircuitBreaker, CircuitOpen
from shared.errors import NotFound, ServiceUnavailable, unanswered


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def down():
    raise unanswered("accounts.get did not answer")


def busy():
    raise ServiceUnavailable("the payment is still being decided")


def up():
    return "answer"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker("accounts", failure_threshold=3, reset_timeout_s=5, clock=clock)


def fail(breaker, times):
    for _ in range(times):
        with pytest.raises(ServiceUnavailable):
            breaker.call(down)


def test_it_opens_after_the_threshold_of_failures_in_a_row(breaker):
    fail(breaker, 3)
    calls = []
    with pytest.raises(CircuitOpen) as raised:
        breaker.call(lambda: calls.append(1))
    assert calls == []  # the dependency was not called at all
    assert raised.value.retry_after_s == 5
    assert raised.value.status == 503


def test_a_success_resets_the_count(breaker):
    fail(breaker, 2)
    assert breaker.call(up) == "answer"
    fail(breaker, 2)
    assert breaker.call(up) == "answer"


def test_an_error_answer_is_not_a_failure(breaker):
    for _ in range(5):
        with pytest.raises(NotFound):
            breaker.call(lambda: (_ for _ in ()).throw(NotFound("no such account")))
    assert breaker.call(up) == "answer"


def test_a_503_the_dependency_answers_itself_is_not_a_failure(breaker):
    for _ in range(5):
        with pytest.raises(ServiceUnavailable):
            breaker.call(busy)
    assert breaker.call(up) == "answer"


def test_after_the_pause_one_trial_call_goes_through_and_closes_it(breaker, clock):
    fail(breaker, 3)
    clock.now += 5
    assert breaker.call(up) == "answer"
    assert breaker.state == "closed"


def test_only_one_trial_at_a_time_while_half_open(breaker, clock):
    fail(breaker, 3)
    clock.now += 5
    breaker.before_call()  # the trial is in flight
    with pytest.raises(CircuitOpen):
        breaker.before_call()


def test_a_failed_trial_opens_it_again_for_a_full_pause(breaker, clock):
    fail(breaker, 3)
    clock.now += 5
    fail(breaker, 1)
    clock.now += 4
    with pytest.raises(CircuitOpen) as raised:
        breaker.call(up)
    assert raised.value.retry_after_s == 1


def test_circuit_open_crosses_rpc_as_a_503(breaker):
    fail(breaker, 3)
    with pytest.raises(ServiceUnavailable) as raised:
        breaker.call(up)
    assert raised.value.code == "circuit_open"
