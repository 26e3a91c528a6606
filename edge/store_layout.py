"""The key layout of one Redis Streams event store, for the recorders and for readers in other processes.

See :mod:`edge.eventstore` for the layout itself; this module is the one
place its key names are spelled (the supervisor, the relay and ``/metrics``
ask it rather than re-spelling them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from uuid import UUID

import redis

__all__ = ["LogEntry", "StoreKeys", "log_head"]


@dataclass(frozen=True)
class StoreKeys:
    """The key names of the store called ``name`` (the layout in the module docstring).

    The one place they are spelled: the recorders, and readers of a store's
    layout in other processes (the supervisor, ``/metrics``), ask this.
    """

    name: str

    @property
    def tag(self) -> str:
        """The hash tag every key of the store carries (one Redis Cluster slot)."""
        return "{" + self.name + "}"

    @property
    def seq(self) -> str:
        """String: the last notification id, i.e. the log's head."""
        return f"{self.tag}:seq"

    @property
    def log(self) -> str:
        """Stream: the application log."""
        return f"{self.tag}:log"

    @property
    def tracking(self) -> str:
        """Hash: upstream application name -> max notification id."""
        return f"{self.tag}:tracking"

    @property
    def shard_metrics(self) -> str:
        """Hash where the shard of this store publishes its metrics (``actors.shard_metrics``; ``/metrics`` reads it)."""
        return self.beside("shard-metrics")

    def beside(self, purpose: str) -> str:
        """A key of ``purpose`` that lives beside the store, in its slot (e.g. a relay's position)."""
        return f"{self.tag}:{purpose}"

    def stream(self, family: str, originator_id: UUID | str) -> str:
        """The key of one aggregate's stream in a key family."""
        return f"{self.tag}:{family}:{originator_id}"


def log_head(client: redis.Redis, store_name: str) -> int:
    """The last log position of the store called ``store_name`` (0 while it is empty)."""
    return int(client.get(StoreKeys(store_name).seq) or 0)


class LogEntry(NamedTuple):
    """One entry of the application log, decoded but for its state (the event's encoded body)."""

    position: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes
