"""Projection workers: Kafka consumer groups whose every batch lands in ONE PostgreSQL transaction.

A worker reads a batch of envelopes, lets its :class:`Projection` turn them
into rows, and writes those rows together with its tracking rows (consumer
group, topic, partition, next offset) in one transaction. On partition
assignment it seeks to the stored offsets, so Kafka's own committed offsets
are never used: a crash at any moment redoes at most the uncommitted batch,
and the rows of a batch either all exist with its offsets or none do. Rows
are keyed by event or decision id, so an event the relay sent twice is
written once (exactly-once effect).

No record can stop the group. Every error raised while decoding, checking,
preparing or writing a record's rows is classified (:mod:`projections.failures`):

- about the record (undecodable, an unknown schema, a body that fails
  :meth:`Projection.validate`, a ``KeyError`` in :meth:`Projection.prepare`,
  a value PostgreSQL refuses): that record is dead-lettered with the error as
  its reason and the rest of the batch is written. A refused write is
  narrowed down by bisection: the batch is written in savepoints, a failing
  half is split again until the single bad record is found. If every record
  of a batch of several fails alone, it is the write, not the records: the
  batch is retried like a transient failure (:class:`projections.failures.WholeBatchRefused`).
- transient (a lost connection, a deadlock, a serialisation failure, an
  administrator's shutdown, a broker timeout, a table or column the schema
  does not have yet, an ``AttributeError`` of the code): nothing is dead-lettered; the
  batch is redone from the stored offsets after a capped backoff. A lost
  PostgreSQL is logged once ("PostgreSQL unreachable at <url> ...; retrying"),
  reconnected with capped backoff and logged once when back; the process stays up.

An unknown model version is retried a bounded number of times with
exponential backoff first (the registry may still be receiving it).
Checking, preparing and the bisecting write of a batch, with their retry
counts, are :class:`projections.batch_writes.BatchWriter`'s; what a record's
envelopes are and how they are checked is :mod:`projections.envelopes`'.

Dead letters are written exactly once: they are rows of ``dead_letters``,
committed with the batch's offsets, and ``dlq.<group>`` is published from
that table as an outbox that reads the topic's tail back before re-sending
after a crash (:mod:`projections.dead_letters` says how).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import psycopg
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from psycopg import sql

from backbone.topics import (
    TopicSettings,
    dead_letter_spec,
    ensure_topics,
    glassbox_topics,
)
from edge.batching import StepSpacing
from glassbox import redact_url
from projections.batch_writes import BatchWriter
from projections.dead_letters import DeadLetter, DeadLetterOutbox
from projections.envelopes import Envelope
from projections.failures import describe, is_transient
from projections.pg_json import use_orjson

__all__ = ["Projection", "ProjectionWorker", "WorkerMetrics", "WorkerSettings"]

log = logging.getLogger(__name__)

_LZ4_IF_AVAILABLE = (
    "SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings"
    " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)
"""Compress this session's large values (envelopes, SHAP maps) with lz4 where the server has it.

