"""A shard: the symbols one process owns, their actors, and the reader feeding them.

One reader thread asks Redis for new ticks of all the shard's symbols in one
``XREADGROUP`` and tells each symbol's actor its batch. pykka inboxes are
unbounded, so the reader holds credits: it stops reading while
``max_in_flight`` batches are still being decided, and the backlog waits in
Redis (back-pressure at the edge, not in memory).

When an actor dies, the reader starts a replacement; it rebuilds its desk
from the event store and gets the dead actor's unacknowledged ticks again
(they are still pending for this shard's consumer).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Sequence

import pykka
import redis

from actors.application import DeskApplication
from actors.book import PortfolioBook
from actors.desk_actor import ActorSettings, SymbolActor, TickBatch
from actors.stats import HotPathStats
from aggregates.policy import DecisionPolicy
from edge.tick_stream import StreamEntry, TickKeys, TickReader
from edge.ticks import BadTick

__all__ = ["Shard", "ShardSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSettings:
    """How a shard reads and bounds its work."""

    name: str = "shard-0"
    read_count: int = 200
    """Most entries taken from one stream per read (a batch's upper bound)."""
    block_ms: int = 50
    max_in_flight: int = 64
    """Batches told to actors and not yet committed before the reader pauses."""
    max_crashes: int = 3
    """Crashes on the same tick before it is dead-lettered as poison."""
    actor: ActorSettings = ActorSettings()


class _Credits:
    """Counts batches in flight per symbol; the reader waits while the total is at the cap."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._by_symbol: dict[str, int] = {}
        self._total = 0
        self._cond = threading.Condition()

    def wait_for_room(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._total < self._cap, timeout)

    def take(self, symbol: str) -> None:
        with self._cond:
            self._by_symbol[symbol] = self._by_symbol.get(symbol, 0) + 1
            self._total += 1

    def give_back(self, symbol: str, count: int = 1) -> None:
        with self._cond:
            count = min(count, self._by_symbol.get(symbol, 0))
            self._by_symbol[symbol] = self._by_symbol.get(symbol, 0) - count
            self._total -= count
            self._cond.notify_all()

    def forget(self, symbol: str) -> None:
        """Drop a dead actor's credits: its batches will never call back."""
        self.give_back(symbol, self._by_symbol.get(symbol, 0))

    def idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._total == 0, timeout)


class Shard:
    """Starts, feeds, supervises and stops the actors of one shard's symbols."""

    def __init__(
        self,
        client: redis.Redis,
        app: DeskApplication,
        policy: DecisionPolicy,
        symbols: Sequence[str],
        book: PortfolioBook,
        keys: TickKeys = TickKeys(),
        settings: ShardSettings = ShardSettings(),
        stats: HotPathStats | None = None,
    ) -> None:
        self.symbols = list(symbols)
        self.settings = settings
        self.stats = stats or HotPathStats()
        self.restarts = 0
        self._client = client
        self._app = app
        self._policy = policy
        self._book = book
        self._keys = keys
        self._reader = TickReader(client, keys, self.symbols, settings.actor.group, settings.name)
        self._actors: dict[str, pykka.ActorRef[SymbolActor]] = {}
        self._credits = _Credits(settings.max_in_flight)
        self._crash_heads: dict[str, tuple[bytes, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Create consumer groups, start every actor, then the reader."""
        self._reader.ensure_group()
        for symbol in self.symbols:
            self._actors[symbol] = self._start_actor(symbol)
        self._thread = threading.Thread(target=self._run, name=f"{self.settings.name}-reader", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout: float = 10.0) -> bool:
        """Stop reading, let actors finish what they were told, then stop them.

        Returns whether every batch in flight was committed in time.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        drained = self._credits.idle(drain_timeout)
        for ref in self._actors.values():
            ref.stop(block=True)
        return drained

    def idle(self, timeout: float) -> bool:
        """Wait until no batch is in flight (tests and benchmarks use it)."""
        return self._credits.idle(timeout)

    def _start_actor(self, symbol: str) -> pykka.ActorRef[SymbolActor]:
        return SymbolActor.start(
            symbol, self._app, self._policy, self._client, self._keys,
            self._book, self.stats, self.settings.actor,
        )

    def _run(self) -> None:
        try:
            for page in self._reader.pending(self.settings.read_count):
                self._dispatch(page)
            while not self._stop.is_set():
                self._revive_dead_actors()
                if not self._credits.wait_for_room(timeout=0.1):
                    continue
                self._dispatch(self._reader.read(self.settings.read_count, self.settings.block_ms))
        except Exception:
            log.exception("shard %s reader failed; no more ticks are read", self.settings.name)
            raise

    def _dispatch(self, batches: dict[str, list[StreamEntry]]) -> None:
        for symbol, entries in batches.items():
            ref = self._actors.get(symbol)
            if ref is None:
                continue
            self._credits.take(symbol)
            done = _release(self._credits, symbol)
            try:
                ref.tell(TickBatch(entries, done))
            except pykka.ActorDeadError:
                self._credits.forget(symbol)

    def _revive_dead_actors(self) -> None:
        for symbol, ref in list(self._actors.items()):
            if ref.is_alive():
                continue
            self.restarts += 1
            self._credits.forget(symbol)
            pages = list(self._reader.pending(self.settings.read_count, [symbol]))
            if pages and self._is_poison(symbol, pages[0][symbol][0]):
                pages[0][symbol] = pages[0][symbol][1:]
            log.warning("desk actor %s died; restarting it from the event store", symbol)
            self._actors[symbol] = self._start_actor(symbol)
            for page in pages:
                self._dispatch(page)

    def _is_poison(self, symbol: str, head: StreamEntry) -> bool:
        """Dead-letter a tick that killed its actor ``max_crashes`` times in a row."""
        previous, crashes = self._crash_heads.get(symbol, (b"", 0))
        crashes = crashes + 1 if previous == head[0] else 1
        self._crash_heads[symbol] = (head[0], crashes)
        if crashes < self.settings.max_crashes:
            return False
        reason = f"deciding on it killed the desk actor {crashes} times"
        self._reader.reject(symbol, head, BadTick("processing_failed", reason), "desk")
        log.error("tick %s of %s dead-lettered: %s", head[0].decode(), symbol, reason)
        self._crash_heads.pop(symbol)
        return True


def _release(credits: _Credits, symbol: str):  # noqa: ANN202 - a closure
    return lambda: credits.give_back(symbol)
