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

__all__ = ["EndOffsets", "GroupLags", "LagReader", "PartitionLag", "group_lags", "group_lags_at", "partition_lags",
           "partition_lags_at"]


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


class EndOffsets:
    """Topics' end offsets read over one Kafka client, kept from one read to the next.

    Starting a consumer costs a bootstrap, a metadata round trip and the broker's
    bookkeeping of a new connection; a caller asking every second (the supervisor's
    progress line) keeps one. A read that fails closes the client: the next starts afresh.
    For one read, ``async with EndOffsets(servers) as offsets`` closes it after.
    """

    def __init__(self, kafka_servers: str) -> None:
        self._servers = kafka_servers
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self, names: list[str]) -> dict[TopicPartition, int]:
        """The end offset of every partition of the topics ``names`` (those the broker has)."""
        try:
            consumer = await self._started()
            partitions = [
                TopicPartition(name, p)
                for name in names
                for p in sorted(consumer.partitions_for_topic(name) or await _partitions(consumer, name))
            ]
            return await consumer.end_offsets(partitions) if partitions else {}
        except BaseException:
            await self.close()
            raise

    async def __aenter__(self) -> EndOffsets:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self._servers, enable_auto_commit=False)
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer


async def partition_lags(conn: psycopg.AsyncConnection[Any], schema: str, offsets: EndOffsets,
                         topics: TopicSettings) -> tuple[list[PartitionLag], dict[str, int]]:
    """Every group's place on every partition it reads, and each group's dead-letter topic's size.

    Raises what aiokafka and psycopg raise when the broker or the database cannot answer.
    """
    names = {topics.name(t) for group_topics in PROJECTION_TOPICS.values() for t in group_topics}
    names |= {topics.name(dead_letter_topic(g)) for g in PROJECTION_TOPICS}
    ends = await offsets.read(sorted(names))
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


async def group_lags(conn: psycopg.AsyncConnection[Any], schema: str, offsets: EndOffsets,
                     topics: TopicSettings) -> GroupLags:
    """The lags of every group of :data:`PROJECTION_TOPICS` in ``schema``, summed over partitions.

    Raises what aiokafka and psycopg raise when the broker or the database cannot answer.
    """
    return _summed(*await partition_lags(conn, schema, offsets, topics))


def _summed(lags: list[PartitionLag], dead: dict[str, int]) -> GroupLags:
    behind = {group: sum(p.behind for p in lags if p.group == group) for group in PROJECTION_TOPICS}
    return GroupLags(behind, dead)


class LagReader:
    """:func:`group_lags` and :func:`partition_lags` over a connection and a Kafka client it keeps.

    For a caller that asks every second (the supervisor): opening a PostgreSQL
    connection forks a backend, and starting a Kafka client costs the broker a
    bootstrap, each time. A read that fails drops both; the next reconnects.
    Use it from one event loop, the one it first read in.
    """

    def __init__(self, database_url: str, schema: str, kafka_servers: str, topics: TopicSettings) -> None:
        self._database_url = database_url
        self._schema = schema
        self._topics = topics
        self._offsets = EndOffsets(kafka_servers)
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def partition_lags(self) -> tuple[list[PartitionLag], dict[str, int]]:
        """See :func:`partition_lags`; raises what it raises (and then reconnects on the next read)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self._database_url, autocommit=True)
            return await partition_lags(self._conn, self._schema, self._offsets, self._topics)
        except BaseException:
            await self.close()
            raise

    async def group_lags(self) -> GroupLags:
        """See :func:`group_lags`."""
        return _summed(*await self.partition_lags())

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                await conn.close()
        finally:
            await self._offsets.close()


async def group_lags_at(database_url: str, schema: str, kafka_servers: str, topics: TopicSettings) -> GroupLags:
    """:func:`group_lags` once, over a connection and a Kafka client of its own (for callers without a pool)."""
    return _summed(*await partition_lags_at(database_url, schema, kafka_servers, topics))


async def partition_lags_at(database_url: str, schema: str, kafka_servers: str,
                            topics: TopicSettings) -> tuple[list[PartitionLag], dict[str, int]]:
    """:func:`partition_lags` once, over a connection and a Kafka client of its own."""
    reader = LagReader(database_url, schema, kafka_servers, topics)
    try:
        return await reader.partition_lags()
    finally:
        await reader.close()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
    return consumer.partitions_for_topic(topic) or set()


async def forensics_trailing_s(conn: Any, schema: str) -> float:
    """Seconds of event time the newest explained decision trails the newest projected one (0: caught up).

    Both maxima come off the tables' time indexes. Event time is the ticks' time, so
    live this is how far behind the explanations are; a quiet system stays at 0.
    """
    query = sql.SQL("SELECT EXTRACT(EPOCH FROM (SELECT max(decided_at) FROM {0}.decisions)"
                    " - COALESCE((SELECT max(decided_at) FROM {0}.forensics),"
                    " (SELECT min(decided_at) FROM {0}.decisions)))").format(sql.Identifier(schema))
    row = await (await conn.execute(query)).fetchone()
    return max(float(row[0]), 0.0) if row and row[0] is not None else 0.0
