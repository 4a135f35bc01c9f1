"""The one way the system builds a Redis client.

Every user of Redis here (the gateway's rate limits, each validator's risk state) keeps
going without it: a check Redis cannot answer at once is skipped, not waited for. So a
client answers within its timeout or fails, and never retries.
"""
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def redis_client(url, timeout_s, decode_responses=False):
    """A client of ``url`` whose every call (connecting included) is bounded by
    ``timeout_s``, with no retries."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0), decode_responses=decode_responses)
