"""How far each projection group is behind its topics, and how many dead letters it has.

Read from the groups' stored offsets (the ``projection_tracking`` rows each
batch commits with its writes) against the topics' end offsets in Kafka:
the truth the workers themselves act on. ``/metrics`` exports it; the
supervisor prints it and waits on it while draining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql

from backbone.topics import TopicSettings, dead_letter_topic
from projections.groups import PROJECTION_TOPICS

__all__ = ["GroupLags", "PartitionLag", "group_lags", "group_lags_at", "partition_lags", "partition_lags_at"]


@dataclass(frozen=True)
class GroupLags:
    """Per consumer group: messages not yet processed, and messages in its dead-letter topic."""

    behind: dict[str, int]
    dead_letters: dict[str, int]

    @property
    def total(self) -> int:
        """Messages every group has yet to process, summed."""
        return sum(self.behind.values())


@dataclass(frozen=True)
class PartitionLag:
    """Where one projection group stands on one partition of a topic it reads."""

    group: str
    topic: str
    partition: int
    next_offset: int
    """The group's stored next offset (0 before its first batch)."""
    end_offset: int

    @property
    def behind(self) -> int:
        return max(self.end_offset - self.next_offset, 0)


async def partition_lags(conn: psycopg.AsyncConnection[Any], schema: str, kafka_servers: str,
                         topics: TopicSettings) -> tuple[list[PartitionLag], dict[str, int]]:
    """Every group's place on every partition it reads, and each group's dead-letter topic's size.

    Raises what aiokafka and psycopg raise when the broker or the database cannot answer.
    """
    names = {topics.name(t) for group_topics in PROJECTION_TOPICS.values() for t in group_topics}
    names |= {topics.name(dead_letter_topic(g)) for g in PROJECTION_TOPICS}
    ends = await _end_offsets(kafka_servers, sorted(names))
    cur = await conn.execute(sql.SQL(
        "SELECT consumer_group, topic, partition, next_offset FROM {}.projection_tracking").format(
        sql.Identifier(schema)))
    stored = {(g, t, p): n for g, t, p, n in await cur.fetchall()}
    lags: list[PartitionLag] = []
    dead: dict[str, int] = {}
    for group, group_topics in PROJECTION_TOPICS.items():
        wanted = {topics.name(t) for t in group_topics}
        lags += [PartitionLag(group, tp.topic, tp.partition,
                              stored.get((topics.name(group), tp.topic, tp.partition), 0), end)
                 for tp, end in sorted(ends.items()) if tp.topic in wanted]
        dlq = topics.name(dead_letter_topic(group))
        dead[group] = sum(end for tp, end in ends.items() if tp.topic == dlq)
    return lags, dead


async def group_lags(conn: psycopg.AsyncConnection[Any], schema: str, kafka_servers: str,
                     topics: TopicSettings) -> GroupLags:
    """The lags of every group of :data:`PROJECTION_TOPICS` in ``schema``, summed over partitions.

    Raises what aiokafka and psycopg raise when the broker or the database cannot answer.
    """
    lags, dead = await partition_lags(conn, schema, kafka_servers, topics)
    behind = {group: sum(p.behind for p in lags if p.group == group) for group in PROJECTION_TOPICS}
    return GroupLags(behind, dead)


async def group_lags_at(database_url: str, schema: str, kafka_servers: str, topics: TopicSettings) -> GroupLags:
    """:func:`group_lags` over a connection of its own (for callers without a pool)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await group_lags(conn, schema, kafka_servers, topics)


async def partition_lags_at(database_url: str, schema: str, kafka_servers: str,
                            topics: TopicSettings) -> tuple[list[PartitionLag], dict[str, int]]:
    """:func:`partition_lags` over a connection of its own."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await partition_lags(conn, schema, kafka_servers, topics)


async def _end_offsets(kafka_servers: str, names: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in sorted(consumer.partitions_for_topic(name) or await _partitions(consumer, name))
        ]
        return await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
    return consumer.partitions_for_topic(topic) or set()
