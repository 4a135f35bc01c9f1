"""``MirrorRelay``: the ledger process's relay of its outbox to the Kafka mirror."""

from sqlalchemy import Text, cast

from services.ledger.mirror_relay.settings import RelaySettings
from services.ledger.mirror_relay.sink import MirrorSink
from services.ledger.outbox import outbox
from shared.outbox_relay.loop import Relay
from shared.outbox_relay.provider import OutboxRelay
from shared.outbox_relay.rounds import Outbox

# The advisory lock key of the relay's claim ("ledger relay", any fixed number).
RELAY_LOCK_KEY = 7_283_912

MIRROR_OUTBOX = Outbox(
    # The payload as PostgreSQL's JSON text, sent as it is: no parse and no re-encoding
    # of every message.
    outbox, "published_at", (outbox.c.account_id, cast(outbox.c.payload, Text).label("payload"),
                             outbox.c.traceparent),
    RELAY_LOCK_KEY)


def mirror_relay(engine, settings):
    """The Relay of the ledger's outbox to the topic of ``settings`` (RelaySettings)."""
    return Relay(engine, MIRROR_OUTBOX, MirrorSink(settings), settings,
                 "Kafka mirror relay")


class MirrorRelay(OutboxRelay):
    """The ledger's relay; ``post`` wakes it."""

    def make_relay(self, engine, container):
        return mirror_relay(engine, RelaySettings.from_config(container.config))
