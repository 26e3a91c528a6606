"""Replaying a tick source at a chosen rate, optionally resumable."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Iterator

import redis

from edge.tick_stream import PublishReport, TickPublisher
from edge.ticks import Tick

__all__ = ["PacedFeed"]


class PacedFeed:
    """Publishes ticks from an iterator at ``rate`` ticks/s, a small chunk at a time.

    With ``offset_key`` the number of ticks already published is stored in
    Redis in the same transaction as each chunk, and a new feed over the same
    source skips that many first: a restarted ``glassbox up`` continues the
    bundled replay instead of sending history twice.
    """

    def __init__(
        self,
        publisher: TickPublisher,
        ticks: Iterator[Tick],
        rate: float,
        client: redis.Redis | None = None,
        offset_key: str | None = None,
        chunk_seconds: float = 0.01,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self._publisher = publisher
        self._rate = rate
        self._chunk_seconds = chunk_seconds
        self._offset_key = offset_key
        self._offset = 0
        if offset_key is not None and client is not None:
            self._offset = int(client.get(offset_key) or 0)
            ticks = itertools.islice(ticks, self._offset, None)
        self._ticks = ticks
        self.sent = 0
        self.rejected = 0
        self.exhausted = False

    def run(self, stop: threading.Event, duration: float | None = None) -> None:
        """Publish until the source ends, ``stop`` is set or ``duration`` seconds pass."""
        started = time.perf_counter()
        while not stop.is_set():
            elapsed = time.perf_counter() - started
            if duration is not None and elapsed >= duration:
                return
            due = int(self._rate * elapsed) + 1 - self.sent - self.rejected
            if due <= 0:
                # One pipelined round trip per chunk interval, whatever the rate: waiting only
                # for the next tick (1/rate) made it one round trip per tick at 1,000 ticks/s.
                stop.wait(self._chunk_seconds)
                continue
            chunk = list(itertools.islice(self._ticks, due))
            if not chunk:
                self.exhausted = True
                return
            self._publish(chunk)

    def _publish(self, chunk: list[Tick]) -> PublishReport:
        self._offset += len(chunk)
        mark = (self._offset_key, self._offset) if self._offset_key else None
        report = self._publisher.publish(chunk, mark=mark)
        self.sent += report.accepted
        self.rejected += sum(report.rejected.values())
        return report
