"""The decision policy: regime filter → specialists → blend → sizing (the desk then applies risk).

A pure function of a feature vector, the desk's prior regime probabilities
and position, and a view of the rest of the portfolio. It holds no state of
its own, so the same inputs always give the same decision (live, replay and
backtest alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from aggregates.blend import (
    Action,
    Blend,
    BlendThresholds,
    WeightCheck,
    blend,
    validate_weights,
)
from aggregates.errors import FeatureMismatch
from aggregates.policy_kernel import (
    CONFIDENCE,
    CORE_SIZE,
    DIRECTION,
    ENTROPY,
    OK,
    PROBABILITY_UP,
    SCORE,
    STATUS,
    policy_core,
)
from aggregates.frozen import built as _built
from aggregates.regime import REGIMES, RegimeModel
from aggregates.risk import OthersView
from aggregates.specialists import SpecialistSet
from aggregates.strategies import PolicyDecision, Strategy, TradingCosts

__all__ = ["DecisionPolicy", "PolicyDecision", "Sizing"]

RETURN_FEATURE = "ret_1"
VOLATILITY_FEATURE = "ewma_vol"


@dataclass(frozen=True)
class Sizing:
    """How big a position a view earns."""

    target_fraction: float = 0.2
    """Target |position value| as a fraction of portfolio equity when the blend has a view."""
    min_trade_fraction: float = 0.01
    """The no-trade band: skip rebalances smaller than this fraction of equity (they cost more than
    they move); ``GLASSBOX_MIN_TRADE_FRACTION`` sets it, every decision records it."""

    def __post_init__(self) -> None:
        if not (0 < self.target_fraction <= 10 and 0 <= self.min_trade_fraction < 1):
            raise ValueError(f"sizing fractions out of range: {self}")


class DecisionPolicy(Strategy):
    """The regime-blend policy over one deployed set of specialist models (``--strategy regime-blend``)."""

    name = "regime-blend"

    def __init__(
        self,
        specialists: SpecialistSet,
        regime_model: RegimeModel | None = None,
        thresholds: BlendThresholds | None = None,
        sizing: Sizing | None = None,
        costs: TradingCosts | None = None,
    ) -> None:
        super().__init__(lookback=0, costs=costs)
        self.specialists = specialists
        self.regime_model = regime_model or RegimeModel()
        self.thresholds = thresholds or BlendThresholds()
        self.sizing = sizing or Sizing()
        names = list(specialists.feature_names)
        self._return_index = names.index(RETURN_FEATURE)
        self._volatility_index = names.index(VOLATILITY_FEATURE)
        self._trans = np.ascontiguousarray(self.regime_model.transition, dtype=np.float64)
        self._means = np.ascontiguousarray(self.regime_model.means, dtype=np.float64)
        self._stds = np.ascontiguousarray(self.regime_model.stds, dtype=np.float64)
        self._initial = np.ascontiguousarray(self.regime_model.initial, dtype=np.float64)
        self._forests = specialists.kernel_arrays()
        self._shape = (len(names),)

    @property
    def model_version(self) -> str:  # type: ignore[override]
        return self.specialists.version

    @property
    def min_trade_fraction(self) -> float:  # type: ignore[override]
        return self.sizing.min_trade_fraction

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model_version": self.model_version}

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.specialists.feature_names)

    def decide(
        self,
        *,
        features: Sequence[float],
        history: Sequence[float] = (),
        prior_regime_probs: Sequence[float],
        price: float,
        position: float,
        own_pnl: float,
        own_day_pnl: float,
        others: OthersView,
    ) -> PolicyDecision:
        """Decide for one tick; see :class:`PolicyDecision`.

        Regime step, margins and blend are one compiled call (:func:`policy_core`);
        the rare tick whose weights need repairing, or whose blend is not finite,
        is blended here in Python (:func:`validate_weights`, :func:`blend`), which
        says why. The figures are the same either way (tests/aggregates/test_policy_kernel.py).
        """
        x = np.asarray(features, dtype=np.float64)
        if x.shape != self._shape:
            raise FeatureMismatch(f"the policy takes {self._shape[0]} features, got an array of shape {x.shape}")
        prior = np.asarray(prior_regime_probs, dtype=np.float64) if len(prior_regime_probs) else self._initial
        out = np.empty(CORE_SIZE, dtype=np.float64)
        policy_core(prior, x, self._return_index, self._volatility_index, self._trans, self._means, self._stds,
                    *self._forests, self.thresholds.entry_edge, out)
        figures = out.tolist()
        prob_list = figures[0:3]
        margin_list = figures[4:7]
        if figures[STATUS] == OK:
            weights = _built(WeightCheck, {"weights": tuple(prob_list), "anomaly": None, "detail": ""})
            blended = _built(Blend, {"score": figures[SCORE], "probability_up": figures[PROBABILITY_UP],
                                     "confidence": figures[CONFIDENCE], "direction": int(figures[DIRECTION])})
        else:
            weights = validate_weights(prob_list)
            blended = blend(margin_list, weights.weights, self.thresholds)
        equity = others.capital + others.pnl + own_pnl
        side, quantity = self._order(blended.direction, equity, price, position)
        return _built(PolicyDecision, {
            "regime": REGIMES[_first_max(prob_list)],
            "regime_probs": dict(zip(REGIMES, prob_list)),
            "regime_entropy": figures[ENTROPY],
            "weights": weights,
            "strategy_weights": dict(zip(REGIMES, weights.weights)),
            "specialist_margins": dict(zip(REGIMES, margin_list)),
            "blend": blended,
            "action": side,
            "side": side,
            "requested_quantity": quantity,
            "quantity": quantity,
            "risk": None,
        })

    def _order(self, direction: int, equity: float, price: float, position: float) -> tuple[str, float]:
        if direction == 0 or equity <= 0:
            return Action.HOLD, 0.0
        target = direction * self.sizing.target_fraction * equity / price
        delta = target - position
        if abs(delta) * price < self.sizing.min_trade_fraction * equity:
            return Action.HOLD, 0.0
        return (Action.BUY if delta > 0 else Action.SELL), round(abs(delta), 6)


def _first_max(values: list[float]) -> int:
    """``np.argmax`` of a short list without the NumPy call: the first largest, or the first NaN."""
    best = 0
    for i, v in enumerate(values):
        if v != v:
            return i
        if v > values[best]:
            best = i
    return best
