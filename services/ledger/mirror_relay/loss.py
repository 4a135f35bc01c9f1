"""Has the broker lost messages? The rules of the package's docstring, each named in the
replay it causes."""
from kafka import TopicPartition
from kafka.admin import OffsetSpec
from sqlalchemy import exists, select

from services.ledger.mirror_relay.checkpoints import checkpoints
from services.ledger.outbox import outbox

OFFSET_WENT_BACK = "offset_went_back"  # an acknowledged offset at or below an earlier one
PARTITION_ENDS_EARLY = "partition_ends_early"  # ends at or before the newest round's start
PARTITIONS_GONE = "partitions_gone"
TOPIC_GONE = "topic_gone"
NO_CHECKPOINTS = "no_checkpoints"  # rows marked published, nothing records the topic


def find_loss(connection, admin, topic, created):
    """``(rule, detail)`` if the topic lost messages, else None. ``created``: the topic
    was just made again (clients.py, ``ensure_topic``)."""
    known = checkpoints(connection, topic)
    if not known:
        published = connection.execute(select(exists().where(
            outbox.c.published_at.is_not(None)))).scalar_one()
        if published:
            return NO_CHECKPOINTS, "nothing records what topic {} holds".format(topic)
        return None
    if created:
        return TOPIC_GONE, "topic {} was gone".format(topic)
    [description] = admin.describe_topics([topic])
    partitions = {found["partition_index"] for found in description["partitions"]}
    gone = sorted(set(known) - partitions)
    if gone:
        return PARTITIONS_GONE, "partitions {} are gone".format(gone)
    ends = admin.list_partition_offsets({
        TopicPartition(topic, partition): OffsetSpec.LATEST for partition in known})
    for partition, checkpoint in sorted(known.items()):
        end = ends[TopicPartition(topic, partition)].offset
        if end <= checkpoint.round_first_offset:
            return PARTITION_ENDS_EARLY, "partition {} ends at offset {}, it held offset {}".format(
                partition, end, checkpoint.last_offset)
    return None
