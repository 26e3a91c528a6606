"""Errors the ``edge`` adapters raise on purpose."""

from __future__ import annotations

from edge.embedded_server import ServerNotFound, ServerStartError
from glassbox import GlassboxError

__all__ = ["EdgeError", "RedisServerNotFound", "RedisServerStartError"]


class EdgeError(GlassboxError):
    """Root of the errors the ``edge`` adapters raise on purpose."""


class RedisServerNotFound(EdgeError, ServerNotFound):
    """No ``redis-server`` binary, and none could be installed."""


class RedisServerStartError(EdgeError, ServerStartError):
    """``redis-server`` was found but did not answer PING in time."""
