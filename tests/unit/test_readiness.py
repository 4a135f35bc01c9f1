"""Readiness follows the design: 503 only when money requests cannot be served."""
import eventlet
import pytest

from gateway.probes import DOWN, OK, Answer, Cached, probe, run_probes
from gateway.readiness import ready_body, status_body, verdict

VALIDATORS = ["validator_1", "validator_2", "validator_3"]
EVERYTHING = ["rabbitmq", "postgresql", "redis", "kafka", "auth", "transactions",
              *VALIDATORS, "payments", "ledger", "notifications"]


def answers(*down):
    return {name: Answer(name, DOWN if name in down else OK, 1.0,
                         "ConnectionError: refused" if name in down else None)
            for name in EVERYTHING}


def test_everything_answering_is_ready():
    assert verdict(answers(), VALIDATORS) == ("ready", [], [])


@pytest.mark.parametrize("down", [
    ["redis"], ["kafka"], ["validator_2"], ["payments"], ["notifications"],
    ["redis", "kafka", "validator_1", "payments", "notifications"],
])
def test_what_the_money_path_does_without_is_degraded_and_named(down):
    assert verdict(answers(*down), VALIDATORS) == ("degraded", [], down)


@pytest.mark.parametrize("down", [
    ["postgresql"], ["rabbitmq"], ["auth"], ["transactions"], ["ledger"],
])
def test_what_the_money_path_needs_is_unavailable_and_named(down):
    assert verdict(answers(*down), VALIDATORS) == ("unavailable", down, [])


def test_two_validators_of_three_are_fewer_than_a_quorum_and_both_are_named():
    status, unavailable, degraded = verdict(answers("redis", "validator_1", "validator_3"),
                                            VALIDATORS)
    assert (status, unavailable, degraded) == (
        "unavailable", ["validator_1", "validator_3"], ["redis"])


def test_a_pool_of_five_keeps_serving_with_two_validators_down():
    pool = ["validator_{}".format(i) for i in range(1, 6)]
    found = {name: Answer(name, DOWN if name in pool[:2] else OK, 1.0) for name in pool}
    assert verdict(found, pool)[0] == "degraded"
    found[pool[2]] = Answer(pool[2], DOWN, 1.0)
    assert verdict(found, pool)[0] == "unavailable"


def test_the_ready_body_keeps_its_fields_and_adds_degraded():
    body = ready_body(answers("kafka"), VALIDATORS)
    assert body["status"] == "degraded"
    assert body["checks"]["kafka"] == "ConnectionError: refused"
    assert body["checks"]["ledger"] == "ok"
    assert (body["unavailable"], body["degraded"]) == ([], ["kafka"])


def test_the_status_body_details_every_dependency_and_process():
    body = status_body(answers("validator_2", "postgresql"), VALIDATORS, "2026-01-01T00:00:00Z")
    assert set(body["dependencies"]) == {"rabbitmq", "postgresql", "redis", "kafka"}
    assert set(body["processes"]) == set(EVERYTHING) - set(body["dependencies"])
    assert body["dependencies"]["postgresql"] == {
        "state": "down", "latency_ms": 1.0, "error": "ConnectionError: refused",
        "role": "required"}
    assert body["processes"]["validator_2"]["role"] == "quorum"
    assert body["processes"]["payments"]["role"] == "optional"
    assert body["quorum"] == {"pool": 3, "needed": 2, "answering": 2}
    assert body["status"] == "unavailable"


def test_a_probe_names_why_it_failed_and_a_silent_one_its_deadline():
    def refused():
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    found = run_probes({"fast": lambda: {"schema_version": "x"}, "refused": refused,
                        "silent": lambda: eventlet.sleep(5)}, timeout_s=0.2)
    assert found["fast"].ok and found["fast"].detail == {"schema_version": "x"}
    assert found["refused"].error == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert found["silent"].error == "no answer within 0.2 s"
    assert probe("x", lambda: None, 1).state == OK


def test_probes_arriving_together_share_one_round_and_a_cached_round_answers_later_ones():
    rounds = []

    def compute():
        rounds.append(1)
        eventlet.sleep(0.05)
        return len(rounds)

    now = [0.0]
    cached = Cached(compute, ttl_s=1.0, clock=lambda: now[0])
    pool = eventlet.GreenPool()
    results = list(pool.imap(lambda _: cached.get(), range(20)))
    assert results == [1] * 20
    now[0] = 0.5
    assert cached.get() == 1
    now[0] = 1.5
    assert cached.get() == 2
