"""The desks' eventsourcing application: where the domain meets the event store.

One ``DeskApplication`` per shard; its events go to that shard's Redis
Streams event store (``PERSISTENCE_MODULE=edge.eventstore``), with the shard
name as the store's key prefix.
"""

from __future__ import annotations

from typing import Iterator
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol

from aggregates.desk import SymbolDesk, desk_id

__all__ = ["DeskApplication", "event_store_env"]


def event_store_env(redis_url: str, store_name: str) -> dict[str, str]:
    """The eventsourcing environment for a shard's Redis Streams event store."""
    return {
        "PERSISTENCE_MODULE": "edge.eventstore",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": store_name,
        "IS_SNAPSHOTTING_ENABLED": "y",
        "TRANSCODER_TOPIC": "edge.transcoding:OrjsonTranscoder",
        "MAPPER_TOPIC": "edge.transcoding:PlainEventMapper",
    }


class DeskApplication(Application[UUID]):
    """Loads and saves symbol desks, and snapshots them from memory."""

    name = "desks"
    is_snapshotting_enabled = True

    def load_desk(self, symbol: str) -> SymbolDesk | None:
        """The desk's recorded state (latest snapshot plus later events), or None if new."""
        try:
            desk = self.repository.get(desk_id(symbol))
        except AggregateNotFoundError:
            return None
        if not isinstance(desk, SymbolDesk):
            raise TypeError(f"aggregate {desk_id(symbol)} is a {type(desk).__name__}, not a desk")
        return desk

    def replay_desk(self, symbol: str) -> SymbolDesk | None:
        """The desk rebuilt from its whole event history, ignoring snapshots."""
        events = list(self.events.get(desk_id(symbol)))
        if not events:
            return None
        desk = None
        for event in events:
            desk = event.mutate(desk)  # type: ignore[attr-defined]
        return desk

    def snapshot(self, desk: SymbolDesk) -> None:
        """Snapshot a desk whose every event is already saved.

        Taken from the in-memory desk rather than by replaying the store,
        which is what ``Application.take_snapshot`` does: the desk in memory
        is already the recorded state, and reading it back would stall the
        actor for a whole snapshot interval of events.
        """
        if desk.pending_events:
            raise ValueError("save the desk's pending events before snapshotting it")
        if self.snapshots is None:
            raise RuntimeError("snapshotting is disabled for this application")
        self.snapshots.put([desk.snapshot()])

    def recent_prices(self, symbol: str, since_ns: int, page: int = 512) -> list[tuple[int, float]]:
        """(event time, price) of the desk's decisions at or after ``since_ns``, oldest first.

        Read newest first, a page at a time, so only the window's events are read.
        """
        found: list[tuple[int, float]] = []
        lte: int | None = None
        while True:
            events = list(self.events.get(desk_id(symbol), lte=lte, desc=True, limit=page))
            for event in events:
                if isinstance(event, SymbolDesk.DecisionTaken):
                    if event.timestamp_ns < since_ns:
                        return found[::-1]
                    found.append((event.timestamp_ns, event.price))
            if len(events) < page:
                return found[::-1]
            lte = events[-1].originator_version - 1

    def events_after(self, symbol: str, version: int) -> Iterator[DomainEventProtocol[UUID]]:
        """The desk's recorded events with versions above ``version``, in order."""
        return self.events.get(desk_id(symbol), gt=version)
