"""Backtesting by event replay: historical ticks through the live desks, in their own namespace.

A backtest runs the very shard, actors, strategy, aggregates and Redis
Streams event store that trade live (:class:`~actors.runtime.HotPath`); only
the source of ticks differs. Instead of reading tick streams, it hands the
shard cycles of historical ticks (:meth:`~actors.shard.Shard.decide_unstreamed`),
each tick named by an id made from its own time, so the run's decisions,
events and ids are the same every time it is run. Time is the ticks' time
throughout: nothing the desks record reads the wall clock.

Isolation: a run's keys live under ``backtest:{run_id}:`` (tick dead
letters, the event stores and their snapshots), so it never reads or writes a
live system's keys even on the same Redis; its topics and database schema,
when ``--forensics`` asks for them, are named after the run too.

Risk: every order of every strategy goes through the book's limits
(``BacktestSettings.limits``), as live; the result counts the orders risk cut
and refused, and the rules they would have broken.

Shards: with ``shards`` > 1 the symbols are split as ``glassbox up --shards``
splits them (:func:`~actors.sharding.assign_symbols`) and each shard runs in
a process of its own with its own event store (``…glassbox:shard-<i>``),
sharing the book through the run's shared book in Redis as live shards do.
The shards take the run's cycles in step — each decides its symbols' ticks of
a cycle, publishes its figures, and waits for the others before the next — so
every shard's risk sees the others exactly one cycle behind, whatever their
speeds; the shards' ledgers are then combined into the portfolio's
(:meth:`Ledger.combined`). So a run with N shards decides as a live system
with N shards would.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Callable, Iterator

import redis

from actors.desk_actor import ActorSettings, BatchOutcome
from actors.features import warm_up
from actors.forked import PartContext, PartFailed, run_forked
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from actors.sharding import assign_symbols
from aggregates.desk import SymbolDesk, desk_id
from aggregates.risk import RiskLimits
from aggregates.strategies import Strategy
from edge.gc_settling import settle_garbage_collector
from edge.history import History
from edge.tick_stream import StreamEntry
from edge.ticks import Tick, TickBounds, encode_tick
from glassbox import GlassboxError
from aggregates.performance import Ledger

__all__ = ["BacktestError", "BacktestResult", "BacktestSettings", "discard_run", "new_run_id", "run_backtest", "tick_batches"]

Progress = Callable[[int, int, float], None]
"""Called after each cycle with (ticks done, ticks in all, seconds so far)."""


class BacktestError(GlassboxError):
    """A backtest that cannot run or did not finish; the message says why."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class BacktestSettings:
    """Where and how a backtest runs."""

    redis_url: str
    run_id: str
    capital: float = 100_000.0
    cycle_ticks: int = 2_000
    """Ticks (of all symbols, in time order) decided and committed together, as one live read."""
    checkpoint_every: int = 1_000
    keep_events: bool = True
    """False: drop each cycle's events from the run's store once booked (flat memory on
    long runs; nothing left to inspect or explain afterwards)."""
    shards: int = 1
    """Processes the symbols are split across, as live shards split them (see the module docstring)."""
    limits: RiskLimits = field(default_factory=RiskLimits)
    """The book's risk limits, which every order goes through, as live."""
    bounds: TickBounds = field(default_factory=TickBounds)
    """What a tick may hold; the desks drop the wall-clock bound (:meth:`TickBounds.for_history`):
    replayed history, synthetic history included, may run past today."""

    def __post_init__(self) -> None:
        if not self.capital > 0:
            raise BacktestError(f"--capital must be positive, got {self.capital!r}")
        if self.cycle_ticks < 1:
            raise BacktestError(f"cycle_ticks must be >= 1, got {self.cycle_ticks}")
        if self.shards < 1:
            raise BacktestError(f"--shards must be at least 1, got {self.shards}")
        if not self.run_id.replace("-", "").isalnum():
            raise BacktestError(f"a run id is letters, digits and dashes, got {self.run_id!r}")

    @property
    def namespace(self) -> str:
        return f"backtest:{self.run_id}:"

    def hot_path(self, shard: int = 0, book_share: float = 1.0) -> HotPathSettings:
        """Shard ``shard``'s hot path, its event store ``SystemKeys(namespace).shard_store(shard)`` as live."""
        return HotPathSettings(
            self.redis_url, namespace=self.namespace, capital=self.capital, book_share=book_share, halts=False,
            shard=ShardSettings(name=f"shard-{shard}", actor=ActorSettings(
                checkpoint_every=self.checkpoint_every, bounds=self.bounds.for_history(), limits=self.limits)),
        )


