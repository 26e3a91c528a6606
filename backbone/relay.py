"""The relay: committed events from the event store's application log to Kafka, in order.

Each step reads the next batch of the log after the relay's stored position,
produces every event (acks=all, key = symbol, headers: event type, log
position, schema version), waits until the broker acknowledged all of them,
and only then stores the new position. A crash between producing and storing
re-sends that batch: consumers drop the duplicates by event id. Nothing is
ever skipped.

The broker being away only grows the relay's lag: a circuit breaker stops
the relay from hammering it, and the hot path never waits on any of this.
The embedded broker keeps no data across its own restart, so the position
can be set back (:meth:`RelayPosition.set`) to re-publish from any point.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import redis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from backbone.circuit import BreakerSettings, CircuitBreaker, CircuitState
from backbone.envelope import EventRecord, RecordBuilder
from backbone.errors import TopicError
from backbone.topics import TopicSettings, ensure_topics, glassbox_topics
from edge.batching import StepSpacing
from edge.eventstore import RedisApplicationRecorder, RedisDatastore, RedisStoreSettings
from edge.store_layout import StoreKeys

__all__ = ["Relay", "RelayKeys", "RelayMetrics", "RelayPosition", "RelaySettings"]

log = logging.getLogger(__name__)

_BROKER_TROUBLE = (KafkaError, TopicError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class RelaySettings:
    """How the relay reads, batches and backs off."""

    name: str = "relay"
    """Names the stored position: two relays of one store with different names are independent."""
    batch_size: int = 1_000
    """Most log entries read, produced and acknowledged per step. Redis answers one read at a
    time, and the hot path's commands wait behind it: 1,000 events (~1.5 MB) keep that wait
    short while the relay catches up, at 95 % of the throughput of 5,000 (38k vs 40k events/s)."""
    block_ms: int = 100
    """How long a read waits for new events when the relay has caught up."""
    step_interval_ms: int = 100
    """Least time from one step's start to the next's unless a step took a whole batch
    (edge.batching): a step's fixed cost (position, read, produce round trips, and a produce
    request per partition at the broker) is then paid once per interval, not once per few
    events, when the relay keeps up. 100 rather than 20: the relay at 100 ticks/s cost 0.05
    cores instead of 0.14 (``perf.pipeline``, with the workers' fetch settings of the same run),
    for at most a tenth of a second more forensics lag, well inside its one-second budget."""
    linger_ms: int = 5
    max_batch_bytes: int = 262_144
    request_timeout_ms: int = 2_000
    """How long one produce may wait for the broker before the step counts as failed."""
    compression: str | None = None
    """Kafka record-batch compression (e.g. "lz4", which needs cramjam). Off: against the embedded
    broker on two cores lz4 made the relay slower (39 µs an event waiting on produce vs 22), the
    CPU it costs counts more here than the bytes it saves."""
    pack_max_events: int = 100
    """Most envelopes of one symbol per Kafka record (1 = one record per event)."""
    pack_max_bytes: int = 131_072
    breaker: BreakerSettings = field(default_factory=BreakerSettings)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.block_ms < 0 or self.request_timeout_ms < 1 or self.step_interval_ms < 0:
            raise ValueError(f"relay settings out of range: {self}")


@dataclass(frozen=True)
class _Batch:
    """One read of the log, ready to produce."""

    last_position: int
    """Log position of the batch's last event (0 when empty)."""
    events: int
    records: list[EventRecord]


@dataclass(frozen=True)
class RelayKeys:
    """Where the relay ``relay_name`` of a store keeps its position and metrics: beside the store."""

    store_name: str
    relay_name: str = "relay"

    @property
    def position(self) -> str:
        """String: the last log position handed to the broker."""
        return StoreKeys(self.store_name).beside(f"relay:{self.relay_name}")

    @property
    def metrics(self) -> str:
        """Hash: the relay's published :class:`RelayMetrics`."""
        return f"{self.position}:metrics"


class RelayPosition:
    """The last log position a relay has handed to the broker, kept beside the store it reads."""

    def __init__(self, client: redis.Redis, store_name: str, relay_name: str) -> None:
        self._client = client
        self.keys = RelayKeys(store_name, relay_name)
        self.key = self.keys.position

    def get(self) -> int:
        """The last relayed position (0 before the first event)."""
        value = self._client.get(self.key)
        return int(value) if value else 0

    @property
    def metrics_key(self) -> str:
        """Hash where the relay publishes its metrics for ``/metrics`` (another process reads it)."""
        return self.keys.metrics

    def publish(self, metrics: RelayMetrics) -> None:
        """Publish ``metrics`` for other processes (the API's ``/metrics``)."""
        self._client.hset(self.metrics_key, mapping={
            "relayed_total": metrics.relayed_total, "position": metrics.position, "head": metrics.head,
            "lag": metrics.lag, "failed_steps": metrics.failed_steps, "circuit_state": metrics.circuit_state,
            "circuit_opened_total": metrics.circuit_opened_total,
            "consecutive_failures": metrics.consecutive_failures,
        })

    def forget(self) -> None:
        """Delete the stored position and metrics (a relay that ran once, e.g. a rebuild's)."""
        self._client.delete(self.key, self.metrics_key)

    def set(self, position: int) -> None:
        """Store ``position``: the next step relays from ``position + 1``. Setting it back re-publishes."""
        if position < 0:
            raise ValueError(f"a relay position is never negative, not {position}")
        self._client.set(self.key, position)


@dataclass
class RelayMetrics:
    """What ``/metrics`` exports about a relay."""

    relayed_total: int = 0
    position: int = 0
    head: int = 0
    failed_steps: int = 0
    circuit_state: str = CircuitState.CLOSED
    circuit_opened_total: int = 0
    consecutive_failures: int = 0
    """Sends failed since the last one that succeeded."""

    @property
    def lag(self) -> int:
        """Committed events not yet acknowledged by the broker."""
        return max(self.head - self.position, 0)


class Relay:
    """Relays one event store's log to the Kafka topics of ``topics``.

    Use :meth:`step` for one batch or :meth:`run` until an event is set.
    ``feature_names(model_version)`` names decision feature vectors in the
    envelope (see :class:`backbone.envelope.RecordBuilder`: stored states are
    forwarded as they were committed, never decoded and encoded again).
    """

    def __init__(
        self,
        redis_url: str,
        store_name: str,
        bootstrap_servers: str,
        topics: TopicSettings,
        feature_names: Callable[[str], Sequence[str]],
        settings: RelaySettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or RelaySettings()
        self.store_name = store_name
        self._topics = topics
        self._bootstrap = bootstrap_servers
        self._datastore = RedisDatastore(RedisStoreSettings(url=redis_url, key_prefix=store_name))
        self._recorder = RedisApplicationRecorder(self._datastore)
        self._builder = RecordBuilder(store_name, feature_names, self.settings.pack_max_events,
                                      self.settings.pack_max_bytes)
        self._client = redis.Redis.from_url(redis_url)
        self.position = RelayPosition(self._client, store_name, self.settings.name)
        self.breaker = CircuitBreaker(self.settings.breaker, clock)
        self.metrics = RelayMetrics()
        self.steps = 0
        """Steps begun: a supervisor counts the relay as up after the first."""
        self._producer: AIOKafkaProducer | None = None
        self._prefetch: tuple[int, asyncio.Task[_Batch]] | None = None
        """(position it reads after, the read) started while the previous batch was being acknowledged."""

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, then flush what was read and close the producer."""
        spacing = StepSpacing(self.settings.step_interval_ms / 1000)
        try:
            while not stop.is_set():
                spacing.began()
                relayed = await self.step()
                await spacing.after_step(full=relayed >= self.settings.batch_size)
        finally:
            await self.close()

    async def step(self) -> int:
        """Relay one batch; return how many events the broker acknowledged (0 if none or failed)."""
        self.steps += 1
        if not self.breaker.allow():
            await asyncio.sleep(min(self.breaker.seconds_until_trial(), self.settings.block_ms / 1000 or 0.05))
            self._export_breaker()
            return 0
        after = await asyncio.to_thread(self.position.get)
        batch = await self._batch_after(after)
        self.metrics.position = after
        self.metrics.head = max(self.metrics.head, batch.last_position or after)
        if not batch.events:
            self._export_breaker()
            return 0
        if batch.events >= self.settings.batch_size:
            # A backlog: read (and envelope) the next batch while the broker acknowledges this one.
            # Not when keeping up: that read would come back with the few events of a moment
            # later, where the next step, after its interval, takes all that gathered.
            self._prefetch = (batch.last_position,
                              asyncio.create_task(asyncio.to_thread(self._read, batch.last_position)))
        try:
            await self._produce(batch.records)
        except _BROKER_TROUBLE as error:
            await self._drop_prefetch()
            self.breaker.record_failure()
            self.metrics.failed_steps += 1
            log.warning("relay %s: producing %d events failed (%r); circuit %s",
                        self.settings.name, batch.events, error, self.breaker.state)
            await self._drop_producer()
            self._export_breaker()
            return 0
        self.breaker.record_success()
        await asyncio.to_thread(self.position.set, batch.last_position)
        self.metrics.position = batch.last_position
        self.metrics.relayed_total += batch.events
        self._export_breaker()
        return batch.events

    async def close(self) -> None:
        """Close the producer and the Redis connections."""
        await self._drop_prefetch()
        await self._drop_producer()
        self._client.close()
        self._datastore.close()

    async def _batch_after(self, after: int) -> _Batch:
        if self._prefetch is not None and self._prefetch[0] == after:
            task = self._prefetch[1]
            self._prefetch = None
            return await task
        await self._drop_prefetch()  # the position moved under us (a re-publish): read afresh
        return await asyncio.to_thread(self._read, after)

    async def _drop_prefetch(self) -> None:
        if self._prefetch is not None:
            task = self._prefetch[1]
            self._prefetch = None
            try:
                await task
            except Exception:  # noqa: BLE001 - the batch is read again from the stored position
                log.debug("relay %s: a read-ahead failed; reading again", self.settings.name)

    def _read(self, after: int) -> _Batch:
        # Runs in a worker thread: enveloping overlaps the broker's acknowledgement.
        head = self._recorder.max_notification_id() or 0
        self.metrics.head = head
        flat = self._recorder.read_log_flat(after, self.settings.batch_size, self.settings.block_ms)
        if not flat:
            return _Batch(0, 0, [])
        return _Batch(int(flat[-5][:-2]), len(flat) // 5, self._builder.build(flat))

    async def _produce(self, records: list[EventRecord]) -> None:
        timeout = self.settings.request_timeout_ms / 1000
        producer = await asyncio.wait_for(self._started_producer(), timeout)
        futures = [
            await producer.send(
                self._topics.name(record.topic), record.value, key=record.key, headers=list(record.headers)
            )
            for record in records
        ]
        await asyncio.wait_for(asyncio.gather(*futures), timeout)

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        # A broker that restarted lost its topics (the embedded one keeps nothing): create them first.
        await ensure_topics(self._bootstrap, glassbox_topics(self._topics), self.settings.request_timeout_ms / 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=False,  # the embedded broker refuses it; consumers dedupe by event id
            linger_ms=self.settings.linger_ms,
            max_batch_size=self.settings.max_batch_bytes,
            compression_type=self.settings.compression,
            request_timeout_ms=self.settings.request_timeout_ms,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        return producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self.settings.request_timeout_ms / 1000)
            except _BROKER_TROUBLE:
                log.warning("relay %s: the producer did not stop cleanly", self.settings.name)

    def _export_breaker(self) -> None:  # and the rest of the metrics
        self.metrics.circuit_state = self.breaker.state
        self.metrics.circuit_opened_total = self.breaker.opened_count
        self.metrics.consecutive_failures = self.breaker.consecutive_failures
        try:
            self.position.publish(self.metrics)
        except redis.RedisError:
            log.warning("relay %s: could not publish its metrics", self.settings.name)
