"""Asking each dependency and service whether it answers, on connections kept open.

A load balancer probes /ready every few seconds from every gateway; a fresh AMQP
connection and a fresh Kafka admin client per probe cost the brokers a handshake
each time (and the Kafka client a background thread). So each probe keeps its client
for the life of the process and makes a new one only after a failure. Every probe runs
in its own greenthread under one deadline (``run_probes``), so a dead dependency costs
a round at most that deadline, and the round names everything that did not answer.
"""
import time
from dataclasses import dataclass, field

import eventlet
from kafka import KafkaAdminClient
from kombu import Connection

OK = "ok"
DOWN = "down"


@dataclass
class Answer:
    """What one probe found: ``state`` ok or down, how long it took, why not, and what
    the answer said (a service's health report)."""

    name: str
    state: str
    latency_ms: float
    error: str = None
    detail: dict = field(default=None)

    @property
    def ok(self):
        return self.state == OK


class RabbitProbe:
    """A round trip to RabbitMQ (a passive declare of a built-in exchange) on one
    connection kept open between probes."""

    def __init__(self, amqp_uri, timeout_s):
        self.amqp_uri = amqp_uri
        self.timeout_s = timeout_s
        self.connection = None

    def __call__(self):
        try:
            if self.connection is None:
                # No heartbeats: nothing drives them between probes, and a dead socket
                # shows at the next probe anyway.
                self.connection = Connection(self.amqp_uri, connect_timeout=self.timeout_s,
                                             heartbeat=0)
                self.connection.connect()
            channel = self.connection.default_channel
            channel.exchange_declare("amq.direct", "direct", passive=True)
        except BaseException:  # a timeout too: the connection is in an unknown state
            self.close()
            raise

    def close(self):
        connection, self.connection = self.connection, None
        if connection is not None:
            _quietly(connection.release)


class KafkaProbe:
    """A metadata request to the Kafka cluster on one admin client kept between probes."""

    def __init__(self, bootstrap_servers, timeout_s):
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self.client = None

    def __call__(self):
        try:
            if self.client is None:
                timeout_ms = int(self.timeout_s * 1000)
                self.client = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers, client_id="paysys-readiness",
                    request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms)
            self.client.list_topics()
        except BaseException:
            self.close()
            raise

    def close(self):
        client, self.client = self.client, None
        if client is not None:
            # Closing joins the client's network thread: never on the probe's time.
            eventlet.spawn_n(_quietly, client.close)


def _quietly(close):
    try:
        close()
    except Exception:  # noqa: BLE001 - letting go of a broken client; nothing to report
        pass


def _why(exc):
    text = str(exc)
    return "{}: {}".format(type(exc).__name__, text) if text else type(exc).__name__


def probe(name, check, timeout_s):
    """Run ``check()`` under ``timeout_s``: an Answer (the check's return value, a dict,
    is its detail)."""
    started_s = time.perf_counter()
    try:
        with eventlet.Timeout(timeout_s):
            detail = check()
        state, error = OK, None
    except eventlet.Timeout:
        detail, state, error = None, DOWN, "no answer within {:g} s".format(timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure means "does not answer"; say why
        detail, state, error = None, DOWN, _why(exc)
    latency_ms = round((time.perf_counter() - started_s) * 1000, 3)
    return Answer(name, state, latency_ms, error,
                  detail if isinstance(detail, dict) else None)


def run_probes(checks, timeout_s):
    """Run ``checks`` (name -> callable) side by side: ``{name: Answer}`` in their order."""
    names = list(checks)
    pool = eventlet.GreenPool(len(names))
    return dict(zip(names, pool.imap(lambda name: probe(name, checks[name], timeout_s),
                                     names)))


class Cached:
    """The last answer of ``compute()`` for ``ttl_s``, computed once however many ask at
    the same moment: a probe storm costs the dependencies one round per ``ttl_s``."""

    def __init__(self, compute, ttl_s, clock=time.monotonic):
        self.compute = compute
        self.ttl_s = ttl_s
        self.clock = clock
        self._value = None
        self._computed_s = None
        self._running = None  # an Event while a round is under way

    def get(self):
        if self._computed_s is not None and self.clock() - self._computed_s < self.ttl_s:
            return self._value
        if self._running is not None:
            return self._running.wait()
        running = self._running = eventlet.Event()
        try:
            value = self.compute()
        except BaseException as exc:
            self._running = None
            running.send_exception(exc)
            raise
        self._value, self._computed_s, self._running = value, self.clock(), None
        running.send(value)
        return value
