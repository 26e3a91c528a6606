"""A shard: the symbols one process owns, their actors, and the read-decide-commit cycle.

Each cycle:

1. one ``XREADGROUP`` brings new ticks of all the shard's symbols;
2. the symbols' actors decide the ticks on the cycle's thread in tick-time
   order across the symbols, a desk's run of consecutive ticks at a time (one run
   a symbol at full speed; :meth:`SymbolActor.decide`; the work holds the
   GIL, so a thread hand-off per symbol cost CPU and bought no parallelism);
3. all the cycle's events are appended to the event store in ONE Lua call;
4. the acknowledgements ride on the next cycle's ``XREADGROUP`` (one round
   trip for both); a cycle that dead-letters ticks instead writes its dead
   letters and acknowledgements in ONE Redis transaction at once; snapshots
   follow.

The portfolio book (:mod:`actors.book`) takes each desk's figures as soon as
its batch is decided, and the shard's sums go to the shared book in Redis on
the next read's round trip, which brings back the other shards' (one hash
write and read riding on the ``XREADGROUP`` pipeline).

Nothing is acknowledged before it is durable, and a cycle holds at most
``read_count`` entries per symbol, so memory is bounded and the backlog waits
in Redis (back-pressure at the edge; pykka inboxes never grow).

Failures: an actor whose batch raised has already reloaded its desk; its
entries stay pending and are handed to it again next cycle, and an entry that
fails ``max_crashes`` times in a row is dead-lettered as poison. Whatever Redis
or the event store refuses or cannot do now (:func:`store_refused`: MISCONF,
OOM, BUSY, NOPERM, READONLY, a version conflict, ...) is never a tick's doing:
nothing is dead-lettered, the shard backs off, every desk reloads from the
store and the unacknowledged ticks are redone; only a lost connection stops the
cycle thread (:func:`redis_lost`; the process exits 3 and is restarted once
Redis answers). Any other commit failure is a tick's doing (a value no stage
after the desk can encode): the desks reload and the cycle is redone symbol by
symbol, a failing symbol's batch by halves in stream order (each committed
prefix stays committed), down to the single tick whose commit fails; that tick
is dead-lettered as ``processing_failed`` with the error, the rest commit once.
A cycle is done once its events, dead letters and acknowledgements are written:
a snapshot failing after that is logged, never redone (a redo would
dead-letter its rejected ticks twice).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pykka
import redis
from eventsourcing.persistence import PersistenceError

from actors.application import DeskApplication
from actors.book import PortfolioBook
from actors.desk_actor import ActorSettings, BatchOutcome, SymbolActor, TickBatch
from actors.stats import HotPathStats
from aggregates.desk import SymbolDesk
from aggregates.policy import DecisionPolicy
from aggregates.trading_switch import AUTO_HALT_REASON
from edge.shared_book import SharedBook, ShardBook, TradingState
from edge.tick_stream import StreamEntry, TickKeys, TickReader
from actors.event_time import Batches, newest_lag_ms, newest_valid, stream_ms, tick_ns, time_runs
from edge.ticks import BadTick

__all__ = ["Shard", "ShardSettings", "redis_lost", "store_refused"]

log = logging.getLogger(__name__)


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def store_refused(error: BaseException | None) -> bool:
    """Whether ``error`` is Redis or the event store failing, not a tick's values.

    Every error redis-py raises (a lost connection, or a refusal: MISCONF after
    a failed AOF write or full disk, OOM, BUSY, NOPERM, READONLY, ...) and every
    persistence error the event store translates them into (``edge.eventstore``
    wraps them with ``from``, so the chain is followed) says the store cannot
    take the work now; redoing it later is right and dead-lettering is wrong.
    What a tick's own events cause (TypeError, ValueError, OverflowError from
    transcoding) is not a store error.
    """
    return any(isinstance(e, (redis.RedisError, PersistenceError)) for e in _causes(error))


def redis_lost(error: BaseException | None) -> bool:
    """Whether ``error`` is the connection to Redis gone (a :func:`store_refused` the shard does not wait out)."""
    return any(isinstance(e, (redis.ConnectionError, redis.TimeoutError)) for e in _causes(error))


@dataclass(frozen=True)
class ShardSettings:
    """How a shard reads, commits and recovers."""

    name: str = "shard-0"
    group: str = "desks"
    read_count: int = 200
    """Most entries taken from one stream per cycle."""
    block_ms: int = 50
    max_crashes: int = 3
    """Failures on the same tick before it is dead-lettered as poison."""
    refusal_backoff_ms: int = 50
    """Wait after the store first refuses work; doubles on each refusal in a row."""
    refusal_backoff_max_ms: int = 5_000
    """Longest wait between redos while the store keeps refusing."""
    actor: ActorSettings = field(default_factory=ActorSettings)


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
        shared: SharedBook | None = None,
        halt: Callable[[str, str], TradingState] | None = None,
    ) -> None:
        self.symbols = list(symbols)
        self.settings = settings
        self.stats = stats or HotPathStats()
        self.restarts = 0
        self.refusals = 0
        """Times the store refused the shard's work (each followed by a back-off and a redo)."""
        self._client = client
        self._app = app
        self._policy = policy
        self._book = book
        self._shared = shared
        """The book the shards share in Redis, and the kill switch; None: neither (some tests)."""
        self._halt = halt
        """Records a halt (who, reason) and returns the state in force; None: the shard never halts (backtests)."""
        self._halt_failing = False
        self._view_published_ms: int | None = None
        """When the oldest of the other shards' figures this cycle decides on was published (ms)."""
        self._keys = keys
        self.reader = TickReader(client, keys, self.symbols, settings.group, settings.name)
        self._actors: dict[str, pykka.ActorRef[SymbolActor]] = {}
        self._loaded: dict[str, SymbolActor] = {}
        """Each running actor, once its desk is loaded: the cycle decides through it directly."""
        self._backlog: list[Batches] = []
        self._newest_ms = 0
        """Stream time (entry ids' ms) of the newest tick this shard has decided."""
        self._lag_ms = 0
        """The newest tick read's stream time less its event time (``ShardBook.lag_ms``): how late the feed is."""
        self._newest_event_ms = 0
        """Event time (ms) of the newest tick this shard has decided: the view windows are in event time."""
        self._book_read_ms = 0
        """When this shard last read the shared book (ms; on its last read's pipeline)."""
        self._valid_ms = 1
        """Stream time up to which this shard's figures hold, for its next publication
        (``ShardBook.valid_ms``; 0 idle; 1, as at start, before it has decided a read of its own)."""
        self._unacked: dict[str, list[bytes]] = {}
        """Committed entries whose acknowledgement goes out with the next read."""
        self._crash_heads: dict[str, tuple[bytes, int]] = {}
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        """Create consumer groups, start every actor, then the read-decide-commit loop."""
        self.reader.ensure_group()
        self.start_actors()
        self.exchange_book()
        self._backlog.extend(self.reader.pending(self.settings.read_count))
        self._thread = threading.Thread(target=self._run, name=f"{self.settings.name}-cycle", daemon=True)
        self._thread.start()

    def start_actors(self) -> None:
        """Start every symbol's actor and wait until their desks are loaded (and in the book); no reading."""
        for symbol in self.symbols:
            self._actors[symbol] = self._start_actor(symbol)
        for symbol, ref in self._actors.items():
            self._loaded[symbol] = ref.proxy().itself().get()

    def exchange_book(self) -> None:
        """Publish this shard's committed figures to the shared book and read the other shards'.

        The cycle does it on its read's round trip; a backtest, whose shards take
        cycles in step, calls :meth:`publish_book` and :meth:`read_book` around its barrier.
        """
        self.publish_book()
        self.read_book()

    def publish_book(self) -> None:
        if self._shared is not None:
            self._shared.publish(self._own_totals(time.time_ns() // 1_000_000, self._valid_ms))

    def _own_totals(self, published_ms: int, valid_ms: int) -> ShardBook:
        return self._book.own_totals(published_ms, self._newest_ms, valid_ms, self._lag_ms)

    def read_book(self) -> None:
        if self._shared is not None:
            self._book_read_ms = time.time_ns() // 1_000_000
            self._shared.read_others()
            self._took_exchange()

    def _took_exchange(self) -> None:
        assert self._shared is not None
        self._book.set_remote(self._shared.latest)
        self._book.set_trading(self._shared.trading)
        published = [figures.published_ms for figures in self._shared.latest.values()]
        self._view_published_ms = min(published) if published else None

    def decide_unstreamed(self, batches: Batches) -> list[BatchOutcome]:
        """One cycle over ticks that came from elsewhere than the tick streams (a backtest).

        The same decide-and-commit as :meth:`cycle`, with nothing to acknowledge
        afterwards and no redelivery: a desk that fails raises, naming its symbol.
        """
        outcomes = []
        for symbol, entries in time_runs(batches):
            try:
                outcomes.append(self._decide(symbol, entries))
            except Exception as error:
                raise RuntimeError(f"deciding on {symbol} failed: {error!r}") from error
        self._commit(outcomes)
        self._unacked.clear()
        return outcomes

    def stop(self) -> None:
        """Finish the cycle in progress (it commits), then stop every actor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.failure is None:
            self._flush_acks()
        for ref in self._actors.values():
            ref.stop(block=True)

    def idle(self, timeout: float) -> bool:
        """Wait until a read finds nothing new (tests and benchmarks use it)."""
        self._idle.clear()
        return self._idle.wait(timeout)

    def _start_actor(self, symbol: str) -> pykka.ActorRef[SymbolActor]:
        return SymbolActor.start(symbol, self._app, self._policy, self._book, self.settings.actor)

    def _run(self) -> None:
        in_a_row = 0
        try:
            while not self._stop.is_set():
                try:
                    if in_a_row:
                        self._recover()
                    self._step()
                    in_a_row = 0
                except Exception as error:
                    if redis_lost(error) or not store_refused(error):
                        raise
                    in_a_row += 1
                    self._back_off(in_a_row, error)
        except BaseException as error:  # noqa: BLE001 - reported to whoever runs the shard
            self.failure = error
            log.exception("shard %s stopped reading", self.settings.name)

    def _step(self) -> None:
        if self._backlog:
            batches = self._backlog.pop(0)
            self._lag_ms = newest_lag_ms(batches, self._lag_ms, self.settings.actor.bounds)
        else:
            issued_ms = self._book_read_ms = time.time_ns() // 1_000_000
            exchange = None if self._shared is None else (
                self._shared, self._own_totals(issued_ms, self._valid_ms))
            batches = self.reader.read(self.settings.read_count, self.settings.block_ms, self._take_acks(),
                                       exchange)
            self._lag_ms = newest_lag_ms(batches, self._lag_ms, self.settings.actor.bounds)
            if self._shared is not None:
                self._took_exchange()
                if batches and self._valid_ms == 0:
                    # Waking from idle: the others must not take this shard's figures as current while it
                    # decides what came in after this read was issued (one write, once a wake-up).
                    self._shared.publish(self._own_totals(issued_ms, issued_ms))
            # Once this cycle is done its figures hold up to when the read was issued (unless cut off).
            self._valid_ms = issued_ms if batches else 0
        if batches:
            self.cycle(batches)
        else:
            self._idle.set()

    def _back_off(self, in_a_row: int, error: Exception) -> None:
        self.refusals += 1
        self._valid_ms = 1  # what it redoes is not decided yet
        delay_ms = min(self.settings.refusal_backoff_ms * 2 ** min(in_a_row - 1, 30),
                       self.settings.refusal_backoff_max_ms)
        log.error("the store refused the shard's work (%r); redoing the unacknowledged ticks in %d ms",
                  error, delay_ms)
        self._stop.wait(delay_ms / 1000)

    def _recover(self) -> None:
        """After a refusal: every desk reloads, and what is unacknowledged is redone (in stream order)."""
        for symbol in self.symbols:
            self._alive_actor(symbol).proxy().reload().get()
        self._flush_acks()
        # Everything in the backlog is in this consumer's pending list: read afresh, not appended.
        self._backlog = list(self.reader.pending(self.settings.read_count))

    def cycle(self, batches: Batches) -> None:
        """Decide on one read's batches and commit them together.

        The ticks are decided in tick-time order across the symbols: a desk's run of consecutive
        ticks at a time (:func:`actors.event_time.time_runs`; one run a desk when each has one tick, as at
        full speed), so every check sees each other desk of the shard as of the tick before
        its own, also while the shard drains a backlog.
        """
        outcomes: list[BatchOutcome] = []
        view = self._cycle_view(batches)
        failed: set[str] = set()
        for symbol, entries in time_runs(batches):
            if symbol in failed:
                continue
            try:
                outcomes.append(self._decide(symbol, entries, view.window(self._newest_event_ms)))
            except Exception as error:  # noqa: BLE001 - the actor reloaded; the ticks stay pending
                if store_refused(error):
                    raise  # a desk that cannot load (or reload) is the store's refusal: back off, redo
                # The actor reloaded from the store: none of its ticks of this cycle stands.
                failed.add(symbol)
                outcomes = [o for o in outcomes if o.symbol != symbol]
                self._after_failure(symbol, batches[symbol], error)
        try:
            self._commit(outcomes)
        except Exception as error:  # noqa: BLE001 - a tick's values the store cannot take: find it
            if store_refused(error):
                raise  # the shard backs off and redoes what is unacknowledged
            log.error("commit of a cycle failed (%r); redoing it symbol by symbol to find the tick", error)
            self._bisect({symbol: list(batches[symbol]) for symbol in dict.fromkeys(o.symbol for o in outcomes)})

    def _bisect(self, batches: Batches) -> None:
        """Redo a cycle whose commit failed, a symbol at a time, until each failing tick is dead-lettered."""
        for symbol in batches:
            self._alive_actor(symbol).proxy().reload().get()
        view = self._cycle_view(batches)
        for symbol, entries in batches.items():
            self._settle(symbol, entries, view.window(self._newest_event_ms))

    def _cycle_view(self, batches: Batches) -> _CycleView:
        """Where the other desks and shards stand in event time while this cycle decides (view windows).

        Newest: what any desk of this shard has decided (it grows as the cycle goes), or any other shard
        has published. Oldest: the last tick of every batch the read cut off at ``read_count`` (its
        desk has more waiting), and how far the other shards' figures hold (``ShardBook.valid_ms``).
        So a tick far from the window is one its desk decides while others are behind or ahead of it
        (a backlog): :func:`aggregates.risk.view_skew_ms`. The cut-off also bounds what this shard
        publishes as ``ShardBook.valid_ms`` (in stream time, as it publishes).

        Event time, not stream time: a feed that falls behind and catches up publishes seconds of
        ticks within a few ms, so a view a few ms old in stream time can miss seconds of price moves.
        Another shard's stream times are turned into event time by its ticks' lag (``ShardBook.lag_ms``).
        """
        remote_newest, remote_oldest, remote_idle = self._book.remote_window()
        if remote_idle and self._book_read_ms:
            # An idle shard had nothing waiting when this shard read the book (on its read's pipeline): its
            # figures hold up to then, in event time by the lag of the newest tick this read brought. What
            # it has to decide came in after, at most the read's block (50 ms) before these ticks.
            remote_oldest = min(remote_oldest, self._book_read_ms - self._lag_ms)
        cut = [entries[-1] for entries in batches.values() if len(entries) >= self.settings.read_count]
        if cut and self._valid_ms:
            self._valid_ms = min(self._valid_ms, min(stream_ms(entry_id) for entry_id, _ in cut))
        # A tick whose time is unreadable is dead-lettered by its desk: it holds no view back.
        cut_off = min((ns // 1_000_000 for ns in (tick_ns(fields) for _, fields in cut) if ns >= 0),
                      default=math.inf)
        return _CycleView(min(cut_off, remote_oldest), remote_newest)

    def _settle(self, symbol: str, entries: list[StreamEntry], window: tuple[float, float] | None = None) -> bool:
        """Decide and commit ``entries`` of ``symbol``; on a tick's commit failure, halves in stream order.

        Returns False when deciding raised: that goes the crash-count way
        (:meth:`_after_failure`, which hands the symbol's pending ticks back),
        and nothing later of the symbol is settled here, so its order holds.
        A store refusal propagates (the shard backs off and redoes).
        """
        try:
            outcome = self._decide(symbol, entries, window)
        except Exception as error:  # noqa: BLE001 - the actor reloaded; the ticks stay pending
            if store_refused(error):
                raise
            self._after_failure(symbol, entries, error)
            return False
        try:
            self._commit([outcome])
            return True
        except Exception as error:  # noqa: BLE001 - narrowed down below
            if store_refused(error):
                raise
            failure = error
        self._alive_actor(symbol).proxy().reload().get()  # no half-committed batch stays in memory
        if len(entries) > 1:
            half = len(entries) // 2
            return self._settle(symbol, entries[:half], window) and self._settle(symbol, entries[half:], window)
        reason = f"committing its decision failed: {failure!r}"
        self.reader.reject(symbol, entries[0], BadTick("processing_failed", reason), "commit")
        self.stats.record_batch(1, 0, 0, 1, 0, np.empty(0, dtype=np.int64))
        log.error("tick %s of %s dead-lettered: %s", entries[0][0].decode(), symbol, reason)
        return True

    def _decide(self, symbol: str, entries: Sequence[StreamEntry],
                window: tuple[float, float] | None = None) -> BatchOutcome:
        """``symbol``'s batch decided by its actor, on this thread (the actor reloads if it raises)."""
        ref = self._alive_actor(symbol)
        actor = self._loaded.get(symbol)
        if actor is None or actor.actor_ref is not ref:
            actor = self._loaded[symbol] = ref.proxy().itself().get()  # waits for on_start
        outcome = actor.decide(TickBatch(entries, window))
        if outcome.figures is not None:  # the next desk's checks see this one as the commit will leave it
            self._book.publish(symbol, outcome.figures)
        if entries and window is not None:
            self._newest_ms = max(self._newest_ms, stream_ms(entries[-1][0]))
            newest = newest_valid(entries, self.settings.actor.bounds)
            if newest is not None:
                self._newest_event_ms = max(self._newest_event_ms, newest[1] // 1_000_000)
        return outcome

    def _commit(self, outcomes: list[BatchOutcome]) -> None:
        """Make the outcomes durable (events, then dead letters with acks); what follows is never redone."""
        events = [event for o in outcomes for event in o.events]
        if events:
            self._app.events.put(events)
        committed_ns = time.time_ns()
        if events and self._view_published_ms is not None:
            self.stats.record_view_age(committed_ns // 1_000_000 - self._view_published_ms)
        for o in outcomes:
            self._unacked.setdefault(o.symbol, []).extend(o.acks)
        if any(o.rejected for o in outcomes):
            # A dead letter and the acknowledgement of its entry are one fact:
            # written together, so a crash can neither drop nor repeat it.
            acks = self._take_acks()
            pipe = self._client.pipeline(transaction=True)
            for o in outcomes:
                for entry, error in o.rejected:
                    self.reader.dead_letters.add(pipe, o.symbol, error, entry[1], "desk", entry[0])
            for symbol, entry_ids in acks.items():
                pipe.xack(self._keys.stream(symbol), self.settings.group, *entry_ids)
            try:
                pipe.execute()
            except BaseException:
                for symbol, entry_ids in acks.items():  # committed events stay to be acknowledged
                    self._unacked.setdefault(symbol, []).extend(entry_ids)
                raise
        for o in outcomes:
            self._crash_heads.pop(o.symbol, None)
        try:
            self._after_commit(outcomes, events)
        except Exception:  # noqa: BLE001 - the cycle is durable; redoing it would repeat its dead letters
            log.exception("after committing a cycle, writing its snapshots failed; "
                          "the cycle stands (a desk loads from older snapshots and more events)")
        sent = [s for o in outcomes for s in o.sent_ns]
        self.stats.record_batch(
            sum(len(o.acks) for o in outcomes),
            sum(o.decisions for o in outcomes),
            len(events),
            sum(len(o.rejected) for o in outcomes),
            sum(o.duplicates for o in outcomes),
            committed_ns - np.asarray(sent, dtype=np.int64),
        )
        alerted = [s for o in outcomes for s in o.alert_sent_ns]
        if alerted:
            self.stats.record_alerts(committed_ns - np.asarray(alerted, dtype=np.int64))
        severities = [s for o in outcomes for s in o.alert_severities]
        if severities:
            self.stats.record_alert_severities(severities)

    def _after_commit(self, outcomes: list[BatchOutcome], events: list[Any]) -> None:
        if events and log.isEnabledFor(logging.DEBUG):
            self._log_decisions(events)
        if events and self._halt is not None and not self._book.trading.halted:
            self._halt_if_daily_loss_broken()
        snapshots = [o.snapshot for o in outcomes if o.snapshot is not None]
        if snapshots and self._app.snapshots is not None:
            self._app.snapshots.put(snapshots)

    def _halt_if_daily_loss_broken(self) -> None:
        """Halt trading (reason ``daily_loss_limit``) once the whole book's loss today reaches the limit."""
        assert self._halt is not None
        loss, limit = self._book.day_loss(), self.settings.actor.limits.daily_loss_limit
        if loss < limit:
            return
        try:
            state = self._halt(self.settings.name, AUTO_HALT_REASON)
        except Exception as error:  # noqa: BLE001 - the daily-loss check still blocks growth; retried next cycle
            if not self._halt_failing:
                log.error("the book lost %.2f %% today (limit %.2f %%) but recording the halt failed (%r); "
                          "retrying every cycle", 100 * loss, 100 * limit, error)
            self._halt_failing = True
            return
        self._halt_failing = False
        self._book.set_trading(state)
        log.warning("halted trading: the book lost %.2f %% today, the limit is %.2f %% "
                    "(`glassbox resume` to trade again)", 100 * loss, 100 * limit)

    @staticmethod
    def _log_decisions(events: list[Any]) -> None:
        for event in events:
            if isinstance(event, SymbolDesk.DecisionTaken):
                log.debug("decision committed", extra={
                    "correlation_id": event.correlation_id, "decision_id": event.decision_id,
                    "symbol": event.symbol, "action": event.action, "quantity": event.quantity,
                })

    def _take_acks(self) -> dict[str, list[bytes]]:
        acks, self._unacked = self._unacked, {}
        return acks

    def _flush_acks(self) -> None:
        # Before reading the pending list, so committed entries are not handed back.
        self.reader.ack(self._take_acks())

    def _alive_actor(self, symbol: str) -> pykka.ActorRef[SymbolActor]:
        ref = self._actors[symbol]
        if not ref.is_alive():
            self.restarts += 1
            log.warning("desk actor %s had died; starting a new one from the event store", symbol)
            ref = self._actors[symbol] = self._start_actor(symbol)
        return ref

    def _after_failure(self, symbol: str, entries: list[StreamEntry], error: Exception) -> None:
        self.restarts += 1
        log.error("deciding %d ticks of %s failed: %r", len(entries), symbol, error)
        head = entries[0]
        previous, crashes = self._crash_heads.get(symbol, (b"", 0))
        crashes = crashes + 1 if previous == head[0] else 1
        self._crash_heads[symbol] = (head[0], crashes)
        if crashes >= self.settings.max_crashes:
            reason = f"deciding on it failed {crashes} times in a row: {error!r}"
            self.reader.reject(symbol, head, BadTick("processing_failed", reason), "desk")
            log.error("tick %s of %s dead-lettered: %s", head[0].decode(), symbol, reason)
            self._crash_heads.pop(symbol)
        self._flush_acks()
        self._backlog.extend(self.reader.pending(self.settings.read_count, [symbol]))


@dataclass(frozen=True)
class _CycleView:
    """Where in event time (ms) the other desks and shards stand for a cycle (:attr:`TickBatch.view_window`)."""

    oldest: float
    """Ticks known to be waiting beyond this cycle: batches cut off at ``read_count``, other shards' backlogs."""
    remote_newest: float
    """The newest tick the other shards' figures include."""

    def window(self, newest_decided: int) -> tuple[float, float]:
        """The window of a desk's turn, when this shard has decided up to ``newest_decided``."""
        return max(float(newest_decided), self.remote_newest), self.oldest
