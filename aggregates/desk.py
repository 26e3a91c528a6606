"""The ``SymbolDesk`` aggregate: one per symbol, it decides and records why.

Every tick a desk sees becomes exactly one ``Trading.Decision.Taken`` event
(HOLD included), carrying everything forensics needs to reproduce it: the
tick, the feature vector, the regime probabilities, the strategy weights,
the model version and each risk check. Around it the desk records what else
happened: an order that broke a limit (``Risk.Check.Rejected``, followed by
the fill of what risk cut it to, if anything), a change of the most likely regime, a paper fill,
a repaired set of strategy weights, a checkpoint of the feature engine.

Stored topics are explicit and stable (``TOPIC``), never module paths, so
renaming Python code never orphans years of stored events; the wire name of
an event is its topic plus ``.v{class_version}``. Change an event's fields by
bumping ``class_version`` and adding an ``upcast_vN_vN+1`` static method.

No method here reads a clock: time comes from the tick (event time), which is
what lets a backtest run the same code as live trading.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Mapping, Sequence
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.utils import get_topic

from aggregates.blend import Action
from aggregates.ids import uuid5_text
from aggregates.risk import OthersView, RiskLimits
from aggregates.strategies import PolicyDecision, Strategy, through_risk

__all__ = ["SymbolDesk", "desk_id", "tick_order", "wire_name", "NS_PER_DAY"]

DESK_NAMESPACE = uuid5(NAMESPACE_URL, "https://glassbox.invalid/desk")
NS_PER_DAY = 86_400 * 1_000_000_000
V1_MIN_TRADE_FRACTION = 0.01
"""The no-trade band every ``Trading.Decision.Taken.v1`` of the regime-blend policy was decided with."""


def v1_min_trade_fraction(state: Mapping[str, Any]) -> float:
    """The band a ``Trading.Decision.Taken.v1`` (recorded without one) was decided with.

    v1 had no setting: the regime-blend policy (the one with a model) skipped
    rebalances under 1 % of equity; strategies without a model had no band.
    """
    return V1_MIN_TRADE_FRACTION if state.get("model_version") else 0.0

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def desk_id(symbol: str) -> UUID:
    """The stable aggregate id of a symbol's desk (the same in every process and run)."""
    return uuid5(DESK_NAMESPACE, symbol)


def wire_name(event: object) -> str:
    """``{Domain}.{Entity}.{Action}.v{N}`` for a desk event (class or instance)."""
    cls = event if isinstance(event, type) else type(event)
    return f"{cls.TOPIC}.v{getattr(cls, 'class_version', 1)}"  # type: ignore[attr-defined]


