"""The replay: when the topic lost messages, every outbox row is unpublished again and the
topic's checkpoints forgotten, so the relay publishes the whole outbox again, in order."""
import logging

from sqlalchemy import delete, update

from services.ledger.mirror_relay.checkpoints import mirror_partitions
from services.ledger.outbox import outbox

log = logging.getLogger(__name__)


def replay(connection, topic, rule, detail):
    """Unpublish everything (in the caller's transaction); ``rule``: which rule found the
    loss, ``detail`` what it saw. The number of rows to publish again."""
    count = connection.execute(
        update(outbox).where(outbox.c.published_at.is_not(None))
        .values(published_at=None)).rowcount
    connection.execute(delete(mirror_partitions).where(mirror_partitions.c.topic == topic))
    log.warning("Kafka mirror relay: the topic lost messages (%s: %s); replaying %d from "
                "the outbox", rule, detail, count, extra={"fields": {"replay_rule": rule}})
    return count
