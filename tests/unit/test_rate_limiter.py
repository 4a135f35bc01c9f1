"""The GCRA rate limiter against a real Redis, and what it does when Redis is gone."""
import time
import uuid

import pytest
import redis

from gateway.ratelimit import Limit, RateLimiter, limiter_client
from shared.errors import RateLimited
from chaos.servers import free_port


@pytest.fixture
def client():
    client = redis.Redis.from_url("redis://127.0.0.1:6379/12", socket_timeout=1)
    yield client
    client.close()


def allowed(limiter, scope, key, times):
    passed = 0
    for _ in range(times):
        try:
            limiter.check(scope, key)
            passed += 1
        except RateLimited:
            pass
    return passed


def test_a_burst_is_allowed_then_requests_are_refused_with_retry_after(client):
    limiter = RateLimiter(client, {"user": Limit(rate_per_s=0.5, burst=5)},
                          key_prefix="test:" + uuid.uuid4().hex)
    assert allowed(limiter, "user", "alice", 5) == 5
    with pytest.raises(RateLimited) as raised:
        limiter.check("user", "alice")
    assert raised.value.retry_after_s == 2  # one request every 2 s at 0.5/s
    assert raised.value.status == 429


def test_keys_and_scopes_have_their_own_buckets(client):
    limiter = RateLimiter(client, {"user": Limit(1, 2), "ip": Limit(1, 2)},
                          key_prefix="test:" + uuid.uuid4().hex)
    assert allowed(limiter, "user", "alice", 3) == 2
    assert allowed(limiter, "user", "bob", 3) == 2
    assert allowed(limiter, "ip", "alice", 3) == 2


def test_the_bucket_refills_at_the_rate(client):
    limiter = RateLimiter(client, {"user": Limit(rate_per_s=100, burst=1)},
                          key_prefix="test:" + uuid.uuid4().hex)
    limiter.check("user", "alice")
    with pytest.raises(RateLimited):
        limiter.check("user", "alice")
    time.sleep(0.05)  # five intervals of 10 ms
    limiter.check("user", "alice")


def test_without_redis_it_fails_open_and_counts_each_skip():
    dead = limiter_client("redis://127.0.0.1:{}/0".format(free_port()), timeout_s=0.2)
    skipped = []
    limiter = RateLimiter(dead, {"user": Limit(1, 1)}, on_skip=skipped.append)
    for _ in range(10):
        limiter.check("user", "alice")  # never raises: requests are served
    assert skipped == ["user"] * 10
    # After three failures the breaker stops asking the dead Redis at all.
    assert limiter.breaker.state == "open"


def test_many_checks_in_one_round_trip_each_answered_on_its_own(client):
    limiter = RateLimiter(client, {"user": Limit(1, 2), "ip": Limit(1, 1)},
                          key_prefix="test:" + uuid.uuid4().hex)
    answers = limiter.check_many([("user", "alice"), ("user", "alice"), ("user", "alice"),
                                  ("ip", "10.0.0.1"), ("ip", "10.0.0.2")])
    assert answers[:2] == [None, None] and isinstance(answers[2], RateLimited)
    assert answers[3:] == [None, None]


def test_many_checks_survive_redis_forgetting_the_script(client):
    limiter = RateLimiter(client, {"user": Limit(1, 5)}, key_prefix="test:" + uuid.uuid4().hex)
    client.script_flush()  # what a Redis restart does
    assert limiter.check_many([("user", "alice")]) == [None]


def test_many_checks_fail_open_together_without_redis():
    dead = limiter_client("redis://127.0.0.1:{}/0".format(free_port()), timeout_s=0.2)
    skipped = []
    limiter = RateLimiter(dead, {"user": Limit(1, 1), "ip": Limit(1, 1)},
                          on_skip=skipped.append)
    assert limiter.check_many([("user", "a"), ("ip", "b")]) == [None, None]
    assert skipped == ["user", "ip"]
