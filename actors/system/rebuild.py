"""Drop the read models and rebuild them from the event log, through the relay and the normal workers.

``glassbox replay projections``. There is no second code path: each shard
store's log is re-published by a :class:`~backbone.relay.Relay` of its own
name (position 0) into topics of their own prefix, and the same
:class:`DecisionsProjection` and :class:`ForensicsProjection` that run live
consume them. Before and after, every rebuilt table is summarised by a
checksum over its rows in key order (columns that record *when* a row was
processed, such as ``computed_at``, are left out), so "identical to the
tables built live" is a comparison, not a hope.

The event archive is not dropped: it is the immutable audit log (its
trigger refuses updates and deletes).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from aggregates.registry import ModelRegistry
from backbone.broker import run_coroutine
from backbone.relay import Relay, RelaySettings
from backbone.topics import TopicSettings
from edge.system_keys import SystemKeys
from glassbox import Settings
from projections.checksums import REBUILT_TABLES, table_checksums
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.offsets import forget_offsets
from projections.read_models import DecisionsProjection
from projections.worker import ProjectionWorker, WorkerSettings

__all__ = ["RebuildReport", "project_stores", "rebuild_projections_command", "rebuild_read_models"]


@dataclass
class RebuildReport:
    """Checksums before and after, and how much was replayed."""

    before: dict[str, tuple[int, str]]
    after: dict[str, tuple[int, str]] = field(default_factory=dict)
    events: int = 0
    seconds: float = 0.0

    @property
    def identical(self) -> bool:
        return self.before == self.after

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        """The verdict as ``glassbox replay projections`` prints it: the pace, then one line per table."""
        lines = [f"re-published and projected {self.events:,} events in {self.seconds:.1f} s "
                 f"({self.events_per_s:,.0f} events/s)"]
        for table in REBUILT_TABLES:
            (rows_before, sum_before), (rows_after, sum_after) = self.before[table], self.after[table]
            verdict = "identical" if (rows_before, sum_before) == (rows_after, sum_after) else "DIFFERENT"
            lines.append(f"  {table:<15} {rows_before:>9,} rows before, {rows_after:>9,} after: "
                         f"{verdict} (md5 {sum_after[:12]})")
        return lines


def rebuild_read_models(
    redis_url: str,
    kafka_servers: str,
    database_url: str,
    schema: str,
    stores: Sequence[str],
    registry: ModelRegistry,
    topics: TopicSettings,
    progress: Callable[[str], None] = lambda line: None,
    idle_checks: int = 3,
) -> RebuildReport:
    """Checksum, drop, re-publish every store's log, project it again, checksum; see the module docstring."""
    report = RebuildReport(before=table_checksums(database_url, schema))
    run = uuid.uuid4().hex[:8]
    rebuild_topics = TopicSettings(topics.partitions, topics.replication_factor, topics.retention_ms,
                                   prefix=f"{topics.prefix}rebuild-{run}.")
    with psycopg.connect(database_url) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(sql.Identifier(schema, t) for t in REBUILT_TABLES)))
    progress(f"dropped {', '.join(REBUILT_TABLES)}")
    started = time.perf_counter()
    report.events = project_stores(redis_url, kafka_servers, database_url, schema, stores, registry,
                                   rebuild_topics, f"rebuild-{run}", progress, idle_checks)
    report.seconds = time.perf_counter() - started
    forget_offsets(database_url, schema, rebuild_topics.prefix)  # the rebuild's offsets mean nothing later
    report.after = table_checksums(database_url, schema)
    return report


