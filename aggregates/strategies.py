"""Decision strategies a desk can run, chosen by name, and the interface for your own.

A strategy is what a desk asks on every tick: given the tick's price, the
feature vector, the last ``lookback`` prices of the symbol (the current one
last), the desk's position and P&L and a view of the other desks, it returns
a :class:`~aggregates.policy.PolicyDecision`. The desk puts every order it
proposes through the same pre-trade risk checks (:func:`through_risk`:
concentration, leverage and daily loss on the whole book), which pass it, cut
it to what the limits allow or refuse it, records the outcome and fills what
passed: a strategy, built-in or your own, cannot trade around the limits,
live or in a backtest. Strategies are pure: no clock, no I/O, no state of their own between
calls — whatever they remember must come from their inputs, which is what
lets a restart, a replay and a backtest reproduce every decision.

Fills follow one convention, live and in backtests: an order fills on the
tick that decided it, at that tick's price moved against the trader by
``slippage_bps``, and pays ``commission_rate`` of its notional. On bar data
fed one tick per bar (the backtest default) that is the bar's close — the
``backtesting`` package's ``trade_on_close=True``.

Write your own by subclassing :class:`Strategy`, in a module of your own::

    import math

    from aggregates.strategies import PolicyDecision, Strategy, hold


    class Momentum(Strategy):
        "Long a fraction of the equity while the price is above its price `window` ticks ago; flat otherwise."

        name = "momentum"

        def __init__(self, window: int = 50, fraction: float = 0.5) -> None:
            super().__init__(lookback=window + 1)
            self.fraction = fraction

        def decide(self, *, price, history, position, own_pnl, others, **_) -> PolicyDecision:
            if len(history) < self.lookback:
                return hold()
            equity = others.capital + others.pnl + own_pnl  # the whole book's, as this desk sees it
            rising = history[-1] > history[0]
            target = math.floor(self.fraction * equity / price) if rising and equity > 0 else 0
            return self.rebalance(target, position)

and run it with ``glassbox backtest --strategy mypackage.module:Momentum``
(``tests/test_readme_examples.py`` runs this very example). ``decide`` gets
keyword arguments only — those of :meth:`Strategy.decide`; take the ones you
need and ``**_`` for the rest. ``--strategy`` builds the class with no
arguments, so give every parameter a default, and sets its ``costs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from aggregates.blend import Action, Blend, WeightCheck
from aggregates.frozen import built
from aggregates.risk import HALTED_HOLD, OthersView, RiskAssessment, RiskLimits, assess_order

__all__ = ["PolicyDecision", "Strategy", "SmaCross", "TradingCosts", "hold", "order", "through_risk"]


@dataclass(frozen=True)
class TradingCosts:
    """What a fill costs besides its price."""

    commission_rate: float = 0.0
    """Fraction of each fill's notional paid as commission (0.001 = 10 bps)."""
    slippage_bps: float = 0.0
    """Basis points the fill price moves against the order (buys pay more, sells get less)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.commission_rate) and 0 <= self.commission_rate < 0.1):
            raise ValueError(f"commission_rate must be in [0, 0.1), got {self.commission_rate!r}")
        if not (math.isfinite(self.slippage_bps) and 0 <= self.slippage_bps < 1_000):
            raise ValueError(f"slippage_bps must be in [0, 1000), got {self.slippage_bps!r}")

    def fill_price(self, side: str, price: float) -> float:
        move = self.slippage_bps / 10_000.0
        return price * (1 + move) if side == Action.BUY else price * (1 - move)

    def commission(self, quantity: float, fill_price: float) -> float:
        return self.commission_rate * abs(quantity) * fill_price


@dataclass(frozen=True)
class PolicyDecision:
    """Everything the policy concluded for one tick, ready to be recorded."""

    regime: str
    regime_probs: dict[str, float]
    regime_entropy: float
    weights: WeightCheck
    strategy_weights: dict[str, float]
    specialist_margins: dict[str, float]
    blend: Blend
    action: str
    """BUY, SELL or HOLD as executed (an order risk refused is a HOLD; one it cut keeps its side)."""
    side: str
    """BUY or SELL as proposed, HOLD when nothing was proposed."""
    requested_quantity: float
    quantity: float
    """Quantity executed: the requested one, the cut one, or 0 for HOLD and refusals."""
    risk: RiskAssessment | None = field(default=None)
    """The pre-trade checks of the proposed order (None when nothing was proposed); set by :func:`through_risk`."""

    @property
    def rejected(self) -> bool:
        """Whether the proposed order broke a limit (it was then cut or refused)."""
        return self.risk is not None and not self.risk.passed

    @property
    def cut(self) -> bool:
        """Whether risk cut the proposed order to a smaller one that passes."""
        return self.rejected and self.quantity > 0



_NO_WEIGHTS = WeightCheck(())
_NO_BLEND = Blend(score=0.0, probability_up=0.5, confidence=0.0, direction=0)


def hold() -> PolicyDecision:
    """A decision to do nothing, for strategies without regimes or a model."""
    return _HOLD


def order(side: str, quantity: float, direction: int = 0) -> PolicyDecision:
    """A proposed order, for strategies without regimes or a model (the desk checks it, :func:`through_risk`)."""
    executed = side if quantity > 0 else Action.HOLD
    return PolicyDecision(
        regime="",
        regime_probs={},
        regime_entropy=0.0,
        weights=_NO_WEIGHTS,
        strategy_weights={},
        specialist_margins={},
        blend=Blend(0.0, 0.5, 0.0, direction) if direction else _NO_BLEND,
        action=executed,
        side=executed,
        requested_quantity=quantity if executed != Action.HOLD else 0.0,
        quantity=quantity if executed != Action.HOLD else 0.0,
    )


_HOLD = order(Action.HOLD, 0.0)  # decisions are frozen: one HOLD serves every tick


def through_risk(decision: PolicyDecision, *, price: float, position: float, own_pnl: float,
                 own_day_pnl: float, others: OthersView, limits: RiskLimits,
                 min_trade_fraction: float = 0.0, view_skew_ms: float = 0.0) -> PolicyDecision:
    """``decision`` with its proposed order checked: passed, cut to what passes, or refused.

    Every strategy's proposal goes through here (the desk calls it); a HOLD proposes nothing and is
    returned as it is. An order that would break a limit is **cut** to the largest quantity every
    check passes (rounded down to whole units when the order was in whole units, else to µ-units), or
    **refused** (a HOLD) when that is nothing or worth
    less than ``min_trade_fraction`` of the book's equity (the strategy's no-trade band). Either way
    the desk records a ``Risk.Check.Rejected.v1`` with the reasons and that largest quantity, and
    ``risk`` holds the checks of the order as proposed.

    During a halt (``others.halted``) only orders that close part of a position pass, every decision
    carries the ``trading_halted`` check, and with ``others.flatten`` the desk's proposal is replaced by
    the order that closes its whole position. ``view_skew_ms`` is the order's distance from the view
    (:func:`aggregates.risk.view_skew_ms`).
    """
    if others.flatten and position != 0:
        decision = _closing(decision, position)
    if decision.side == Action.HOLD or decision.requested_quantity <= 0:
        if others.halted:
            fields = dict(vars(decision))
            fields["risk"] = HALTED_HOLD
            return built(PolicyDecision, fields)
        return decision
    risk = assess_order(1 if decision.side == Action.BUY else -1, decision.requested_quantity, price, position,
                        own_pnl, own_day_pnl, others, limits, view_skew_ms)
    fields = dict(vars(decision))
    fields["risk"] = risk
    if not risk.passed:
        # Whole units stay whole (a strategy trading shares asked for whole ones); else µ-units.
        step = 1.0 if float(decision.requested_quantity).is_integer() else 1e-6
        cut = math.floor(min(risk.max_quantity, decision.requested_quantity) / step) * step
        equity = others.capital + others.pnl + own_pnl
        if cut > 0 and cut * price >= min_trade_fraction * equity:
            fields["quantity"] = cut
        else:
            fields["action"] = Action.HOLD
            fields["quantity"] = 0.0
    # Built without the frozen __init__: one a proposed order, equal to dataclasses.replace(...).
    return built(PolicyDecision, fields)


def _closing(decision: PolicyDecision, position: float) -> PolicyDecision:
    """``decision`` proposing instead the order that takes ``position`` to zero (a flattening halt)."""
    fields = dict(vars(decision))
    side = Action.SELL if position > 0 else Action.BUY
    fields.update(action=side, side=side, requested_quantity=abs(position), quantity=abs(position))
    return built(PolicyDecision, fields)


class Strategy:
    """The interface a desk decides through; subclass it for your own strategy.

    Class attribute ``name`` is what ``--strategy`` calls it. ``lookback`` is
    how many recent prices of the symbol ``decide`` gets in ``history``
    (0: none). ``model_version`` names the model whose forensics explain the
    decisions ("" for strategies without one: they get no SHAP forensics).
    """

    name: ClassVar[str] = ""
    model_version: str = ""
    min_trade_fraction: float = 0.0
    """The no-trade band: rebalances worth less than this fraction of equity are not placed (0: none).

    Recorded in every decision, so an explanation of a HOLD inside the band stays exact."""

    def __init__(self, lookback: int = 0, costs: TradingCosts | None = None) -> None:
        if lookback < 0:
            raise ValueError(f"lookback must be >= 0, got {lookback}")
        self.lookback = lookback
        self.costs = costs or TradingCosts()

    def decide(
        self,
        *,
        features: Sequence[float],
        history: Sequence[float],
        prior_regime_probs: Sequence[float],
        price: float,
        position: float,
        own_pnl: float,
        own_day_pnl: float,
        others: OthersView,
    ) -> PolicyDecision:
        """The decision for one tick (see the module docstring)."""
        raise NotImplementedError

    @staticmethod
    def rebalance(target: float, position: float) -> PolicyDecision:
        """The order that takes ``position`` to ``target`` (HOLD when they are equal)."""
        delta = target - position
        if delta == 0:
            return hold()
        return order(Action.BUY if delta > 0 else Action.SELL, abs(delta), 1 if delta > 0 else -1)

    def describe(self) -> dict[str, Any]:
        """Name and parameters, as recorded with a backtest's results."""
        return {"name": self.name}


