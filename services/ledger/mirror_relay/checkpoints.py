"""The checkpoints: per partition of the topic, the first offset the newest round that
wrote to it was given and the highest offset ever acknowledged (``ledger.mirror_partitions``,
written with the rows' stamp), and what a round's acknowledgements say against them."""
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text, func, select
from sqlalchemy.dialects.postgresql import insert

metadata = MetaData(schema="ledger")
mirror_partitions = Table(
    "mirror_partitions",
    metadata,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("round_first_offset", BigInteger, nullable=False),
    Column("last_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def checkpoints(connection, topic):
    """``{partition: row}`` of what the broker acknowledged on ``topic``."""
    rows = connection.execute(select(mirror_partitions).where(
        mirror_partitions.c.topic == topic)).all()
    return {row.partition: row for row in rows}


def log_restarted(connection, topic, acks):
    """Why the acknowledgements ``acks`` show a partition whose log started again
    (an offset at or below an earlier one), or None."""
    known = checkpoints(connection, topic)
    last = {}
    for ack in acks:
        before = last.get(ack.partition)
        if before is None and ack.partition in known:
            before = known[ack.partition].last_offset
        if before is not None and ack.offset <= before:
            return "partition {} acknowledged offset {} after {}".format(
                ack.partition, ack.offset, before)
        last[ack.partition] = ack.offset
    return None


def record_round(connection, topic, acks):
    """The checkpoints of a round acknowledged as ``acks`` (RecordMetadata)."""
    offsets = {}
    for ack in acks:
        offsets.setdefault(ack.partition, []).append(ack.offset)
    statement = insert(mirror_partitions).values([
        {"topic": topic, "partition": partition,
         "round_first_offset": min(found), "last_offset": max(found)}
        for partition, found in sorted(offsets.items())
    ])
    connection.execute(statement.on_conflict_do_update(
        index_elements=[mirror_partitions.c.topic, mirror_partitions.c.partition],
        set_={
            "round_first_offset": statement.excluded.round_first_offset,
            "last_offset": func.greatest(mirror_partitions.c.last_offset,
                                         statement.excluded.last_offset),
            "updated_at": func.now(),
        }))