def project_stores(
    redis_url: str,
    kafka_servers: str,
    database_url: str,
    schema: str,
    stores: Sequence[str],
    registry: ModelRegistry,
    topics: TopicSettings,
    relay_name: str,
    progress: Callable[[str], None] = lambda line: None,
    idle_checks: int = 3,
) -> int:
    """Publish every store's whole log into ``topics`` and project it into ``schema``'s read models
    and forensics with the live workers; the events published.

    The relay's position (``relay_name``) is forgotten afterwards: it meant these topics only.
    """
    names = _feature_names(registry)
    events = 0
    for store in stores:
        relay = Relay(redis_url, store, kafka_servers, topics, names, RelaySettings(name=relay_name))
        events += run_coroutine(_relay_all(relay, progress))
        relay.position.forget()
    workers = [
        ProjectionWorker(DecisionsProjection(), kafka_servers, database_url, schema, topics,
                         WorkerSettings(max_records=5_000)),
        ProjectionWorker(ForensicsProjection(ExplainerCache(registry)), kafka_servers, database_url, schema,
                         topics, WorkerSettings(max_records=5_000)),
    ]
    run_coroutine(_drain_all(workers, idle_checks, progress))
    return events


async def _relay_all(relay: Relay, progress: Callable[[str], None]) -> int:
    try:
        while await relay.step() or relay.metrics.lag:
            progress(f"relay {relay.store_name}: {relay.metrics.relayed_total:,} events re-published")
    finally:
        await relay.close()
    return relay.metrics.relayed_total


async def _drain_all(workers: list[ProjectionWorker], idle_checks: int, progress: Callable[[str], None]) -> None:
    # Side by side: the consumer-group joins overlap, and the read models fill while SHAP runs.
    await asyncio.gather(*(_drain(w, idle_checks, progress) for w in workers))


async def _drain(worker: ProjectionWorker, idle_checks: int, progress: Callable[[str], None]) -> None:
    """Step ``worker`` until it has read every partition to its end ``idle_checks`` times in a row."""
    await worker.start()
    try:
        idle = 0
        while idle < idle_checks:
            handled = await worker.step()
            if handled:
                idle = 0
                progress(f"{worker.projection.group}: {worker.metrics.messages_total:,} messages projected")
            elif await worker.caught_up():
                idle += 1
    finally:
        await worker.stop()


def _feature_names(registry: ModelRegistry) -> Callable[[str], Sequence[str]]:
    from backbone.relay_main import registry_feature_names

    return registry_feature_names(registry)


def rebuild_projections_command(settings: Settings) -> int:
    """``glassbox replay projections``: the services of this system, a rebuild, the verdict (exit 0 when equal).

    The caller makes sure no system runs from ``settings.home`` (its live workers would write meanwhile).
    """
    import redis

    from backbone.broker import EmbeddedBroker
    from edge.embedded_server import given_or_embedded
    from edge.redis_server import EmbeddedRedis
    from projections.postgres_server import EmbeddedPostgres, reachable_data_dir

    with ExitStack() as stack:
        redis_url = stack.enter_context(given_or_embedded(settings.redis_url, EmbeddedRedis(settings.redis_dir)))
        client = redis.Redis.from_url(redis_url)
        try:
            stores = SystemKeys(settings.namespace).shard_stores(client)
        finally:
            client.close()
        kafka = stack.enter_context(given_or_embedded(settings.kafka_bootstrap_servers,
                                                      EmbeddedBroker(settings.home / "broker-rebuild")))
        database_url = stack.enter_context(given_or_embedded(
            settings.database_url, EmbeddedPostgres(reachable_data_dir(settings.home / "postgres"))))
        last = [0.0]

        def progress(line: str) -> None:
            now = time.monotonic()
            if now - last[0] >= 1.0:
                print(line, flush=True)
                last[0] = now

        print(f"rebuilding {', '.join(REBUILT_TABLES)} in schema {settings.schema} from {len(stores)} store(s) ...")
        report = rebuild_read_models(redis_url, kafka, database_url, settings.schema, stores,
                                     ModelRegistry(settings.model_dir),
                                     TopicSettings.from_settings(settings, prefix=settings.topic_prefix), progress)
    for line in report.lines():
        print(line)
    return 0 if report.identical else 1
