"""``SymbolActor``: one pykka actor per symbol, turning a batch of ticks into decision events.

The actor decides; the shard commits. Each read cycle the shard asks every
symbol's actor for the outcome of its batch — new events, which entries to
acknowledge, which to dead-letter — and commits all of them in ONE
event-store append, then acknowledges in ONE Redis transaction: a tick is
acknowledged only after the decision it caused is durable, and crossing the
network once per cycle instead of once per symbol is what keeps the hot path
within reach of a bare Redis hop.

A tick delivered again after a crash is recognised by its id (the desk
remembers the last tick it decided) and acknowledged without a second
decision.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import pykka
from eventsourcing.domain import DomainEventProtocol, Snapshot

from actors.application import DeskApplication
from actors.book import DeskFigures, PortfolioBook
from actors.features import STATE_SIZE, FeatureEngine
from aggregates.desk import SymbolDesk, tick_order
from aggregates.alerts import AlertRules, PriceWindow, severity_of
from aggregates.risk import RiskLimits, view_skew_ms
from aggregates.strategies import Strategy
from edge.tick_stream import StreamEntry
from edge.ticks import BadTick, TickBounds, decode_tick, sent_ns_of, validate_tick

__all__ = ["ActorSettings", "BatchOutcome", "DeskNotLoaded", "SymbolActor", "TickBatch"]

log = logging.getLogger(__name__)


class DeskNotLoaded(RuntimeError):
    """A desk asked to decide whose last load failed (its cause is the store's error)."""


@dataclass(frozen=True)
class ActorSettings:
    """Knobs of a desk actor."""

    checkpoint_every: int = 1_000
    """Decisions between feature checkpoints (each followed by a snapshot)."""
    bounds: TickBounds = field(default_factory=TickBounds)
    """What a tick may hold; checked again here, as a raw XADD bypasses the publisher's check."""
    limits: RiskLimits = field(default_factory=RiskLimits)
    """The book's risk limits, which every order of every strategy goes through."""
    alerts: AlertRules = field(default_factory=AlertRules)
    """When a price move raises ``Risk.Alert.Triggered`` (per symbol or by default)."""


@dataclass(frozen=True)
class TickBatch:
    """Entries of one symbol's stream, in stream order."""

    entries: Sequence[StreamEntry]
    view_window: tuple[float, float] | None = None
    """(newest, oldest) event time (ms) of what the other desks have decided and may still have to decide
    (:func:`aggregates.risk.view_skew_ms`); None: they are in step (a backtest)."""


@dataclass
class BatchOutcome:
    """What one batch produced; nothing of it is durable until the shard commits it."""

    symbol: str
    events: list[DomainEventProtocol] = field(default_factory=list)
    acks: list[bytes] = field(default_factory=list)
    rejected: list[tuple[StreamEntry, BadTick]] = field(default_factory=list)
    sent_ns: list[int] = field(default_factory=list)
    alert_sent_ns: list[int] = field(default_factory=list)
    """When the ticks that raised a price alert were sent (for the alert's latency)."""
    alert_severities: list[str] = field(default_factory=list)
    """The severity of each price alert the batch raised."""
    decisions: int = 0
    duplicates: int = 0
    snapshot: Snapshot | None = None
    figures: DeskFigures | None = None


class SymbolActor(pykka.ThreadingActor):
    """Decides for one symbol; its state lives in the event store, not in the actor.

    ``on_start`` (actor thread) loads the desk from its latest snapshot and
    later events and replays the ticks since the last feature checkpoint
    through the feature engine. Batches arrive by ``ask`` or, from the shard's
    cycle thread, :meth:`decide`: an exception while deciding goes back to the shard and the actor lives on, having first
    reloaded its desk from the store so no half-decided batch stays in memory.
    """

    def __init__(
        self,
        symbol: str,
        app: DeskApplication,
        policy: Strategy,
        book: PortfolioBook,
        settings: ActorSettings = ActorSettings(),
    ) -> None:
        super().__init__()
        self.symbol = symbol
        self._app = app
        self._policy = policy
        self._book = book
        self._settings = settings
        self.desk: SymbolDesk | None = None
        self.load_failure: Exception | None = None
        self.engine = FeatureEngine()
        self.history: deque[float] = deque(maxlen=policy.lookback)
        """The symbol's last prices, for a strategy with a lookback (checkpointed after the features)."""
        self.alert_rule = settings.alerts.for_symbol(symbol)
        self.window = PriceWindow(self.alert_rule.window_ns)
        """The symbol's prices of the alert window, rebuilt from the desk's recent events on load."""

    def on_start(self) -> None:
        try:
            self.reload()
        except Exception:  # noqa: BLE001 - kept in load_failure; decide raises it
            # A store refusing the load is the store's trouble, not this symbol's: the actor
            # lives on, and the shard backs off and reloads every desk (:meth:`decide` raises).
            log.warning("desk %s could not load from the event store; it waits for the shard's reload",
                        self.symbol, exc_info=True)

    def reload(self) -> None:
        """Rebuild desk and features from the event store (snapshot + later events).

        Until a reload succeeds, :attr:`load_failure` holds why the last one failed
        and :meth:`decide` refuses: deciding on a desk that never loaded would open
        it afresh and decide its ticks again.
        """
        try:
            self._load()
        except Exception as error:
            self.load_failure = error
            raise
        self.load_failure = None

    def _load(self) -> None:
        self.engine = FeatureEngine()
        self.history.clear()
        self.window.clear()
        self.desk = self._app.load_desk(self.symbol)
        if self.desk is None:
            return
        for ts_ns, price in self._app.recent_prices(self.symbol, self.desk.last_ts_ns - self.window.window_ns):
            self.window.add(ts_ns, price)
        if self.desk.feature_state:
            state = self.desk.feature_state
            self.engine = FeatureEngine.from_state(state[:STATE_SIZE])
            self.history.extend(state[STATE_SIZE:])
        since = self.desk.feature_checkpoint_version
        for event in self._app.events_after(self.symbol, since):
            if isinstance(event, SymbolDesk.DecisionTaken):
                self.engine.update(event.price, event.size, _nan(event.bid), _nan(event.ask))
                self.history.append(event.price)
        self._book.publish(self.symbol, self._figures())

    def on_receive(self, message: object) -> BatchOutcome | None:
        if isinstance(message, TickBatch):
            return self.decide(message)
        return super().on_receive(message)

    def itself(self) -> SymbolActor:
        """This actor, once its desk is loaded (asked through a proxy, the answer comes after ``on_start``).

        The shard decides each cycle's batches on its own thread through :meth:`decide`
        (the desks' work holds the GIL, so handing 50 batches to 50 threads bought no
        parallelism, only ~20 µs of CPU per hand-off); the actor's thread loads and
        reloads. Only the shard's thread calls either, one at a time.
        """
        return self

    def decide(self, batch: TickBatch) -> BatchOutcome:
        """:meth:`decide_batch`, reloading the desk from the store first if it raises."""
        if self.load_failure is not None:
            raise DeskNotLoaded(f"the desk of {self.symbol} did not load from the event store") from self.load_failure
        try:
            return self.decide_batch(batch)
        except Exception:
            self.reload()
            raise

    def decide_batch(self, batch: TickBatch) -> BatchOutcome:
        """Decide on every new tick of the batch; the events are returned, not saved."""
        outcome = BatchOutcome(self.symbol)
        checkpointed = False
        others = self._book.others(self.symbol)
        bounds = self._settings.bounds
        limits = self._settings.limits
        latest_ns = bounds.latest_ns()
        window = batch.view_window
        # What ``desk.has_seen`` tells, with the last decided id parsed once a batch, not once a tick.
        seen = tick_order(self.desk.last_tick_id) if self.desk is not None and self.desk.last_tick_id else None
        for entry_id, fields in batch.entries:
            outcome.acks.append(entry_id)
            tick_id = entry_id.decode()
            order = tick_order(tick_id)
            if seen is not None and order <= seen:
                outcome.duplicates += 1
                continue
            try:
                tick = decode_tick(self.symbol, fields or {})
                validate_tick(tick, self.desk.last_ts_ns if self.desk else None, bounds, latest_ns)
            except BadTick as error:
                outcome.rejected.append(((entry_id, fields), error))
                continue
            if self.desk is None:
                self.desk = SymbolDesk.open(self.symbol, correlation_id=tick_id, timestamp_ns=tick.ts_ns)
            features = self.engine.update(tick.price, tick.size, _nan(tick.bid), _nan(tick.ask))
            self.history.append(tick.price)
            self.desk.decide(
                tick_id=tick_id, ts_ns=tick.ts_ns, price=tick.price, size=tick.size,
                bid=tick.bid, ask=tick.ask, features=features, policy=self._policy, others=others,
                limits=limits, history=self.history, view_skew_ms=view_skew_ms(tick.ts_ns // 1_000_000, window),
            )
            seen = order
            outcome.decisions += 1
            move, reference = self.window.add(tick.ts_ns, tick.price)
            rule = self.alert_rule
            if abs(move) >= rule.move and self.desk.may_alert(tick.ts_ns, rule.window_ns):
                severity = severity_of(move, rule)
                self.desk.alert(tick_id=tick_id, ts_ns=tick.ts_ns, price=tick.price, reference_price=reference,
                                move=move, threshold=rule.move, window_s=rule.window_s, severity=severity,
                                book_equity=others.capital + others.pnl + self.desk.pnl)
                outcome.alert_severities.append(severity)
                alerted = True
            else:
                alerted = False
            if self.desk.decisions % self._settings.checkpoint_every == 0:
                self.desk.checkpoint_features(self.engine.state_list() + list(self.history), tick_id, tick.ts_ns)
                checkpointed = True
            stamp = sent_ns_of(fields or {})
            if stamp is not None:
                outcome.sent_ns.append(stamp)
                if alerted:
                    outcome.alert_sent_ns.append(stamp)
        if self.desk is not None:
            outcome.events = list(self.desk.collect_events())
            if checkpointed:
                outcome.snapshot = self.desk.snapshot()
        outcome.figures = self._figures()
        return outcome

    def _figures(self) -> DeskFigures:
        if self.desk is None:
            return DeskFigures()
        return DeskFigures(self.desk.pnl, self.desk.day_pnl, self.desk.exposure)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value
