"""The projections a system runs: each one's consumer group and the topics it reads.

The one list of them: the worker process offers these names, the supervisor
starts one worker per group (in this order), and lag is measured per group.
A new projection is a :class:`projections.worker.Projection` subclass whose
``group`` and ``topics`` come from here.
"""

from __future__ import annotations

from types import MappingProxyType

from backbone.topics import EVENT_TOPICS

__all__ = ["PROJECTIONS", "PROJECTION_TOPICS"]

PROJECTION_TOPICS = MappingProxyType({
    "forensics": ("trading_decisions",),
    "archive": EVENT_TOPICS,
    "read-models": ("trading_decisions",),
})
"""Consumer group -> the event topics it consumes (before any prefix)."""

PROJECTIONS: tuple[str, ...] = tuple(PROJECTION_TOPICS)
"""Every projection's name, which is also its consumer group's."""
