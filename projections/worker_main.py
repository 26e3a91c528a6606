"""A projection worker as a process: ``python -m projections.worker_main --projection forensics``.

Attaches to a running broker (``KAFKA_BOOTSTRAP_SERVERS``) and PostgreSQL
(``DATABASE_URL``), applies the schema's migrations if they are missing,
and consumes until SIGTERM or SIGINT (the batch in progress commits first).
A SIGKILL at any moment loses nothing and duplicates nothing: a batch's rows,
its dead letters and its offsets are one transaction. A PostgreSQL that is
down at start-up or goes away later is waited for (one line when it goes,
one when it is back); the process stays up. Scale a projection by starting more of
these with the same arguments: they share the consumer group's partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from aggregates.registry import ModelRegistry
from backbone.service import run_until_signalled
from backbone.topics import TopicSettings
from edge.gc_settling import settle_garbage_collector
from edge.logs import configure_logging
from glassbox import GlassboxError, Settings, SettingsError, redact_url
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.groups import PROJECTIONS
from projections.failures import describe, is_transient
from projections.migrate import apply_migrations
from projections.read_models import ArchiveProjection, DecisionsProjection
from projections.worker import Projection, ProjectionWorker, WorkerSettings

__all__ = ["build_projection", "main", "migrate_when_reachable"]

log = logging.getLogger(__name__)


def build_projection(name: str, settings: Settings) -> Projection:
    """The projection called ``name`` (one of :data:`PROJECTIONS`)."""
    if name == "archive":
        return ArchiveProjection()
    if name == "read-models":
        return DecisionsProjection()
    if name == "forensics":
        registry = ModelRegistry(settings.model_dir)
        explainers = ExplainerCache(registry)
        latest = registry.latest()
        if latest is not None:
            explainers.get(latest)  # built now, not while the first decisions wait
        return ForensicsProjection(explainers)
    raise SettingsError(f"unknown projection {name!r}: choose one of {', '.join(PROJECTIONS)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one projection worker; returns its exit code (0 after a clean stop, 2 on a usage error)."""
    parser = argparse.ArgumentParser(prog="python -m projections.worker_main", description=__doc__)
    parser.add_argument("--projection", required=True, choices=PROJECTIONS)
    parser.add_argument("--schema", default="glassbox", help="PostgreSQL schema of the read models")
    parser.add_argument("--topic-prefix", default="", help="prefix of the topics (isolates a run)")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="written once the worker has joined its group (for a supervisor)")
    parser.add_argument("--max-records", type=int, default=WorkerSettings.max_records)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(f"worker:{args.projection}", settings.log_level)
        if not settings.kafka_bootstrap_servers or not settings.database_url:
            raise SettingsError("a worker attaches to running services: set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL")
        migrate_when_reachable(settings.database_url, args.schema, WorkerSettings())
        worker = ProjectionWorker(
            build_projection(args.projection, settings),
            settings.kafka_bootstrap_servers,
            settings.database_url,
            args.schema,
            TopicSettings.from_settings(settings, prefix=args.topic_prefix),
            WorkerSettings(max_records=args.max_records),
        )
        settle_garbage_collector()
        asyncio.run(run_until_signalled(worker.run, _progress(worker), lambda: worker.started, args.ready_file))
    except (GlassboxError, ValueError) as error:
        print(f"worker: {error}", file=sys.stderr)
        return 2
    return 0


def migrate_when_reachable(database_url: str, schema: str, settings: WorkerSettings) -> None:
    """Apply the migrations, waiting with capped backoff while PostgreSQL cannot be reached.

    Raises:
        GlassboxError: a migration failed for another reason (the message says which).
    """
    attempt, since = 0, time.monotonic()
    while True:
        try:
            apply_migrations(database_url, schema)
        except GlassboxError as error:
            cause = _root_cause(error)
            if cause is error or not is_transient(cause):
                raise
            attempt += 1
            if attempt == 1:
                log.warning("PostgreSQL unreachable at %s: %s; retrying every %.1f s at most",
                            redact_url(database_url), describe(cause), settings.reconnect_cap)
            time.sleep(settings.reconnect_delay(attempt))
            continue
        if attempt:
            log.warning("PostgreSQL is back at %s after %.1f s", redact_url(database_url), time.monotonic() - since)
        return


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _progress(worker: ProjectionWorker) -> Callable[[float], str]:
    last = [0]

    def line(seconds: float) -> str:
        m = worker.metrics
        rate = (m.messages_total - last[0]) / seconds if seconds > 0 else 0.0
        last[0] = m.messages_total
        return (f"{worker.projection.group}: {rate:,.0f} messages/s  total {m.messages_total:,}  "
                f"dead letters {m.dead_lettered_total:,}")

    return line


if __name__ == "__main__":
    sys.exit(main())
