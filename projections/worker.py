"""Projection workers: Kafka consumer groups whose every batch lands in ONE PostgreSQL transaction.

A worker reads a batch of envelopes, lets its :class:`Projection` turn them
into rows, and writes those rows together with its tracking rows (consumer
group, topic, partition, next offset) in one transaction. On partition
assignment it seeks to the stored offsets, so Kafka's own committed offsets
are never used: a crash at any moment redoes at most the uncommitted batch,
and the rows of a batch either all exist with its offsets or none do. Rows
are keyed by event or decision id, so an event the relay sent twice is
written once (exactly-once effect).

A message that cannot be processed is retried with exponential backoff a
bounded number of times, then goes to the group's dead-letter topic with its
reason (acknowledged by the broker before the offset moves past it), and the
next messages carry on. A message that can never succeed (undecodable, an
unknown envelope schema) skips the retries.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import orjson
import psycopg
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from psycopg import sql

from backbone.envelope import ENVELOPE_SCHEMA_VERSION, unpack
from backbone.topics import (
    TopicSettings,
    dead_letter_topic,
    ensure_topics,
    glassbox_topics,
)
from glassbox import GlassboxError
from projections.pg_json import use_orjson

__all__ = [
    "Envelope",
    "PoisonMessage",
    "Projection",
    "ProjectionWorker",
    "WorkerMetrics",
    "WorkerSettings",
    "check_envelope",
    "decode_envelopes",
]

log = logging.getLogger(__name__)

Envelope = Mapping[str, Any]
_REQUIRED = ("event_id", "event_type", "schema_version", "log_position", "symbol", "timestamp_ns")


class PoisonMessage(GlassboxError):
    """A message this projection cannot process; ``reason`` is a short code, the message says why.

    ``permanent`` ones (undecodable, unknown schema) go to the dead-letter
    topic at once; others are retried first.
    """

    def __init__(self, reason: str, detail: str, permanent: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.permanent = permanent


def decode_envelopes(value: bytes | None) -> list[Any]:
    """The items of one record: a single envelope, or the envelopes of a pack (unchecked).

    Raises:
        PoisonMessage: the value is not JSON.
    """
    try:
        return unpack(orjson.loads(value or b""))
    except orjson.JSONDecodeError as error:
        raise PoisonMessage("undecodable", f"not JSON ({error})", permanent=True) from None


def check_envelope(item: object) -> Envelope:
    """``item`` as an envelope this worker reads.

    Raises:
        PoisonMessage: not an envelope, or an envelope schema this code does not read.
    """
    if not isinstance(item, dict) or any(k not in item for k in _REQUIRED):
        missing = [k for k in _REQUIRED if not isinstance(item, dict) or k not in item]
        raise PoisonMessage("undecodable", f"not an event envelope (missing {missing})", permanent=True)
    if item["schema_version"] != ENVELOPE_SCHEMA_VERSION:
        raise PoisonMessage(
            "unknown_schema_version",
            f"envelope schema {item['schema_version']!r}; this worker reads {ENVELOPE_SCHEMA_VERSION}",
            permanent=True,
        )
    return item


class Projection(ABC):
    """Turns envelopes into rows. Two methods: one may compute, one writes.

    :meth:`prepare` runs outside the transaction (CPU work such as SHAP) and
    raises :class:`PoisonMessage` for a message it cannot handle;
    :meth:`write` writes prepared rows in the worker's transaction and must
    be idempotent (the same event written twice leaves one row).
    """

    group: str
    """The consumer group; also names the dead-letter topic."""
    topics: tuple[str, ...]
    """Topics it reads, before any prefix."""

    async def already_written(
        self, conn: psycopg.AsyncConnection[Any], schema: str, envelopes: Sequence[Envelope]
    ) -> set[int]:
        """Indexes of ``envelopes`` whose rows exist already, to skip before :meth:`prepare`.

        Worth it where preparing is dear and redelivery is common (SHAP, after a re-publish);
        the default skips nothing, and :meth:`write` stays idempotent either way.
        """
        return set()

    def prepare(self, envelopes: Sequence[Envelope]) -> list[Any]:
        """Prepared items for ``envelopes`` (default: the envelopes themselves)."""
        return list(envelopes)

    def prepare_one(self, envelope: Envelope) -> Any:
        """Prepare a single envelope; used to find which message of a failed batch is the poison."""
        return self.prepare([envelope])[0]

    @abstractmethod
    async def write(self, conn: psycopg.AsyncConnection[Any], schema: str, items: Sequence[Any]) -> None:
        """Write ``items`` (from :meth:`prepare`) inside the open transaction of ``conn``."""


@dataclass(frozen=True)
class WorkerSettings:
    """Batching, retries and backoff of a projection worker."""

    max_records: int = 2_000
    poll_timeout_ms: int = 200
    fetch_max_wait_ms: int = 50
    """At least 10: the embedded broker stalled for good with 1 ms."""
    max_retries: int = 3
    backoff_base: float = 0.05
    backoff_cap: float = 2.0

    def __post_init__(self) -> None:
        if self.fetch_max_wait_ms < 10:
            raise ValueError("fetch_max_wait_ms must be at least 10 (the embedded broker stalls below that)")
        if self.max_records < 1 or self.max_retries < 0 or self.backoff_base <= 0:
            raise ValueError(f"worker settings out of range: {self}")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1, 2, ...)."""
        return min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))


