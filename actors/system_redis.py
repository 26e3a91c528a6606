"""Which Redis a command that works on an existing system's data talks to."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from actors.supervisor import read_status
from edge.redis_server import redis_url_or_embedded
from glassbox import GlassboxError, Settings

__all__ = ["system_redis"]


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