def _timestamp(ts_ns: int) -> datetime:
    # Seconds and µs given apart: the same datetime as timedelta(microseconds=...), built faster.
    seconds, micros = divmod(ts_ns // 1_000, 1_000_000)
    return _EPOCH + timedelta(0, seconds, micros)


def _floats(values: dict[str, float]) -> dict[str, float]:
    """Exact floats under str keys whatever a strategy returned (numpy scalars included): desk events are JSON_PLAIN.

    Most dicts already are (the regime-blend policy builds them so), and are copied as they are.
    """
    for k, v in values.items():
        if type(v) is not float or type(k) is not str:
            return {str(k): float(v) for k, v in values.items()}
    return dict(values)


@functools.cache
def _field_names(event_class: type[Any]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(event_class))


def tick_order(tick_id: str) -> tuple[int, int]:
    """A stream entry id ``<ms>-<seq>`` as a pair that orders numerically, as the ids do (not as strings)."""
    ms, _, seq = tick_id.partition("-")
    return int(ms), int(seq or 0)


class SymbolDesk(Aggregate):
    """Decides for one symbol and holds its paper position."""

    TOPIC: ClassVar[str] = "Trading.SymbolDesk"
    last_alert_ns: int = -1
    """Event time of the desk's last price alert (-1: none); a class default, so older snapshots load."""

    class Event(Aggregate.Event):
        """Fields every desk event carries besides id, version and timestamp.

        Every field of every desk event holds built-in JSON types only (str,
        int, float, bool, None, and lists and str-keyed dicts of them): the
        store then skips checking it (``JSON_PLAIN``, see
        :class:`edge.transcoding.PlainEventMapper`).
        """

        JSON_PLAIN: ClassVar[bool] = True

        correlation_id: str
        """Id of the tick that caused the event (its stream entry id)."""
        timestamp_ns: int
        """Event time in ns (the tick's time); ``timestamp`` holds it to the µs."""

    class Created(Aggregate.Created):
        TOPIC = "Trading.Desk.Opened"
        JSON_PLAIN: ClassVar[bool] = True
        symbol: str
        correlation_id: str
        timestamp_ns: int

    class DecisionTaken(Event):
        TOPIC = "Trading.Decision.Taken"
        decision_id: str
        symbol: str
        price: float
        size: float
        bid: float | None
        ask: float | None
        action: str
        quantity: float
        confidence: float
        probability_up: float
        score: float
        regime_probs: dict[str, float]
        regime_entropy: float
        strategy_weights: dict[str, float]
        specialist_margins: dict[str, float]
        features: list[float]
        model_version: str
        risk_passed: bool
        risk_checks: list[dict[str, Any]]
        min_trade_fraction: float
        """The policy's no-trade band: rebalances worth less than this fraction of equity are not placed."""
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["min_trade_fraction"] = v1_min_trade_fraction(state)

        def apply(self, desk: SymbolDesk) -> None:
            desk.last_tick_id = self.correlation_id
            desk.last_ts_ns = self.timestamp_ns
            desk.roll_day(self.timestamp_ns)
            desk.last_price = self.price
            desk.regime_probs = list(self.regime_probs.values())
            desk.decisions += 1

    class RiskRejected(Event):
        TOPIC = "Risk.Check.Rejected"
        decision_id: str
        symbol: str
        side: str
        requested_quantity: float
        max_quantity: float
        reasons: list[str]

    class RegimeChanged(Event):
        TOPIC = "Regime.Probabilities.Changed"
        symbol: str
        previous: str
        current: str
        regime_probs: dict[str, float]

        def apply(self, desk: SymbolDesk) -> None:
            desk.regime = self.current

    class OrderFilled(Event):
        TOPIC = "Trading.Order.Filled"
        class_version = 2
        decision_id: str
        symbol: str
        side: str
        quantity: float
        price: float
        """The fill price: the tick's price moved against the order by the slippage."""
        position_after: float
        commission: float

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["commission"] = 0.0  # v1 fills were free

        def apply(self, desk: SymbolDesk) -> None:
            signed = self.quantity if self.side == Action.BUY else -self.quantity
            desk.cash -= signed * self.price + self.commission
            desk.position = self.position_after

    class WeightsCorrected(Event):
        TOPIC = "Strategy.Weights.Corrected"
        symbol: str
        anomaly: str
        detail: str
        weights: list[float]

    class AlertTriggered(Event):
        TOPIC = "Risk.Alert.Triggered"
        symbol: str
        price: float
        reference_price: float
        """The window's low (a rise) or high (a fall) the price moved from."""
        move: float
        """price / reference_price - 1."""
        threshold: float
        window_s: float
        severity: str
        position: float
        exposure: float
        """|position × price| of the book in this symbol."""
        exposure_fraction: float | None
        """That exposure over the book's equity (None when the book has none left)."""

        def apply(self, desk: SymbolDesk) -> None:
            desk.last_alert_ns = self.timestamp_ns

    class FeaturesCheckpointed(Event):
        TOPIC = "Features.State.Checkpointed"
        state: list[float]

        def apply(self, desk: SymbolDesk) -> None:
            desk.feature_state = list(self.state)
            desk.feature_checkpoint_version = self.originator_version

    @staticmethod
    def create_id(symbol: str) -> UUID:
        return desk_id(symbol)

    @classmethod
    def open(cls, symbol: str, correlation_id: str, timestamp_ns: int) -> SymbolDesk:
        """A new desk for ``symbol``; its id is :func:`desk_id` of the symbol."""
        return cls._create(
            cls.Created,
            symbol=symbol,
            correlation_id=correlation_id,
            timestamp_ns=timestamp_ns,
            timestamp=_timestamp(timestamp_ns),
        )

    def __init__(self, symbol: str, correlation_id: str, timestamp_ns: int) -> None:
        self.symbol = symbol
        self.position = 0.0
        self.cash = 0.0
        self.last_price = 0.0
        self.last_tick_id = ""
        self.last_ts_ns = timestamp_ns
        self.day = timestamp_ns // NS_PER_DAY
        self.day_start_pnl = 0.0
        self.regime_probs: list[float] = []
        self.regime = ""
        self.decisions = 0
        self.feature_state: list[float] = []
        self.feature_checkpoint_version = 0

    # -- read-only views -------------------------------------------------

    @property
    def pnl(self) -> float:
        """Total P&L, marked at the last seen price."""
        return self.cash + self.position * self.last_price

    @property
    def day_pnl(self) -> float:
        """P&L since the start of this desk's current trading day (UTC, event time)."""
        return self.pnl - self.day_start_pnl

    @property
    def exposure(self) -> float:
        return abs(self.position * self.last_price)

    def roll_day(self, ts_ns: int) -> None:
        """Start a new trading day when event time crosses midnight UTC."""
        day = ts_ns // NS_PER_DAY
        if day != self.day:
            self.day = day
            self.day_start_pnl = self.pnl

    def has_seen(self, tick_id: str) -> bool:
        """Whether a tick with this id (or a later one) was already decided."""
        return bool(self.last_tick_id) and tick_order(tick_id) <= tick_order(self.last_tick_id)

    # -- commands ----------------------------------------------------------

    def decide(
        self,
        *,
        tick_id: str,
        ts_ns: int,
        price: float,
        size: float,
        bid: float | None,
        ask: float | None,
        features: Sequence[float],
        policy: Strategy,
        others: OthersView,
        limits: RiskLimits,
        history: Sequence[float] = (),
        view_skew_ms: float = 0.0,
    ) -> PolicyDecision:
        """Decide on one tick and record the decision and what follows from it.

        The caller has checked the tick is new (:meth:`has_seen`) and valid;
        ``history`` holds the symbol's last ``policy.lookback`` prices, this
        tick's last. Whatever the strategy proposes goes through the risk checks
        under ``limits`` (:func:`~aggregates.strategies.through_risk`); an order
        that passes fills at once, at the tick's price moved by the policy's
        slippage, paying its commission (see :mod:`aggregates.strategies`).
        """
        own_pnl = self.cash + self.position * price
        own_day_pnl = self._day_pnl_at(ts_ns, price)
        decision = through_risk(policy.decide(
            features=features,
            history=history,
            prior_regime_probs=self.regime_probs,
            price=price,
            position=self.position,
            own_pnl=own_pnl,
            own_day_pnl=own_day_pnl,
            others=others,
        ), price=price, position=self.position, own_pnl=own_pnl, own_day_pnl=own_day_pnl, others=others,
            limits=limits, min_trade_fraction=policy.min_trade_fraction, view_skew_ms=view_skew_ms)
        stamp = {
            "correlation_id": tick_id,
            "timestamp_ns": ts_ns,
            "timestamp": _timestamp(ts_ns),
        }
        decision_id = uuid5_text(self._id, tick_id)
        if decision.weights.anomaly is not None:
            self._emit(self.WeightsCorrected, {
                "symbol": self.symbol,
                "anomaly": decision.weights.anomaly,
                "detail": decision.weights.detail,
                "weights": list(decision.weights.weights),
                **stamp,
            })
        if self.regime != decision.regime:
            self._emit(self.RegimeChanged, {
                "symbol": self.symbol,
                "previous": self.regime,
                "current": decision.regime,
                "regime_probs": _floats(decision.regime_probs),
                **stamp,
            })
        risk = decision.risk
        self._emit(self.DecisionTaken, {
            "decision_id": decision_id,
            "symbol": self.symbol,
            "price": price,
            "size": size,
            "bid": bid,
            "ask": ask,
            "action": decision.action,
            "quantity": float(decision.quantity),
            "confidence": float(decision.blend.confidence),
            "probability_up": float(decision.blend.probability_up),
            "score": float(decision.blend.score),
            "regime_probs": _floats(decision.regime_probs),
            "regime_entropy": float(decision.regime_entropy),
            "strategy_weights": _floats(decision.strategy_weights),
            "specialist_margins": _floats(decision.specialist_margins),
            "features": features.tolist() if hasattr(features, "tolist") else [float(f) for f in features],
            "model_version": policy.model_version,
            "risk_passed": risk is None or risk.passed,
            "risk_checks": [] if risk is None else [c.as_dict() for c in risk.checks],
            "min_trade_fraction": float(policy.min_trade_fraction),
            **stamp,
        })
        if risk is not None and not risk.passed:
            self._emit(self.RiskRejected, {
                "decision_id": decision_id,
                "symbol": self.symbol,
                "side": decision.side,
                "requested_quantity": float(decision.requested_quantity),
                "max_quantity": float(risk.max_quantity),
                "reasons": list(risk.reasons),
                **stamp,
            })
        if decision.action != Action.HOLD:  # passed, or cut by risk to what passes
            signed = decision.quantity if decision.action == Action.BUY else -decision.quantity
            fill_price = policy.costs.fill_price(decision.action, price)
            self._emit(self.OrderFilled, {
                "decision_id": decision_id,
                "symbol": self.symbol,
                "side": decision.action,
                "quantity": float(decision.quantity),
                "price": fill_price,
                "position_after": self.position + signed,
                "commission": policy.costs.commission(decision.quantity, fill_price),
                **stamp,
            })
        return decision

    def _emit(self, event_class: type[Any], fields: dict[str, Any]) -> None:
        """What ``trigger_event`` does, without the frozen dataclass ``__init__`` (a tenth of its cost).

        That ``__init__`` sets each of a decision's ~25 fields through
        ``object.__setattr__``, several µs a tick; the event built here holds the
        same fields and compares equal (tests/aggregates/test_desk_events.py).
        ``fields`` must name every field of the class but the id and version,
        which are set here, as ``trigger_event`` sets them.
        """
        fields["originator_id"] = self._id
        fields["originator_version"] = self._version + 1
        if fields.keys() != _field_names(event_class):
            raise TypeError(f"{event_class.__qualname__} takes the fields {sorted(_field_names(event_class))}, "
                            f"not {sorted(fields)}")
        event = object.__new__(event_class)
        event.__dict__.update(fields)
        # What the event's ``mutate`` does (eventsourcing's CanMutateAggregate.mutate), without its
        # two checks, which hold by construction: the id and version were set just above.
        event.apply(self)
        self._version = fields["originator_version"]
        self._modified_on = fields["timestamp"]
        self._pending_events.append(event)

    def may_alert(self, ts_ns: int, window_ns: int) -> bool:
        """Whether a price alert may be raised now: none within the last window of event time."""
        return self.last_alert_ns < 0 or ts_ns - self.last_alert_ns >= window_ns

    def alert(self, *, tick_id: str, ts_ns: int, price: float, reference_price: float, move: float,
              threshold: float, window_s: float, severity: str, book_equity: float) -> None:
        """Record ``Risk.Alert.Triggered`` for this tick (committed in the same append as its decision)."""
        exposure = abs(self.position * price)
        self._emit(self.AlertTriggered, {
            "symbol": self.symbol, "price": price, "reference_price": reference_price, "move": move,
            "threshold": threshold, "window_s": window_s, "severity": severity, "position": self.position,
            "exposure": exposure, "exposure_fraction": exposure / book_equity if book_equity > 0 else None,
            "correlation_id": tick_id, "timestamp_ns": ts_ns, "timestamp": _timestamp(ts_ns),
        })

    def checkpoint_features(self, state: Sequence[float], tick_id: str, ts_ns: int) -> None:
        """Record the feature engine's whole state, so a restart replays only later ticks."""
        self.trigger_event(
            self.FeaturesCheckpointed,
            state=[float(v) for v in state],
            correlation_id=tick_id,
            timestamp_ns=ts_ns,
            timestamp=_timestamp(ts_ns),
        )

    def snapshot(self) -> Snapshot:
        """A snapshot of the desk stamped with its last event time, not the wall clock."""
        state = dict(vars(self))
        for private in ("_id", "_version", "_pending_events"):
            state.pop(private)
        return Snapshot(  # type: ignore[call-arg]
            originator_id=self.id,
            originator_version=self.version,
            timestamp=_timestamp(self.last_ts_ns),
            topic=get_topic(type(self)),
            state=state,
        )

    def _day_pnl_at(self, ts_ns: int, price: float) -> float:
        pnl = self.cash + self.position * price
        if ts_ns // NS_PER_DAY != self.day:
            return 0.0
        return pnl - self.day_start_pnl
