"""Strategies are pure: the same history gives the same decision; fills pay the stated costs."""

from __future__ import annotations

import collections
import textwrap

import pytest

import aggregates.strategies
from aggregates.blend import Action
from aggregates.risk import OthersView
from aggregates.strategies import SmaCross, Strategy, TradingCosts

OTHERS = OthersView(capital=10_000.0)


def decide(strategy: SmaCross, history: list[float], position: float = 0.0, own_pnl: float = 0.0):
    return strategy.decide(features=[], history=history, prior_regime_probs=[], price=history[-1],
                           position=position, own_pnl=own_pnl, own_day_pnl=0.0, others=OTHERS)


def test_sma_cross_buys_whole_units_when_the_fast_average_crosses_above() -> None:
    strategy = SmaCross(fast=2, slow=3, fraction=0.5)
    # averages before the last price: fast (9+8)/2 = 8.5 < slow (10+9+8)/3 = 9; after: fast 10 > slow 9.67
    decision = decide(strategy, [10.0, 10.0, 9.0, 8.0, 12.0])
    assert (decision.action, decision.quantity) == (Action.BUY, 416.0)  # floor(0.5 * 10,000 / 12)
    assert decision.risk is None and decision.regime == ""


def test_sma_cross_reverses_a_long_into_a_short_in_one_order() -> None:
    strategy = SmaCross(fast=2, slow=3, fraction=0.5)
    decision = decide(strategy, [8.0, 8.0, 9.0, 10.0, 6.0], position=100.0)
    assert decision.action == Action.SELL
    assert decision.quantity == 100 + 833  # close 100, then short floor(0.5 * 10,000 / 6)


def test_sma_cross_holds_without_a_strict_crossing_or_enough_history() -> None:
    strategy = SmaCross(fast=2, slow=3)
    assert decide(strategy, [1.0, 2.0, 3.0]).action == Action.HOLD  # needs slow + 1 prices
    assert decide(strategy, [1.0, 2.0, 3.0, 4.0, 5.0]).action == Action.HOLD  # already above: no crossing
    assert decide(strategy, [2.0, 2.0, 2.0, 2.0, 2.0]).action == Action.HOLD  # equal is not a crossing


@pytest.mark.parametrize("fast,slow,fraction", [(0, 5, 0.5), (5, 5, 0.5), (3, 2, 0.5), (2, 3, 0.0), (2, 3, 1.5)])
def test_sma_cross_refuses_bad_parameters(fast: int, slow: int, fraction: float) -> None:
    with pytest.raises(ValueError):
        SmaCross(fast, slow, fraction)


def test_costs_move_the_price_against_the_order_and_charge_the_notional() -> None:
    costs = TradingCosts(commission_rate=0.001, slippage_bps=10)
    assert costs.fill_price(Action.BUY, 100.0) == pytest.approx(100.1)
    assert costs.fill_price(Action.SELL, 100.0) == pytest.approx(99.9)
    assert costs.commission(50, 100.1) == pytest.approx(5.005)
    with pytest.raises(ValueError):
        TradingCosts(commission_rate=-0.01)
    with pytest.raises(ValueError):
        TradingCosts(slippage_bps=float("nan"))


def test_a_strategy_of_your_own_needs_only_decide() -> None:
    class AlwaysLong(Strategy):
        name = "always-long"

        def decide(self, *, position: float, **_: object):
            return self.rebalance(target=10.0, position=position)

    strategy = AlwaysLong()
    first = strategy.decide(features=[], history=[], prior_regime_probs=[], price=1.0, position=0.0,
                            own_pnl=0.0, own_day_pnl=0.0, others=OTHERS)
    assert (first.action, first.quantity) == (Action.BUY, 10.0)
    assert strategy.rebalance(10.0, 10.0).action == Action.HOLD


def strategy_example_source() -> str:
    """The example module of ``aggregates/strategies.py``'s docstring, as a user would copy it into a file."""
    doc = aggregates.strategies.__doc__ or ""
    _, found, rest = doc.partition("in a module of your own::\n")
    assert found, "aggregates/strategies.py's docstring lost its example"
    return textwrap.dedent(rest.split("\nand run it", 1)[0])


def test_the_docstring_example_is_a_strategy_that_decides_on_the_desks_arguments() -> None:
    namespace: dict[str, object] = {}
    exec(compile(strategy_example_source(), "strategy_example", "exec"), namespace)
    cls = namespace["Momentum"]
    assert isinstance(cls, type) and issubclass(cls, Strategy) and cls.name == "momentum"
    strategy = cls()  # as --strategy module:Class builds it
    rising = collections.deque([float(p) for p in range(100, 151)], maxlen=strategy.lookback)  # desks pass a deque
    falling = collections.deque(reversed(rising), maxlen=strategy.lookback)

    def decide(history, position: float = 0.0):
        # every argument the desk passes (aggregates/desk.py), by keyword, and nothing else
        return strategy.decide(features=[0.0] * 20, history=history, prior_regime_probs=[1 / 3] * 3,
                               price=history[-1], position=position, own_pnl=0.0, own_day_pnl=0.0, others=OTHERS)

    assert decide(collections.deque([100.0, 101.0])).action == Action.HOLD  # not enough history yet
    buy = decide(rising)
    assert (buy.action, buy.quantity) == (Action.BUY, 33.0)  # floor(0.5 * 10,000 / 150)
    sell = decide(falling, position=33.0)
    assert (sell.action, sell.quantity) == (Action.SELL, 33.0)
    assert decide(falling).action == Action.HOLD  # already flat
