"""The services a command that works on an existing system's data talks to.

The ones given by URL, else those of a ``glassbox up`` running from this
home, else embedded ones started on this home's data (never a second server
on a running one's data directory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from actors.system.supervisor import read_status
from edge.redis_server import redis_url_or_embedded
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
        with redis_url_or_embedded(None, settings.redis_dir) as url:
            yield url
        return
    yield str(status["redis_url"])




@contextlib.contextmanager
def system_backbone(settings: Settings) -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap servers, PostgreSQL URL) of this system, as :func:`system_redis` chooses Redis."""
    from backbone.broker import kafka_servers_or_embedded
    from projections.postgres_server import database_url_or_embedded, reachable_data_dir

    try:
        status = read_status(settings.home)
    except GlassboxError:
        status = None
    with contextlib.ExitStack() as stack:
        kafka = settings.kafka_bootstrap_servers or (status and str(status["kafka_servers"])) or \
            stack.enter_context(kafka_servers_or_embedded(None, settings.home / "broker-backtest"))
        database_url = settings.database_url or (status and str(status["database_url"])) or \
            stack.enter_context(database_url_or_embedded(None, reachable_data_dir(settings.home / "postgres")))
        yield kafka, database_url
