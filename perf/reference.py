"""Glassbox's sma-cross as the `backtesting` package runs it: the reference a backtest is checked against.

The same rule as :class:`aggregates.strategies.SmaCross` — at a strict
crossing of the simple moving averages of the closes, reverse into
``fraction`` of equity in whole units — with the same fills when run with
``trade_on_close=True`` (at the deciding bar's close).
"""

from __future__ import annotations

import math

import pandas as pd
from backtesting import Strategy
from backtesting.lib import crossover

__all__ = ["ReferenceSmaCross"]


def _sma(values, n: int) -> pd.Series:
    return pd.Series(values).rolling(n).mean()


class ReferenceSmaCross(Strategy):
    fast, slow, fraction = 10, 20, 0.95

    def init(self) -> None:
        self.fast_sma = self.I(_sma, self.data.Close, self.fast)
        self.slow_sma = self.I(_sma, self.data.Close, self.slow)

    def next(self) -> None:
        units = math.floor(self.fraction * self.equity / self.data.Close[-1])
        if crossover(self.fast_sma, self.slow_sma):
            self.position.close()
            self.buy(size=units)
        elif crossover(self.slow_sma, self.fast_sma):
            self.position.close()
            self.sell(size=units)