class SmaCross(Strategy):
    """Long when the fast simple moving average crosses above the slow one, short when below.

    At a crossing the desk goes to ``fraction`` of its equity in whole units
    (long or short); between crossings it holds. The averages are of the
    last ``fast`` and ``slow`` prices, the current one included, and a
    crossing is strict on both sides (fast below then above, or the
    reverse), as in the ``backtesting`` package's ``crossover``.
    """

    name = "sma-cross"

    def __init__(self, fast: int = 10, slow: int = 20, fraction: float = 0.95,
                 costs: TradingCosts | None = None) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"sma-cross needs 1 <= fast < slow, got fast={fast} slow={slow}")
        if not (math.isfinite(fraction) and 0 < fraction <= 1):
            raise ValueError(f"sma-cross fraction must be in (0, 1], got {fraction!r}")
        super().__init__(lookback=slow + 1, costs=costs)
        self.fast, self.slow, self.fraction = fast, slow, fraction
        self.model_version = ""

    def decide(self, *, history: Sequence[float], price: float, position: float,
               own_pnl: float, others: OthersView, **_: Any) -> PolicyDecision:
        if len(history) < self.slow + 1:
            return hold()
        prices = list(history)  # history may be a deque, which does not slice
        fast_now, slow_now = _mean(prices, self.fast, 0), _mean(prices, self.slow, 0)
        fast_before, slow_before = _mean(prices, self.fast, 1), _mean(prices, self.slow, 1)
        if fast_before < slow_before and fast_now > slow_now:
            direction = 1
        elif fast_before > slow_before and fast_now < slow_now:
            direction = -1
        else:
            return hold()
        equity = others.capital + others.pnl + own_pnl
        units = math.floor(self.fraction * equity / price) if equity > 0 else 0
        return self.rebalance(direction * units, position)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "fast": self.fast, "slow": self.slow, "fraction": self.fraction}


def _mean(prices: list[float], window: int, back: int) -> float:
    end = len(prices) - back
    return math.fsum(prices[end - window:end]) / window
