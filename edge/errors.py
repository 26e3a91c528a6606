"""Errors the ``edge`` adapters raise on purpose."""

from __future__ import annotations

from edge.embedded_server import ServerNotFound, ServerStartError
from glassbox import GlassboxError

__all__ = ["EdgeError", "RedisNotReady", "RedisServerNotFound", "RedisServerStartError"]


class EdgeError(GlassboxError):
    """Root of the errors the ``edge`` adapters raise on purpose."""


class RedisServerNotFound(EdgeError, ServerNotFound):
    """No ``redis-server`` binary, and none could be installed."""


class RedisServerStartError(EdgeError, ServerStartError):
    """``redis-server`` was found but exited, or did not answer PING in time (loading included)."""


class RedisNotReady(EdgeError):
    """A Redis given by URL does not answer, or is still loading its data set past the start-up timeout."""
