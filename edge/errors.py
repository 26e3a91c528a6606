"""Errors the ``edge`` adapters raise on purpose."""

from __future__ import annotations

from glassbox import GlassboxError

__all__ = ["EdgeError"]


class EdgeError(GlassboxError):
    """Root of the errors the ``edge`` adapters raise on purpose."""