@dataclass
class BacktestResult:
    """What a run did; its figures come from ``ledger`` (see :mod:`aggregates.performance`)."""

    run_id: str
    store_names: list[str]
    """The event store of each shard that owned symbols."""
    ledger: Ledger
    ticks: int = 0
    decisions: int = 0
    events: int = 0
    rejected_ticks: int = 0
    seconds: float = 0.0
    rejections: dict[str, int] = field(default_factory=dict)
    orders_cut: int = 0
    """Orders risk cut to the largest quantity that passes (a ``Risk.Check.Rejected`` and a smaller fill)."""
    orders_refused: int = 0
    """Orders risk refused outright (a ``Risk.Check.Rejected`` and no fill)."""
    limits_broken: dict[str, int] = field(default_factory=dict)
    """Orders cut or refused, per rule they would have broken (one breaking two counts under both)."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def tick_batches(ticks: list[Tick], cycle_ticks: int,
                 symbols: frozenset[str] | None = None) -> Iterator[dict[str, list[StreamEntry]]]:
    """Cycles of stream entries as a live read would bring them, ids made from tick time.

    An id is ``<ms>-<n>`` with ``n`` counting ticks of the symbol in the same
    millisecond, so ids rise with time as Redis's own do and name the same
    tick in every run. With ``symbols``, each cycle holds only their ticks
    (maybe none), cut where the cycle of all ticks is cut: shards in step.
    """
    last: dict[str, tuple[int, int]] = {}
    for start in range(0, len(ticks), cycle_ticks):
        batches: dict[str, list[StreamEntry]] = {}
        for tick in ticks[start:start + cycle_ticks]:
            if symbols is not None and tick.symbol not in symbols:
                continue
            ms = tick.ts_ns // 1_000_000
            prev_ms, prev_n = last.get(tick.symbol, (-1, -1))
            n = prev_n + 1 if ms == prev_ms else 0
            if ms < prev_ms:
                raise BacktestError(f"{tick.symbol}: ticks out of time order at {tick.ts_ns} ns")
            last[tick.symbol] = (ms, n)
            batches.setdefault(tick.symbol, []).append((f"{ms}-{n}".encode(), encode_tick(tick)))
        yield batches


def run_backtest(settings: BacktestSettings, strategy: Strategy, history: History,
                 progress: Progress | None = None) -> BacktestResult:
    """Decide on every tick of ``history`` with ``strategy``, committing to the run's own event stores.

    ``seconds`` of the result is the time spent deciding, after start-up (in
    a sharded run, the slowest shard's: they start together).

    Raises:
        BacktestError: when the run's namespace already holds events, or a desk or a shard fails.
    """
    owned = [(i, symbols) for i, symbols in enumerate(assign_symbols(history.symbols, settings.shards)) if symbols]
    total = len(history.ticks)
    if len(owned) == 1:
        shard, symbols = owned[0]
        return _run_shard(settings, shard, symbols, strategy, history.ticks, _counting(progress, total))
    book = len(history.symbols)

    def part(shard: int, symbols: list[str]) -> Callable[[PartContext[BacktestResult]], BacktestResult]:
        return lambda context: _run_shard(settings, shard, symbols, strategy, history.ticks,
                                          lambda done, _seconds: context.progressed(done), context.in_step,
                                          len(symbols) / book)

    started = time.perf_counter()
    counting = _counting(progress, total)
    try:
        results = run_forked([part(i, symbols) for i, symbols in owned],
                             lambda done: counting(done, time.perf_counter() - started))
    except PartFailed as failure:
        raise BacktestError(f"shard {owned[failure.index][0]} of the backtest failed: {failure}") from None
    return _combined(settings.run_id, results)


def _counting(progress: Progress | None, total: int) -> Callable[[int, float], None]:
    return (lambda done, seconds: progress(done, total, seconds)) if progress else (lambda done, seconds: None)


def _run_shard(settings: BacktestSettings, shard: int, symbols: list[str], strategy: Strategy, ticks: list[Tick],
               progress: Callable[[int, float], None], in_step: Callable[[], None] | None = None,
               book_share: float = 1.0) -> BacktestResult:
    """One shard's run over its own symbols' ticks, in this process.

    ``in_step`` (a sharded run) waits for the other shards: once when started, and twice a
    cycle — after reading the others' figures (so nobody publishes over a figure set another
    has yet to read) and after publishing its own (so everybody reads the same cycle's).
    """
    hot_settings = settings.hot_path(shard, book_share)
    hot = HotPath(hot_settings, symbols, strategy)
    result = BacktestResult(settings.run_id, [hot_settings.store_name], Ledger(settings.capital))
    sharded = in_step is not None
    try:
        if hot.app.recorder.max_notification_id():  # type: ignore[attr-defined]
            raise BacktestError(f"backtest run {settings.run_id} already has events in {hot_settings.store_name}; "
                                "choose another run id")
        warm_up()
        settle_garbage_collector()
        hot.shard.start_actors()
        if sharded:
            hot.shard.publish_book()
            in_step()
        started = time.perf_counter()
        for batches in tick_batches(ticks, settings.cycle_ticks, frozenset(symbols) if sharded else None):
            hot.shard.read_book()
            if sharded:
                in_step()
            try:
                outcomes = hot.shard.decide_unstreamed(batches)
            except RuntimeError as error:
                raise BacktestError(str(error)) from error
            if sharded:
                hot.shard.publish_book()
                in_step()
            _post(result, outcomes)
            if not settings.keep_events and batches:
                hot.app.recorder.forget_history([desk_id(s) for s in batches])  # type: ignore[attr-defined]
            progress(result.ticks, time.perf_counter() - started)
        result.seconds = time.perf_counter() - started
        result.ledger.finish()
    finally:
        hot.stop()
    return result


def _combined(run_id: str, results: list[BacktestResult]) -> BacktestResult:
    combined = BacktestResult(run_id, [name for r in results for name in r.store_names],
                              Ledger.combined([r.ledger for r in results]))
    for r in results:
        combined.ticks += r.ticks
        combined.decisions += r.decisions
        combined.events += r.events
        combined.rejected_ticks += r.rejected_ticks
        combined.seconds = max(combined.seconds, r.seconds)
        for code, count in r.rejections.items():
            combined.rejections[code] = combined.rejections.get(code, 0) + count
        combined.orders_cut += r.orders_cut
        combined.orders_refused += r.orders_refused
        for rule, count in r.limits_broken.items():
            combined.limits_broken[rule] = combined.limits_broken.get(rule, 0) + count
    combined.rejections = dict(sorted(combined.rejections.items()))
    combined.limits_broken = dict(sorted(combined.limits_broken.items()))
    return combined


def discard_run(client: redis.Redis, settings: BacktestSettings) -> int:
    """Delete every key of the run's namespace; how many there were."""
    keys = list(client.scan_iter(match=f"*{settings.namespace}*", count=1_000))
    for start in range(0, len(keys), 500):
        client.unlink(*keys[start:start + 500])
    return len(keys)


def _post(result: BacktestResult, outcomes: list[BatchOutcome]) -> None:
    """Book a committed cycle into the ledger, in time order across symbols."""
    ledger = result.ledger
    events = []
    for o in outcomes:
        result.ticks += len(o.acks)
        result.decisions += o.decisions
        result.events += len(o.events)
        result.rejected_ticks += len(o.rejected)
        for _, error in o.rejected:
            result.rejections[error.code] = result.rejections.get(error.code, 0) + 1
        events.extend(o.events)
    events.sort(key=attrgetter("timestamp_ns"))  # every desk event carries its tick's time
    broke_a_limit: set[str] = set()
    for e in events:
        if isinstance(e, SymbolDesk.DecisionTaken):
            ledger.mark(e.symbol, e.timestamp_ns, e.price)
        elif isinstance(e, SymbolDesk.OrderFilled):
            ledger.fill(e.symbol, e.timestamp_ns, e.side, e.quantity, e.price, e.commission, e.decision_id)
            if e.decision_id in broke_a_limit:  # the fill follows its rejection: the order was cut
                broke_a_limit.discard(e.decision_id)
                result.orders_cut += 1
        elif isinstance(e, SymbolDesk.RiskRejected):
            broke_a_limit.add(e.decision_id)
            for reason in e.reasons:
                rule = reason.partition(":")[0]
                result.limits_broken[rule] = result.limits_broken.get(rule, 0) + 1
    result.orders_refused += len(broke_a_limit)  # rejected, and no fill came
