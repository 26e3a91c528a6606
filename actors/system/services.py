"""The services a command that works on an existing system's data talks to.

The ones given by URL, else those of a ``glassbox up`` running from this
home, else embedded ones started on this home's data (never a second server
on a running one's data directory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from actors.system.supervisor import read_status
from edge.redis_server import EmbeddedRedis
from glassbox import GlassboxError, Settings

__all__ = ["system_backbone", "system_redis"]


@contextlib.contextmanager
def system_redis(settings: Settings) -> Iterator[str]:
    """The Redis of this system: REDIS_URL, the running system's, or the embedded one started on its data."""
    if settings.redis_url:
        yield settings.redis_url
        return
    try:
        status = read_status(settings.home)
    except GlassboxError:
        with EmbeddedRedis(settings.redis_dir) as server:
            yield server.url
        return
    yield str(status["redis_url"])




@contextlib.contextmanager
def system_backbone(settings: Settings) -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap servers, PostgreSQL URL) of this system, as :func:`system_redis` chooses Redis."""
    from backbone.broker import EmbeddedBroker
    from projections.postgres_server import EmbeddedPostgres, reachable_data_dir

    try:
        status = read_status(settings.home)
    except GlassboxError:
        status = None
    with contextlib.ExitStack() as stack:
        kafka = settings.kafka_bootstrap_servers or (status and str(status["kafka_servers"])) or \
            stack.enter_context(EmbeddedBroker(settings.home / "broker-backtest")).bootstrap_servers
        database_url = settings.database_url or (status and str(status["database_url"])) or \
            stack.enter_context(EmbeddedPostgres(reachable_data_dir(settings.home / "postgres"))).url
        yield kafka, database_url
