"""``RelaySettings``: the Kafka mirror relay's settings, from the shared ``kafka`` section
(where, which topic) and the ledger's own (how often, how much)."""
from dataclasses import dataclass

from services.ledger.settings import LedgerSettings
from shared.settings import load
from shared.shared_settings import SharedSettings


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
        """From ``config`` (config.yml as a dict), read through the settings models."""
        kafka = load(SharedSettings, config).kafka
        ledger = load(LedgerSettings, config).ledger
        return cls(
            bootstrap_servers=kafka.servers,
            topic=kafka.ledger_topic,
            partitions=kafka.ledger_partitions,
            replication_factor=kafka.ledger_replication_factor,
            batch_size=ledger.relay_batch_size,
            interval_s=ledger.relay_interval_ms / 1000,
            check_interval_s=ledger.relay_check_interval_s,
            timeout_ms=kafka.request_timeout_ms,
            backoff_max_s=ledger.relay_backoff_max_ms / 1000,
        )

    @property
    def delivery_timeout_ms(self):
        # kafka-python wants at least linger (0) + request timeout; a little more lets
        # one retry of a lost connection fit.
        return self.timeout_ms + 500
