"""A projection worker as a process: ``python -m projections.worker_main --projection forensics``.

Attaches to a running broker (``KAFKA_BOOTSTRAP_SERVERS``) and PostgreSQL
(``DATABASE_URL``), applies the schema's migrations if they are missing,
and consumes until SIGTERM or SIGINT (the batch in progress commits first).
A SIGKILL at any moment loses nothing and duplicates nothing: a batch's rows
and its offsets are one transaction. Scale a projection by starting more of
these with the same arguments: they share the consumer group's partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Sequence

from aggregates.registry import ModelRegistry
from backbone.topics import TopicSettings
from glassbox import GlassboxError, Settings, SettingsError
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.migrate import apply_migrations
from projections.read_models import ArchiveProjection, DecisionsProjection
from projections.worker import Projection, ProjectionWorker, WorkerSettings

__all__ = ["PROJECTIONS", "main"]

PROJECTIONS = ("archive", "read-models", "forensics")


def build_projection(name: str, settings: Settings) -> Projection:
    """The projection called ``name`` (one of :data:`PROJECTIONS`)."""
    if name == "archive":
        return ArchiveProjection()
    if name == "read-models":
        return DecisionsProjection()
    if name == "forensics":
        return ForensicsProjection(ExplainerCache(ModelRegistry(settings.model_dir)))
    raise SettingsError(f"unknown projection {name!r}: choose one of {', '.join(PROJECTIONS)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one projection worker; returns its exit code (0 after a clean stop, 2 on a usage error)."""
    parser = argparse.ArgumentParser(prog="python -m projections.worker_main", description=__doc__)
    parser.add_argument("--projection", required=True, choices=PROJECTIONS)
    parser.add_argument("--schema", default="glassbox", help="PostgreSQL schema of the read models")
    parser.add_argument("--topic-prefix", default="", help="prefix of the topics (isolates a run)")
    parser.add_argument("--max-records", type=int, default=WorkerSettings.max_records)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        if not settings.kafka_bootstrap_servers or not settings.database_url:
            raise SettingsError("a worker attaches to running services: set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL")
        apply_migrations(settings.database_url, args.schema)
        worker = ProjectionWorker(
            build_projection(args.projection, settings),
            settings.kafka_bootstrap_servers,
            settings.database_url,
            args.schema,
            TopicSettings.from_settings(settings, prefix=args.topic_prefix),
            WorkerSettings(max_records=args.max_records),
        )
        asyncio.run(_run(worker))
    except (GlassboxError, ValueError) as error:
        print(f"worker: {error}", file=sys.stderr)
        return 2
    return 0


async def _run(worker: ProjectionWorker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.create_task(worker.run(stop))
    last = 0
    while not task.done():
        await asyncio.wait([task], timeout=1.0)
        m = worker.metrics
        print(f"{worker.projection.group}: {m.messages_total - last:,} messages/s  total {m.messages_total:,}  "
              f"dead letters {m.dead_lettered_total:,}", flush=True)
        last = m.messages_total
    task.result()


if __name__ == "__main__":
    sys.exit(main())