A column without its own compression method is compressed with the setting of the session
that writes it; pglz was ~30 % of PostgreSQL's CPU for an archived 1.9 KB envelope (measured:
~86 µs a row with pglz, ~56 µs with lz4). Readers decompress either; a server built without lz4
keeps pglz (the statement then sets nothing).
"""


class Projection(ABC):
    """Turns envelopes into rows. One abstract method (:meth:`write`) and hooks around it.

    :meth:`validate` checks one envelope's fields cheaply and raises
    :class:`projections.failures.PoisonMessage` for one this projection cannot write;
    :meth:`prepare` runs outside the transaction (CPU work such as SHAP) and
    gives one item per envelope (None: nothing to write); :meth:`write`
    writes prepared items in the worker's transaction and must be idempotent
    (the same event written twice leaves one row). An error any of them
    raises about a record dead-letters that record (see the module docstring).
    """

    group: str
    """The consumer group; also names the dead-letter topic."""
    topics: tuple[str, ...]
    """Topics it reads, before any prefix."""

    def validate(self, envelope: Envelope) -> None:
        """Raise :class:`PoisonMessage` if ``envelope`` cannot become rows (default: every one can)."""

    async def already_written(
        self, conn: psycopg.AsyncConnection[Any], schema: str, envelopes: Sequence[Envelope]
    ) -> set[int]:
        """Indexes of ``envelopes`` whose rows exist already, to skip before :meth:`prepare`.

        Worth it where preparing is dear and redelivery is common (SHAP, after a re-publish);
        the default skips nothing, and :meth:`write` stays idempotent either way.
        """
        return set()

    def prepare(self, envelopes: Sequence[Envelope]) -> list[Any]:
        """One item per envelope, in order, None where there is nothing to write (default: the envelopes)."""
        return list(envelopes)

    def prepare_one(self, envelope: Envelope) -> Any:
        """Prepare a single envelope; used to find which message of a failed batch is the poison."""
        return self.prepare([envelope])[0]

    @abstractmethod
    async def write(self, conn: psycopg.AsyncConnection[Any], schema: str, items: Sequence[Any]) -> None:
        """Write ``items`` (from :meth:`prepare`, never None) inside the open transaction of ``conn``."""


@dataclass(frozen=True)
class WorkerSettings:
    """Batching, retries and backoff of a projection worker."""

    max_records: int = 2_000
    poll_timeout_ms: int = 200
    fetch_max_wait_ms: int = 500
    """How long the broker holds a fetch that finds nothing new. At least 10: the embedded broker
    stalled for good with 1 ms. It looks at a waiting fetch again at halving intervals, and each
    look costs it what the partition holds (``perf.broker_fetch``): 500 instead of 50 (with
    ``fetch_min_bytes`` 1) took the whole system at 100 ticks/s from 1.21 to 0.52 cores, the broker
    from 0.42 to 0.07 (``perf.pipeline``, one run each; docs/design.md, "What this machine allows")."""
    fetch_min_bytes: int = 1
    """What the broker gathers before answering a fetch: 1 answers as soon as there is a record, so
    the long ``fetch_max_wait_ms`` never delays records that are there. It does not make fetches
    chatty: the consumer fetches a partition again only once the worker took what it had (aiokafka
    skips partitions with buffered records), and the worker steps every ``step_interval_ms``."""
    step_interval_ms: int = 50
    """Least time from one step's start to the next's unless a step took ``max_records``
    (edge.batching): records gather in the consumer's fetch buffer meanwhile, so a batch's
    fixed cost (transaction, offsets, statements) is paid per interval, not per few records.
    While a backlog drains a step rarely takes ``max_records`` messages (packs; one fetch per
    partition), but such a step takes longer than the interval, so it is not slowed either."""
    max_retries: int = 3
    backoff_base: float = 0.05
    backoff_cap: float = 2.0
    reconnect_base: float = 0.5
    """First wait before reconnecting to a PostgreSQL that went away; doubled up to ``reconnect_cap``."""
    reconnect_cap: float = 5.0
    synchronous_commit: bool = False
    """Whether a batch's COMMIT waits for its WAL to reach the disk. Off by default: exactly-once
    needs the rows and their offsets in one transaction, not durability: a PostgreSQL crash that
    loses the last commits loses their offsets with them, and the worker reads those records again
    (tests/projections/test_postgres_crash.py). A batch that records dead letters commits
    synchronously all the same: the outbox publishes them to Kafka after the commit, and a record
    sent for a row that a crash then lost would be a side effect outside the transaction."""

    def __post_init__(self) -> None:
        if self.reconnect_base <= 0 or self.reconnect_cap < self.reconnect_base:
            raise ValueError(f"worker settings out of range: {self}")
        if self.fetch_min_bytes < 1:
            raise ValueError(f"fetch_min_bytes must be at least 1, not {self.fetch_min_bytes!r}")
        if self.fetch_max_wait_ms < 10:
            raise ValueError("fetch_max_wait_ms must be at least 10 (the embedded broker stalls below that)")
        if self.max_records < 1 or self.max_retries < 0 or self.backoff_base <= 0 or self.step_interval_ms < 0:
            raise ValueError(f"worker settings out of range: {self}")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1, 2, ...)."""
        return min(self.backoff_cap, self.backoff_base * 2 ** (min(attempt, 60) - 1))

    def reconnect_delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect ``attempt`` (1, 2, ...) to PostgreSQL."""
        return min(self.reconnect_cap, self.reconnect_base * 2 ** (min(attempt, 60) - 1))


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
        await self._worker.on_assigned(list(assigned))



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
        self._outbox = DeadLetterOutbox(
            schema, self._group, dead_letter_spec(topics, projection.group), bootstrap_servers,
            retry_after=self.settings.backoff_cap)
        self._batches = BatchWriter(projection, schema, self._group, self.settings, self.metrics)
        self._consumer: AIOKafkaConsumer | None = None
        self._started = False
        self._producer: AIOKafkaProducer | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._conn_lock = asyncio.Lock()
        """Held while ``_conn`` is in use: the rebalance listener (seeking to stored offsets) runs in
        aiokafka's coordinator task, beside :meth:`step`; two tasks' transactions on one connection
        nest and then end out of order (psycopg's ``OutOfOrderTransactionNesting``)."""
        self._reseek = False
        """The consumer's positions may be past what is stored: seek to the stored offsets before fetching."""
        self._transient_failures = 0
        self._postgres_down_since: float | None = None
        self._reconnect_attempts = 0
        self._next_reconnect = 0.0

    async def start(self) -> None:
        """Join the group and connect to PostgreSQL (a PostgreSQL that is down is waited for in :meth:`step`)."""
        # Create the topics before subscribing: a broker that auto-creates them on a
        # consumer's metadata request would give them its own partition count.
        await ensure_topics(self._bootstrap, glassbox_topics(self._topics, [self.projection.group]))
        self._conn_lock = asyncio.Lock()  # of this start's event loop
        await self._connect()
        self._producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=False)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(**self.consumer_options())
        self._consumer.subscribe(
            [self._topics.name(t) for t in self.projection.topics], listener=_SeekToStoredOffsets(self)
        )
        await self._consumer.start()
        self._started = True

    def consumer_options(self) -> dict[str, Any]:
        """The keyword arguments of this worker's ``AIOKafkaConsumer`` (offsets are ours: no auto-commit)."""
        return {
            "bootstrap_servers": self._bootstrap,
            "group_id": self._group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "fetch_max_wait_ms": self.settings.fetch_max_wait_ms,
            "fetch_min_bytes": self.settings.fetch_min_bytes,
            "max_partition_fetch_bytes": 4 * 1024 * 1024,
        }

    @property
    def started(self) -> bool:
        """Subscribed (:meth:`start` has returned, :meth:`stop` not yet called)."""
        return self._started

    async def stop(self) -> None:
        """Leave the group and close connections; the last committed batch is durable already."""
        for closing in (self._consumer, self._producer):
            if closing is not None:
                await closing.stop()
        await self._outbox.close()
        if self._conn is not None:
            await self._conn.close()
        self._consumer = self._producer = self._conn = None
        self._started = False

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set (the batch in progress is committed first)."""
        await self.start()
        spacing = StepSpacing(self.settings.step_interval_ms / 1000)
        try:
            while not stop.is_set():
                spacing.began()
                covered = await self.step()
                await spacing.after_step(full=covered >= self.settings.max_records)
        finally:
            await self.stop()

    async def caught_up(self) -> bool:
        """Whether this member has read each partition assigned to it up to the partition's end.

        False before the group has assigned it anything. The embedded broker's end offsets can
        lag just-produced messages a little: callers wanting certainty ask several times.
        """
        consumer = self._require()
        assigned = list(consumer.assignment())
        if not assigned or self._reseek or self._conn is None:
            return False
        ends = await consumer.end_offsets(assigned)
        for partition in assigned:
            if await consumer.position(partition) < ends[partition]:
                return False
        return True

    async def step(self) -> int:
        """Process one fetched batch; return how many messages it covered (processed or dead-lettered).

        Never raises for a record or a transient failure: a bad record is dead-lettered, a
        transient failure is logged and the batch redone from the stored offsets after a backoff.
        """
        consumer = self._require()
        if not await self._ready():
            return 0
        fetched = await consumer.getmany(timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.max_records)
        messages = [m for batch in fetched.values() for m in batch]
        if self._reseek:
            return 0  # a rebalance could not seek (PostgreSQL went away): these may be from the wrong offsets
        try:
            covered = await self._process(messages) if messages else 0
            await self._publish_dead_letters()
        except Exception as error:  # noqa: BLE001 - classified: records were dealt with in _process
            await self._on_failure(error, messages)
            return 0
        self._transient_failures = 0
        return covered

    async def on_assigned(self, partitions: list[TopicPartition]) -> None:
        """Seek newly assigned partitions to their stored offsets, or seek later if PostgreSQL is away."""
        try:
            await self.seek_to_stored(partitions)
        except Exception as error:  # noqa: BLE001 - aiokafka's coordinator must not see it
            log.debug("%s: seeking after a rebalance failed (%s); seeking before the next fetch", self._group, error)
            self._reseek = True

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        """Position the consumer at the offsets stored with the rows (or the beginning)."""
        consumer, conn = self._require(), self._conn
        if conn is None:
            raise psycopg.OperationalError("not connected to PostgreSQL")
        stored = await self._stored_offsets(conn, partitions)
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    # -- PostgreSQL comes and goes -------------------------------------------------

    async def _connect(self) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(self._database_url, autocommit=True)
        except psycopg.OperationalError as error:
            self._postgres_lost(error)
            return False
        use_orjson(conn)
        try:
            await conn.execute(_LZ4_IF_AVAILABLE)
            if not self.settings.synchronous_commit:
                await conn.execute("SET synchronous_commit = off")  # see WorkerSettings.synchronous_commit
        except psycopg.OperationalError as error:
            conn.pgconn.finish()
            self._postgres_lost(error)
            return False
        self._conn = conn
        if self._postgres_down_since is not None:
            log.warning("%s: PostgreSQL is back at %s after %.1f s; resuming from the stored offsets",
                        self._group, redact_url(self._database_url), time.monotonic() - self._postgres_down_since)
        self._postgres_down_since = None
        self._reconnect_attempts = 0
        self._reseek = True
        return True

    def _postgres_lost(self, error: BaseException) -> None:
        """Forget the connection; say so once per outage; schedule the next reconnect."""
        if self._postgres_down_since is None:
            self._postgres_down_since = time.monotonic()
            log.warning("%s: PostgreSQL unreachable at %s: %s; retrying every %.1f s at most",
                        self._group, redact_url(self._database_url), describe(error), self.settings.reconnect_cap)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()  # no goodbye round trip to a server that may be gone
        self._reconnect_attempts += 1
        self._next_reconnect = time.monotonic() + self.settings.reconnect_delay(self._reconnect_attempts)
        self._reseek = True

    async def _ready(self) -> bool:
        """Connected to PostgreSQL and positioned at the stored offsets; False after waiting a little."""
        if self._conn is None or self._conn.closed:
            wait = self._next_reconnect - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, self.settings.poll_timeout_ms / 1000))
                return False
            if not await self._connect():
                return False
        if self._reseek:
            consumer = self._require()
            try:
                await self.seek_to_stored(list(consumer.assignment()))
            except Exception as error:  # noqa: BLE001 - classified
                await self._on_failure(error, [])
                return False
            self._reseek = False
        return True

    async def _on_failure(self, error: BaseException, messages: list[Any]) -> None:
        """A failure not about one record: log one line, back off, redo from the stored offsets."""
        self.metrics.retries_total += 1
        self._reseek = True
        conn = self._conn
        if isinstance(error, psycopg.OperationalError) and (conn is None or conn.closed or conn.broken):
            self._postgres_lost(error)
            return
        self._transient_failures += 1
        delay = self.settings.backoff(self._transient_failures)
        kind = "transient error" if is_transient(error) else "unexpected error"
        log.warning("%s: %s at %s, retrying in %.2f s (attempt %d): %s", self._group, kind, _span(messages),
                    delay, self._transient_failures, describe(error),
                    exc_info=None if is_transient(error) else error)
        await asyncio.sleep(delay)

    # -- one batch ----------------------------------------------------------------------

    async def _process(self, messages: list[Any]) -> int:
        letters: list[DeadLetter] = []
        found = self._batches.checked(messages, letters)
        conn = self._connection()
        if found:
            async with self._conn_lock:
                skip = await self.projection.already_written(conn, self._schema, [o.envelope for o in found])
            found = [o for i, o in enumerate(found) if i not in skip]
        prepared = await self._batches.prepared(found, letters)
        if prepared is None:
            self._reseek = True
            return 0  # a message waited out its backoff: the batch is redone from stored offsets
        async with self._conn_lock, conn.transaction():
            await self._batches.write_bisecting(conn, prepared, letters)
            new = await self._outbox.record(conn, letters)
            if new and not self.settings.synchronous_commit:
                await conn.execute("SET LOCAL synchronous_commit = on")  # see WorkerSettings.synchronous_commit
            await self._store_offsets(conn, messages)
        self._batches.committed(messages)
        self._outbox.committed(new)
        for letter in new:
            self.metrics.dead_lettered_total += 1
            self.metrics.dead_letter_reasons[letter.reason] = self.metrics.dead_letter_reasons.get(letter.reason, 0) + 1
            log.warning("%s: dead-lettered %s (%s): %s", self._group, letter.source, letter.reason, letter.error)
        self.metrics.batches_total += 1
        self.metrics.processed_total += len(prepared)
        self.metrics.messages_total += len(messages)
        return len(messages)

    async def _publish_dead_letters(self) -> None:
        """Publish the outbox to ``dlq.<group>`` when it is due; a broker problem leaves it for a later step."""
        producer = self._producer
        if producer is None or not self._outbox.due():
            return
        async with self._conn_lock:
            await self._outbox.publish_when_reachable(self._connection(), producer)

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

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the worker is not started: call start() or run()")
        return self._consumer

    def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None:
            raise psycopg.OperationalError("not connected to PostgreSQL")
        return self._conn


def _span(messages: list[Any]) -> str:
    """``topic/partition/first-last`` of each partition in ``messages``, for a log line."""
    ranges: dict[tuple[str, int], list[int]] = {}
    for m in messages:
        ranges.setdefault((m.topic, m.partition), []).append(m.offset)
    if not ranges:
        return "the stored offsets"
    return ", ".join(f"{t}/{p}/{min(o)}-{max(o)}" for (t, p), o in sorted(ranges.items()))
