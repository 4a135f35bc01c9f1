"""The ledger's settings: its relay to the Kafka mirror and reconciliation (where Kafka is,
and the topic, are shared)."""
from shared.settings import PositiveInt, Section, ServiceSettings, setting


class LedgerSection(Section):
    relay_batch_size: PositiveInt = setting("Outbox rows the mirror relay sends per round")
    relay_interval_ms: PositiveInt = setting("The relay's pause between rounds")
    relay_check_interval_s: PositiveInt = setting(
        "How often the relay checks that the topic still holds what it published (and "
        "replays if not)")
    relay_backoff_max_ms: PositiveInt = setting("The relay's longest pause while Kafka is away")
    reconcile_wait_ms: PositiveInt = setting(
        "Reconciliation waits this long for the relay to catch up")
    mirror_read_timeout_ms: PositiveInt = setting(
        "Reconciliation reads the topic for at most this long")

    @property
    def reconcile_wait_s(self):
        return self.reconcile_wait_ms / 1000

    @property
    def mirror_read_timeout_s(self):
        return self.mirror_read_timeout_ms / 1000


class LedgerSettings(ServiceSettings):
    ledger: LedgerSection