@dataclass
class WorkerMetrics:
    """What ``/metrics`` exports about a worker."""

    messages_total: int = 0
    """Messages consumed for good: written, ignored by the projection, or dead-lettered."""
    processed_total: int = 0
    dead_lettered_total: int = 0
    batches_total: int = 0
    retries_total: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


class _SeekToStoredOffsets(ConsumerRebalanceListener):
    def __init__(self, worker: ProjectionWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._worker.seek_to_stored(list(assigned))


class ProjectionWorker:
    """Runs one :class:`Projection` as a member of its consumer group."""

    def __init__(
        self,
        projection: Projection,
        bootstrap_servers: str,
        database_url: str,
        schema: str,
        topics: TopicSettings,
        settings: WorkerSettings | None = None,
    ) -> None:
        self.projection = projection
        self.settings = settings or WorkerSettings()
        self.metrics = WorkerMetrics()
        self._bootstrap = bootstrap_servers
        self._database_url = database_url
        self._schema = schema
        self._topics = topics
        self._group = topics.name(projection.group)
        self._consumer: AIOKafkaConsumer | None = None
        self._started = False
        self._producer: AIOKafkaProducer | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._conn_lock = asyncio.Lock()
        """Held while ``_conn`` is in use: the rebalance listener (seeking to stored offsets) runs in
        aiokafka's coordinator task, beside :meth:`step`; two tasks' transactions on one connection
        nest and then end out of order (psycopg's ``OutOfOrderTransactionNesting``)."""
        self._attempts: dict[tuple[str, int, int], int] = {}
        self._dead_lettered: set[tuple[str, int, int, int | None]] = set()
        """Dead-lettered but not yet behind a stored offset: a redone batch must not send them twice."""

    async def start(self) -> None:
        """Connect to PostgreSQL and the broker, join the group (seeking to stored offsets)."""
        # Create the topics before subscribing: a broker that auto-creates them on a
        # consumer's metadata request would give them its own partition count.
        await ensure_topics(self._bootstrap, glassbox_topics(self._topics, [self.projection.group]))
        self._conn = await psycopg.AsyncConnection.connect(self._database_url, autocommit=True)
        self._conn_lock = asyncio.Lock()  # of this start's event loop
        use_orjson(self._conn)
        self._producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=False)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._consumer.subscribe(
            [self._topics.name(t) for t in self.projection.topics], listener=_SeekToStoredOffsets(self)
        )
        await self._consumer.start()
        self._started = True

    @property
    def started(self) -> bool:
        """Connected and subscribed (:meth:`start` has returned, :meth:`stop` not yet called)."""
        return self._started

    async def stop(self) -> None:
        """Leave the group and close connections; the last committed batch is durable already."""
        for closing in (self._consumer, self._producer):
            if closing is not None:
                await closing.stop()
        if self._conn is not None:
            await self._conn.close()
        self._consumer = self._producer = self._conn = None
        self._started = False

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set (the batch in progress is committed first)."""
        await self.start()
        try:
            while not stop.is_set():
                await self.step()
        finally:
            await self.stop()

    async def caught_up(self) -> bool:
        """Whether this member has read each partition assigned to it up to the partition's end.

        False before the group has assigned it anything. The embedded broker's end offsets can
        lag just-produced messages a little: callers wanting certainty ask several times.
        """
        consumer, _ = self._require()
        assigned = list(consumer.assignment())
        if not assigned:
            return False
        ends = await consumer.end_offsets(assigned)
        for partition in assigned:
            if await consumer.position(partition) < ends[partition]:
                return False
        return True

    async def step(self) -> int:
        """Process one fetched batch; return how many messages it covered (processed or dead-lettered)."""
        consumer, conn = self._require()
        fetched = await consumer.getmany(timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.max_records)
        messages = [m for batch in fetched.values() for m in batch]
        if not messages:
            return 0
        items = await self._prepared(messages)
        if items is None:
            return 0  # a message is waiting out its backoff: the batch is redone from stored offsets
        async with self._conn_lock, conn.transaction():
            await self.projection.write(conn, self._schema, items)
            await self._store_offsets(conn, messages)
        self._dead_lettered.clear()
        self.metrics.batches_total += 1
        self.metrics.processed_total += len(items)
        self.metrics.messages_total += len(messages)
        return len(messages)

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        """Position the consumer at the offsets stored with the rows (or the beginning)."""
        consumer, conn = self._require()
        stored = await self._stored_offsets(conn, partitions)
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    async def _prepared(self, messages: list[Any]) -> list[Any] | None:
        found: list[tuple[Any, int, Envelope]] = []  # (message, index in its pack, envelope)
        for message in messages:
            try:
                items = decode_envelopes(message.value)
            except PoisonMessage as poison:
                await self._dead_letter(message, poison)
                continue
            for index, item in enumerate(items):
                try:
                    found.append((message, index, check_envelope(item)))
                except PoisonMessage as poison:
                    await self._dead_letter(message, poison, index, item)
        conn = self._conn
        if found and conn is not None:
            async with self._conn_lock:
                skip = await self.projection.already_written(conn, self._schema, [e for _, _, e in found])
            found = [f for i, f in enumerate(found) if i not in skip]
        try:
            return self.projection.prepare([envelope for _, _, envelope in found])
        except PoisonMessage:
            pass  # find the culprit: prepare one by one
        prepared = []
        for message, index, envelope in found:
            try:
                prepared.append(self.projection.prepare_one(envelope))
            except PoisonMessage as poison:
                key = (message.topic, message.partition, message.offset, index)
                attempt = self._attempts.get(key, 0) + 1
                if poison.permanent or attempt > self.settings.max_retries:
                    self._attempts.pop(key, None)
                    await self._dead_letter(message, poison, index, envelope)
                    continue
                self._attempts[key] = attempt
                self.metrics.retries_total += 1
                log.warning("%s: %s (attempt %d of %d)", self._group, poison, attempt, self.settings.max_retries)
                await asyncio.sleep(self.settings.backoff(attempt))
                await self.seek_to_stored(list({TopicPartition(m.topic, m.partition) for m in messages}))
                return None
        return prepared

    async def _dead_letter(self, message: Any, poison: PoisonMessage, index: int | None = None, item: object = None) -> None:
        """Send a whole record (``index`` None) or one envelope of a pack to the dead-letter topic."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("the worker is not started")
        where = (message.topic, message.partition, message.offset, index)
        if where in self._dead_lettered:
            return
        source = f"{message.topic}/{message.partition}/{message.offset}" + ("" if index is None else f"#{index}")
        headers = [
            ("reason", poison.reason.encode()),
            ("error", str(poison).encode()[:1000]),
            ("source", source.encode()),
            ("consumer_group", self._group.encode()),
        ]
        value = message.value if index is None or len(decode_envelopes(message.value)) == 1 else orjson.dumps(item)
        await producer.send_and_wait(
            self._topics.name(dead_letter_topic(self.projection.group)), value, key=message.key, headers=headers
        )
        self._dead_lettered.add(where)
        self.metrics.dead_lettered_total += 1
        self.metrics.dead_letter_reasons[poison.reason] = self.metrics.dead_letter_reasons.get(poison.reason, 0) + 1
        log.warning("%s: dead-lettered %s/%d/%d: %s", self._group, message.topic, message.partition, message.offset, poison)

    async def _store_offsets(self, conn: psycopg.AsyncConnection[Any], messages: list[Any]) -> None:
        nexts: dict[tuple[str, int], int] = {}
        for m in messages:
            nexts[(m.topic, m.partition)] = max(nexts.get((m.topic, m.partition), 0), m.offset + 1)
        query = sql.SQL(
            "INSERT INTO {}.projection_tracking (consumer_group, topic, partition, next_offset, updated_at) "
            "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (consumer_group, topic, partition) "
            "DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()"
        ).format(sql.Identifier(self._schema))
        async with conn.cursor() as cur:
            await cur.executemany(query, [(self._group, t, p, n) for (t, p), n in nexts.items()])

    async def _stored_offsets(
        self, conn: psycopg.AsyncConnection[Any], partitions: list[TopicPartition]
    ) -> dict[tuple[str, int], int]:
        query = sql.SQL(
            "SELECT topic, partition, next_offset FROM {}.projection_tracking WHERE consumer_group = %s"
        ).format(sql.Identifier(self._schema))
        async with self._conn_lock, conn.transaction():
            cur = await conn.execute(query, (self._group,))
            rows = await cur.fetchall()
        wanted = {(tp.topic, tp.partition) for tp in partitions}
        return {(t, p): n for t, p, n in rows if (t, p) in wanted}

    def _require(self) -> tuple[AIOKafkaConsumer, psycopg.AsyncConnection[Any]]:
        if self._consumer is None or self._conn is None:
            raise RuntimeError("the worker is not started: call start() or run()")
        return self._consumer, self._conn
