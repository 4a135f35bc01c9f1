"""The ledger's settings: its relay to the Kafka mirror and reconciliation (where Kafka is,
and the topic, are shared)."""
from shared.settings import NonNegativeInt, PositiveInt, Section, ServiceSettings, setting


class LedgerSection(Section):
    relay_batch_size: PositiveInt = setting("Outbox rows the mirror relay sends per round")
    relay_interval_ms: PositiveInt = setting("The relay's pause between rounds")
    relay_check_interval_s: PositiveInt = setting(
        "How often the relay checks that the topic still holds what it published (and "
        "replays if not)")
    relay_backoff_max_ms: PositiveInt = setting("The relay's longest pause while Kafka is away")
    reconcile_wait_ms: NonNegativeInt = setting(
        "GET /v1/ledger/reconciliation waits this long for the relay to publish the postings "
        "of its snapshot (0: not at all)")
    reconcile_catch_up_ms: PositiveInt = setting(
        "`paysys reconcile` waits up to this long while the relay is still publishing "
        "(exit 3 if not caught up by then)")
    reconcile_stall_ms: PositiveInt = setting(
        "`paysys reconcile` calls the mirror stalled (exit 1) once the relay publishes "
        "nothing for this long")
    mirror_read_timeout_ms: PositiveInt = setting(
        "A read of the topic gives up when the broker hands over nothing new for this long")

    @property
    def reconcile_wait_s(self):
        return self.reconcile_wait_ms / 1000

    @property
    def reconcile_catch_up_s(self):
        return self.reconcile_catch_up_ms / 1000

    @property
    def reconcile_stall_s(self):
        return self.reconcile_stall_ms / 1000

    @property
    def mirror_read_timeout_s(self):
        return self.mirror_read_timeout_ms / 1000


class LedgerSettings(ServiceSettings):
    ledger: LedgerSection
