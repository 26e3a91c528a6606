"""Rebuild every desk from its events alone, and check the result against the recorded state.

One pass over a shard's application log, in order, in pages: each stored
event is turned back into its domain event by the application's own mapper
(the transcoder and topics the live path wrote it with) and applied with the
aggregate's own ``mutate``. Snapshots are ignored; that is the point: the
state rebuilt from events alone must equal the state the desks hold (the
latest snapshot plus the events after it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from actors.application import DeskApplication
from aggregates.desk import SymbolDesk
from edge.eventstore import RedisApplicationRecorder

__all__ = ["DeskReplay", "ReplayReport", "desk_state"]

PAGE = 10_000


@dataclass
class ReplayReport:
    """What a replay did and found."""

    events: int = 0
    desks: int = 0
    seconds: float = 0.0
    mismatches: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def desk_state(desk: SymbolDesk) -> dict[str, Any]:
    """Everything a desk holds, for comparison (pending events are not state)."""
    return {k: v for k, v in vars(desk).items() if k != "_pending_events"}


class DeskReplay:
    """Replays one shard's event store; see the module docstring."""

    def __init__(self, app: DeskApplication) -> None:
        recorder = app.recorder
        if not isinstance(recorder, RedisApplicationRecorder):
            raise TypeError(f"replay reads a Redis Streams application log, not {type(recorder).__name__}")
        self._app = app
        self._recorder = recorder

    def rebuild(self, progress: Callable[[int], None] = lambda events: None) -> tuple[dict[UUID, Any], int]:
        """Every aggregate of the store rebuilt from the whole log; (aggregates by id, events read)."""
        mapper = self._app.mapper
        aggregates: dict[UUID, Any] = {}
        ids: dict[str, UUID] = {}  # a store has few aggregates: parse each id once
        events = 0
        after = 0
        while True:
            entries = self._recorder.read_log_entries(after, PAGE, block_ms=None)
            if not entries:
                break
            for entry in entries:
                raw_id = entry.originator_id
                originator = ids.get(raw_id) or ids.setdefault(raw_id, UUID(raw_id))
                event = mapper.to_domain_event(StoredEvent(
                    originator_id=originator, originator_version=entry.originator_version,
                    topic=entry.topic, state=entry.state,
                ))
                aggregates[originator] = event.mutate(aggregates.get(originator))
            events += len(entries)
            after = entries[-1].position
            progress(events)
        return aggregates, events

    def verify(self, progress: Callable[[int], None] = lambda events: None) -> ReplayReport:
        """Rebuild every desk and compare it with the desk the store holds (snapshot + later events)."""
        started = time.perf_counter()
        rebuilt, events = self.rebuild(progress)
        report = ReplayReport(events=events, seconds=time.perf_counter() - started)
        for aggregate_id, aggregate in rebuilt.items():
            if not isinstance(aggregate, SymbolDesk):
                continue
            report.desks += 1
            recorded = self._app.load_desk(aggregate.symbol)
            if recorded is None:
                report.mismatches.append(f"{aggregate.symbol}: rebuilt from events but not found in the store")
                continue
            ours, theirs = desk_state(aggregate), desk_state(recorded)
            differing = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            if differing:
                report.mismatches.append(f"{aggregate.symbol} ({aggregate_id}): differs in {', '.join(differing)}")
        return report
