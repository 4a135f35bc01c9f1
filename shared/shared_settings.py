"""The settings every process shares: where RabbitMQ, PostgreSQL, Redis and Kafka are, the
deadlines of calls between services, the validator pool, where a running system keeps its
files. Each service's own settings are in its package (``settings.py``)."""
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from shared.config import ROOT
from shared.rabbitmq import DIST_PORT_OFFSET, MAX_NODES, queue_type
from shared.settings import (
    NonNegativeInt, Port, PositiveFloat, PositiveInt, Section, ServiceSettings, setting)


class RabbitmqSection(Section):
    nodes: PositiveInt = setting(
        "1: the RabbitMQ of AMQP_URI; more: `make up` starts a cluster of that many "
        "rabbitmq-server nodes on loopback and every process gets all of them (AMQP_URI "
        "is then ignored; docs/operations.md)", le=MAX_NODES)
    cluster_port_base: int = setting(
        "Cluster node i listens for AMQP on cluster_port_base + i - 1 and for Erlang "
        "distribution on cluster_port_base + {} + i - 1".format(DIST_PORT_OFFSET),
        ge=1024, le=65535 - DIST_PORT_OFFSET - MAX_NODES)
    cluster_name: str = setting(
        "Cluster node i is <cluster_name>-i@localhost (the machine's epmd knows every "
        "node by name: two clusters on one machine need two names)",
        pattern=r"^[A-Za-z0-9_-]+$")
    queue_type: Literal["auto", "classic", "quorum"] = setting(
        "Type of the services' RPC and event queues; auto: quorum on a cluster, classic "
        "on one node (reply queues are always classic)")

    @property
    def clustered(self):
        return self.nodes > 1

    @property
    def services_queue_type(self):
        return queue_type(self.queue_type, self.nodes)


class DatabaseSection(Section):
    url: str = setting("PostgreSQL (libpq URL); each service uses its own schema of it",
                       secret=True)
    pool_size: PositiveInt = setting(
        "Connections each service process keeps open (as many again may open under a burst)")
    connect_timeout_s: PositiveInt = setting("Longest wait for a new PostgreSQL connection")
    statement_timeout_ms: PositiveInt = setting("Longest any one SQL statement may run")


class PostgresHaSection(Section):
    enabled: bool = setting(
        "Run PostgreSQL as a primary and a synchronous standby under pg_auto_failover, "
        "started by `make up` (docs/operations.md); the services then reach whichever is "
        "primary, and database.url gives only the user, password and database name")
    port_base: int = setting(
        "Ports of the pg_auto_failover instances: its monitor on port_base, the two data "
        "nodes on port_base + 1 and + 2", ge=1, le=65533)
    failover_timeout_s: int = setting(
        "A primary silent this long is failed over: its standby is promoted this long "
        "plus 5 s later (the old primary demotes itself meanwhile if it is only cut off)",
        ge=2, le=600)

    @property
    def monitor_port(self):
        return self.port_base

    @property
    def node_ports(self):
        return (self.port_base + 1, self.port_base + 2)

    @property
    def hosts(self):
        return ["127.0.0.1:{}".format(port) for port in self.node_ports]


class RedisSection(Section):
    url: str = setting("Redis (rate limits, validators' risk state)", secret=True)


class KafkaSection(Section):
    bootstrap_servers: str = setting(
        "Kafka bootstrap address; empty: the embedded broker `make up` starts")
    embedded_host: str = setting("Address the embedded Kafka-protocol broker listens on")
    embedded_port: Port = setting("Port of the embedded Kafka-protocol broker")
    request_timeout_ms: PositiveInt = setting("Deadline of one Kafka request")
    ledger_topic: str = setting("Topic the ledger's postings are mirrored to", min_length=1)
    ledger_partitions: PositiveInt = setting("Partitions of the ledger topic when created")
    ledger_replication_factor: PositiveInt = setting(
        "Replication factor of the ledger topic when created")

    @property
    def embedded(self):
        """No address configured: the embedded broker is the one."""
        return not self.bootstrap_servers

    @property
    def servers(self):
        """The bootstrap address: the configured one, else the embedded broker's."""
        return self.bootstrap_servers or "{}:{}".format(self.embedded_host, self.embedded_port)


class RpcSection(Section):
    timeout_ms: PositiveInt = setting(
        "A call to a service that has not answered by then is a 503, never a hang")
    decision_wait_ms: PositiveInt = setting(
        "A money-moving request waits this long for its decision (201); after, 202 + "
        "Location and the system finishes the transaction by itself")

    @property
    def timeout_s(self):
        return self.timeout_ms / 1000

    @property
    def decision_wait_s(self):
        return self.decision_wait_ms / 1000


class CircuitBreakerSection(Section):
    failure_threshold: PositiveInt = setting(
        "Unavailable answers in a row from one service after which calls to it fail at once")
    reset_timeout_s: PositiveFloat = setting(
        "How long calls fail at once before one is tried again")


