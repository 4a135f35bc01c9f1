"""Rate limits in Redis, per user and per client IP, shared by every gateway process.

The algorithm is GCRA (the generic cell rate algorithm, a leaky bucket that
stores one timestamp per key): ``rate_per_s`` requests a second on average,
up to ``burst`` at once. One Lua script reads and updates the key atomically
and takes the time from Redis, so gateways with skewed clocks agree.

When Redis is down or slow the limiter *fails open*: requests are served
unlimited, each skip is counted in ``paysys_rate_limit_skipped_total`` and
logged. Rate limiting protects capacity; refusing every request because its
bookkeeping is unavailable would turn a Redis outage into a full outage of
payments, which do not depend on Redis. A circuit breaker stops asking a
dead Redis for a few seconds so an outage does not add a timeout to every
request.
"""
import logging
import math
from dataclasses import dataclass

import redis

from shared.circuit import CircuitBreaker
from shared.errors import RateLimited, ServiceUnavailable, unanswered

log = logging.getLogger(__name__)

# ARGV[3], when given, is the time in ms (an injected clock); else Redis's own clock.
GCRA = """
local now_ms = tonumber(ARGV[3])
if not now_ms then
  local now = redis.call('TIME')
  now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local interval_ms = tonumber(ARGV[1])
local tolerance_ms = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_ms)
if tat < now_ms then tat = now_ms end
local new_tat = tat + interval_ms
local allowed_at = new_tat - tolerance_ms
if allowed_at > now_ms then
  return {0, allowed_at - now_ms}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now_ms))
return {1, 0}
"""


@dataclass(frozen=True)
class Limit:
    rate_per_s: float
    burst: int

    @property
    def interval_ms(self):
        return 1000.0 / self.rate_per_s

    @property
    def tolerance_ms(self):
        return self.interval_ms * self.burst


class RateLimiter:
    """``check(scope, key)`` raises ``RateLimited`` once ``key`` exceeds its scope's limit."""

    def __init__(self, client, limits, key_prefix="paysys:ratelimit", on_skip=None, clock=None):
        """``clock``: seconds (a float) in place of Redis's clock, for tests; the gateway
        leaves it None, so every process reads the one clock of Redis."""
        self.client = client
        self.clock = clock
        self.limits = limits  # scope -> Limit
        self.key_prefix = key_prefix
        self.script = client.register_script(GCRA)
        self.breaker = CircuitBreaker("redis", failure_threshold=3, reset_timeout_s=5)
        self.on_skip = on_skip or (lambda scope: None)

    def check(self, scope, key):
        limit = self.limits[scope]
        try:
            allowed, wait_ms = self.breaker.call(self._ask, scope, key, limit)
        except ServiceUnavailable as exc:
            self.on_skip(scope)
            log.warning("rate limit %s not checked (failing open): %s", scope, exc)
            return
        if not allowed:
            raise RateLimited(
                "Too many requests; slow down.",
                retry_after_s=max(1, math.ceil(int(wait_ms) / 1000)),
            )

    def check_many(self, checks):
        """``check`` for many ``(scope, key)`` at once, in one Redis round trip (a
        pipeline): per check, in order, None (allowed) or the ``RateLimited`` to answer.
        Fails open together: when Redis does not answer, every check passes."""
        try:
            replies = self.breaker.call(self._ask_many, checks)
        except ServiceUnavailable as exc:
            for scope, _ in checks:
                self.on_skip(scope)
            log.warning("%d rate limit checks not made (failing open): %s", len(checks), exc)
            return [None] * len(checks)
        return [None if allowed else RateLimited(
                    "Too many requests; slow down.",
                    retry_after_s=max(1, math.ceil(int(wait_ms) / 1000)))
                for allowed, wait_ms in replies]

    def _ask_many(self, checks):
        try:
            replies = self._pipelined(checks)
            if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
                self.client.script_load(GCRA)  # Redis restarted and forgot the script
                replies = self._pipelined(checks)
        except redis.RedisError as exc:
            raise unanswered("Redis: {}".format(exc))
        for reply in replies:
            if isinstance(reply, Exception):
                raise unanswered("Redis: {}".format(reply))
        return replies

    def _pipelined(self, checks):
        # EVALSHA straight into the pipeline: a Script object would ask Redis whether
        # it has the script first, a second round trip per batch.
        pipe = self.client.pipeline(transaction=False)
        for scope, key in checks:
            limit = self.limits[scope]
            pipe.evalsha(self.script.sha, 1, "{}:{}:{}".format(self.key_prefix, scope, key),
                         limit.interval_ms, limit.tolerance_ms)
        return pipe.execute(raise_on_error=False)

    def _ask(self, scope, key, limit):
        redis_key = "{}:{}:{}".format(self.key_prefix, scope, key)
        try:
            args = [limit.interval_ms, limit.tolerance_ms]
            if self.clock is not None:
                args.append(round(self.clock() * 1000))
            return self.script(keys=[redis_key], args=args)
        except redis.RedisError as exc:
            raise unanswered("Redis: {}".format(exc))


def limits_from_settings(limits):
    """``{"user": Limit, "ip": Limit}`` of the gateway's ``rate_limits`` settings."""
    return {"user": Limit(limits.user_per_s, limits.user_burst),
            "ip": Limit(limits.ip_per_s, limits.ip_burst)}
