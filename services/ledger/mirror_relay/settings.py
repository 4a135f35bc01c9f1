"""``RelaySettings``: the Kafka mirror relay's settings, from config.yml's ``kafka``."""
from dataclasses import dataclass

from shared.config import kafka_bootstrap_servers


@dataclass
class RelaySettings:
    bootstrap_servers: str
    topic: str
    partitions: int = 4
    replication_factor: int = 1
    batch_size: int = 500
    interval_s: float = 0.5
    check_interval_s: float = 10.0
    timeout_ms: int = 3000
    backoff_max_s: float = 5.0

    @classmethod
    def from_config(cls, config):
        kafka = config["kafka"]
        return cls(
            bootstrap_servers=kafka_bootstrap_servers(config),
            topic=kafka["ledger_topic"],
            partitions=int(kafka.get("ledger_partitions", 4)),
            replication_factor=int(kafka.get("ledger_replication_factor", 1)),
            batch_size=int(kafka.get("relay_batch_size", 500)),
            interval_s=int(kafka.get("relay_interval_ms", 500)) / 1000,
            check_interval_s=float(kafka.get("relay_check_interval_s", 10)),
            timeout_ms=int(kafka["request_timeout_ms"]),
            backoff_max_s=int(kafka.get("relay_backoff_max_ms", 5000)) / 1000,
        )

    @property
    def delivery_timeout_ms(self):
        # kafka-python wants at least linger (0) + request timeout; a little more lets
        # one retry of a lost connection fit.
        return self.timeout_ms + 500