class ValidatorsSection(Section):
    pool_size: PositiveInt = setting(
        "Validators in the pool (validator_1 … validator_N); a majority of them is the quorum",
        le=99)
    keys_dir: str = setting(
        "Directory of each validator's vote-signing key (validator_N.key); empty: "
        "<run_dir>/keys")

    key_grace_period_s: NonNegativeInt = setting(
        "After `paysys keys rotate`, a validator's old key is still accepted this long "
        "(docs/keys.md)")

    @property
    def names(self):
        """RPC identities of the validator pool: validator_1 … validator_N."""
        return ["validator_{}".format(i) for i in range(1, self.pool_size + 1)]


class ReplicasSection(Section):
    """Processes of each identity `make up` starts; they share its queues (docs/operations.md).
    A validator's replicas are processes of that one voter: the pool's size is
    ``validators.pool_size``."""

    default: PositiveInt = setting(
        "Processes of every service (each validator: processes of that one voter)", le=16)
    auth: NonNegativeInt = setting("Processes of auth; 0: replicas.default", le=16)
    transactions: NonNegativeInt = setting(
        "Processes of transactions; 0: replicas.default", le=16)
    validator: NonNegativeInt = setting(
        "Processes of each validator of the pool; 0: replicas.default", le=16)
    payments: NonNegativeInt = setting("Processes of payments; 0: replicas.default", le=16)
    ledger: NonNegativeInt = setting("Processes of the ledger; 0: replicas.default", le=16)
    notifications: NonNegativeInt = setting(
        "Processes of notifications; 0: replicas.default", le=16)
    gateway: NonNegativeInt = setting(
        "Processes of the gateway, all on its one address (SO_REUSEPORT); 0: "
        "replicas.default", le=16)

    @property
    def counts(self):
        """``{service name: its processes}``, the default filled in."""
        return {name: getattr(self, name) or self.default
                for name in type(self).model_fields if name != "default"}


class TokensSection(Section):
    public_key_file: str = setting(
        "Ed25519 public key that verifies access tokens; empty: <run_dir>/keys/"
        "jwt-ed25519.pub.pem")


class SupervisorSection(Section):
    run_dir: str = setting(
        "Where `make up` keeps its supervisord config, pid file, socket, logs and keys",
        min_length=1)
    ready_timeout_s: PositiveInt = setting("How long `make up` waits for GET /ready to say 200")

    @property
    def path(self):
        """``run_dir`` as a path, a relative one taken from the repository's root."""
        path = Path(self.run_dir)
        return path if path.is_absolute() else ROOT / path

    @property
    def keys_path(self):
        return self.path / "keys"


class MetricsSection(Section):
    port_base: int = setting(
        "Each process serves GET /metrics and GET /livez on port_base + its place among the "
        "processes (docs/metrics.md); 0: no metrics port", ge=0, le=65535)
    host: str = setting("Address the metrics ports listen on (containers: 0.0.0.0)",
                        min_length=1)


class TracingSection(Section):
    otlp_endpoint: str = setting(
        "OTLP/HTTP receiver every process sends its spans to (e.g. http://127.0.0.1:4318); "
        "empty: no export (the traceparent still travels and log lines name their trace)")


class LoggingSection(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = setting(
        "Log level of every process")


class SharedSettings(ServiceSettings):
    """What every process reads (and the `paysys` commands)."""

    amqp_uri: str = Field(alias="AMQP_URI", description="RabbitMQ (AMQP URI, with its vhost)",
                          json_schema_extra={"secret": True})
    heartbeat_s: PositiveInt = Field(
        alias="HEARTBEAT", description="Seconds between AMQP heartbeats: a dead broker is "
        "noticed within about two")
    rabbitmq: RabbitmqSection
    max_workers: PositiveInt = Field(
        description="Workers per service process (Nameko's max_workers; also its RPC "
        "prefetch); a service section may set its own")
    database: DatabaseSection
    postgres_ha: PostgresHaSection
    redis: RedisSection
    kafka: KafkaSection
    rpc: RpcSection
    circuit_breaker: CircuitBreakerSection
    validators: ValidatorsSection
    tokens: TokensSection
    supervisor: SupervisorSection
    replicas: ReplicasSection
    logging: LoggingSection
    metrics: MetricsSection
    tracing: TracingSection

    @model_validator(mode="before")
    @classmethod
    def _database_of_the_ha_pair(cls, data):
        """With ``postgres_ha.enabled`` every process reads one URL naming both data nodes
        (libpq connects to the one that takes writes: shared/pg_urls.py)."""
        from shared.pg_urls import multi_host_url

        try:
            ha = PostgresHaSection.model_validate(data["postgres_ha"])
            url = data["database"]["url"]
        except (TypeError, KeyError, ValidationError):
            return data  # the fields' own validation says what is wrong
        if not ha.enabled:
            return data
        database = dict(data["database"], url=multi_host_url(url, ha.hosts))
        return dict(data, database=database)

    @property
    def validator_keys_path(self):
        return Path(self.validators.keys_dir) if self.validators.keys_dir \
            else self.supervisor.keys_path

    @property
    def public_key_path(self):
        return Path(self.tokens.public_key_file or
                    self.supervisor.keys_path / "jwt-ed25519.pub.pem")
