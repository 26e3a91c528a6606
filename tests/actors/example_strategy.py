"""A user's own strategy, as `glassbox backtest --strategy tests.actors.example_strategy:BuyTheDip` loads it."""

from __future__ import annotations

from aggregates.strategies import Strategy, hold


class BuyTheDip(Strategy):
    """Hold 10 units after any fall of more than 2 % from the previous price; flat after a rise of as much."""

    name = "buy-the-dip"

    def __init__(self) -> None:
        super().__init__(lookback=2)

    def decide(self, *, history, position, **_):
        if len(history) < 2:
            return hold()
        change = history[-1] / history[-2] - 1
        if change < -0.02:
            return self.rebalance(10.0, position)
        if change > 0.02:
            return self.rebalance(0.0, position)
        return hold()
