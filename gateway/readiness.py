"""Readiness: can this gateway serve money requests right now?

/ready is 503 only when it cannot (the rules below); anything else that does not
answer makes it 200 ``"degraded"``, naming what, because the design serves through it:

- fatal: PostgreSQL (every service keeps its records there; the gateway its
  Idempotency-Keys), RabbitMQ (every call to a service rides it), the auth service (it
  issues the tokens every request needs), transactions (it decides every movement), the
  ledger (it holds the accounts and posts every movement), and fewer validators
  answering than a quorum (a majority of the configured pool: without one no movement
  can be approved);
- degraded: Redis (rate limits fail open; validators skip their stateful rules), Kafka
  (the ledger's outbox keeps every posting and its relay publishes once Kafka is back),
  a validator while a quorum still answers, payments (deposits, withdrawals and
  transfers never go through it: only /v1/payments answers 503 meanwhile), and
  notifications (deliveries wait in its table and go out when it is back).

``Readiness`` (a dependency provider) runs the probes of gateway/probes.py on clients it
keeps for the life of the process, and caches a round for ``readiness_cache_ms``.
"""
from datetime import datetime, timezone

from nameko.extensions import DependencyProvider

from gateway.probes import Cached, KafkaProbe, RabbitProbe, run_probes
from gateway.settings import GatewaySettings
from shared.catalog import rpc_identities_of
from shared.db import DatabaseClient
from shared.ids import rfc3339
from shared.logs import new_correlation_id
from shared.redis import redis_client
from shared.rpc import RpcClient
from shared.settings import settings_of
from shared.shared_settings import SharedSettings

READY, DEGRADED, UNAVAILABLE = "ready", "degraded", "unavailable"

DEPENDENCIES = ("rabbitmq", "postgresql", "redis", "kafka")
# What the money path cannot do without; the validators count by quorum.
REQUIRED = frozenset({"postgresql", "rabbitmq", "auth", "transactions", "ledger"})


def quorum(validators):
    """Votes a decision needs: a majority of the configured pool
    (services/transactions/quorum.py counts the same way)."""
    return len(validators) // 2 + 1


def verdict(answers, validators):
    """``(status, unavailable, degraded)`` of ``answers`` (name -> Answer), by the rules
    above; each list in the order of ``answers``."""
    down = [name for name, answer in answers.items() if not answer.ok]
    validators_down = [name for name in down if name in validators]
    without_quorum = len(validators) - len(validators_down) < quorum(validators)
    unavailable = [name for name in down if name in REQUIRED
                   or (name in validators and without_quorum)]
    degraded = [name for name in down if name not in unavailable]
    status = UNAVAILABLE if unavailable else DEGRADED if degraded else READY
    return status, unavailable, degraded


def ready_body(answers, validators):
    """The /ready body: ``{status, checks: {name: "ok" or why not}, unavailable,
    degraded}``."""
    status, unavailable, degraded = verdict(answers, validators)
    return {
        "status": status,
        "checks": {name: "ok" if answer.ok else answer.error for name, answer in answers.items()},
        "unavailable": unavailable,
        "degraded": degraded,
    }


def status_body(answers, validators, checked_at):
    """The /v1/status body: the verdict, the quorum, and every dependency and process
    with its state, latency, error and role."""
    status, unavailable, degraded = verdict(answers, validators)
    answering = sum(1 for name in validators if answers[name].ok)

    def component(answer):
        entry = {
            "state": answer.state,
            "latency_ms": answer.latency_ms,
            "error": answer.error,
            "role": ("required" if answer.name in REQUIRED
                     else "quorum" if answer.name in validators else "optional"),
        }
        if answer.detail is not None:
            entry["detail"] = answer.detail
        return entry

    return {
        "status": status,
        "checked_at": checked_at,
        "unavailable": unavailable,
        "degraded": degraded,
        "quorum": {"pool": len(validators), "needed": quorum(validators),
                   "answering": answering},
        "dependencies": {name: component(answer) for name, answer in answers.items()
                         if name in DEPENDENCIES},
        "processes": {name: component(answer) for name, answer in answers.items()
                      if name not in DEPENDENCIES},
    }


class Round:
    """One round of every probe: its answers and when it ran."""

    def __init__(self, answers, checked_at):
        self.answers = answers
        self.checked_at = checked_at


class ReadinessChecks:
    """What the gateway's handlers see: ``ready()`` and ``status()`` bodies."""

    def __init__(self, provider):
        self.provider = provider

    def ready(self):
        """``(body, status code)`` of /ready."""
        provider = self.provider
        body = ready_body(provider.shallow.get().answers, provider.validators)
        return body, 503 if body["status"] == UNAVAILABLE else 200

    def status(self):
        """The /v1/status body (each service's deep health included)."""
        provider = self.provider
        found = provider.deep.get()
        return status_body(found.answers, provider.validators, found.checked_at)


class Readiness(DependencyProvider):
    db = DatabaseClient(schema="gateway")
    rpc = RpcClient()

    def setup(self):
        shared = settings_of(self.container, SharedSettings)
        gateway = settings_of(self.container, GatewaySettings).gateway
        self.timeout_s = gateway.readiness_timeout_s
        cache_s = gateway.readiness_cache_s
        self.validators = shared.validators.names
        self.services = rpc_identities_of(shared.validators.names)
        self.rabbitmq = RabbitProbe(shared.amqp_uri, self.timeout_s)
        self.kafka = KafkaProbe(shared.kafka.servers, self.timeout_s)
        self.redis = redis_client(shared.redis.url, self.timeout_s)
        self.shallow = Cached(lambda: self._round(deep=False), cache_s)
        self.deep = Cached(lambda: self._round(deep=True), cache_s)

    def stop(self):
        self.rabbitmq.close()
        self.kafka.close()
        self.redis.close()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return ReadinessChecks(self)

    def _round(self, deep):
        checks = {
            "rabbitmq": self.rabbitmq,
            "postgresql": self.db.access().schema_version,
            "redis": self.redis.ping,
            "kafka": self.kafka,
        }
        # The probes' calls carry a correlation id of their own (not the probing request's).
        directory = self.rpc.detached("readiness", new_correlation_id())
        for identity in self.services:
            checks[identity] = self._pinger(directory, identity, deep)
        checked_at = rfc3339(datetime.now(timezone.utc))
        return Round(run_probes(checks, self.timeout_s), checked_at)

    def _pinger(self, directory, identity, deep):
        # Readiness asks for real even while a circuit breaker is open.
        return lambda: directory[identity].health(deep=deep, timeout_s=self.timeout_s,
                                                  breaker=False)

