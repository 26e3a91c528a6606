"""Tick sources: real bundled market bars, and a seeded synthetic generator.

Bars become ticks by walking each bar's open → extreme → extreme → close with
a quarter of its volume at each point, a quarter of the bar's period apart:
the high is visited first on a down bar and the low first on an up bar (the
usual OHLC path convention), so the tick series is in time order and keeps
every bar's range.
"""

from __future__ import annotations

import csv
import heapq
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edge.ticks import Tick
from glassbox import GlassboxError

__all__ = [
    "BUNDLED_SYMBOLS",
    "Bar",
    "FeedError",
    "SyntheticFeed",
    "bars_to_ticks",
    "bundled_bars",
    "bundled_ticks",
    "read_bars_csv",
]

BUNDLED_SYMBOLS = ("GOOG", "EURUSD", "BTCUSD")
"""The real data sets the `backtesting` package ships: GOOG daily 2004-2013,
EURUSD hourly 2017-2018, BTCUSD monthly 2012-2024."""


class FeedError(GlassboxError):
    """A tick source that cannot be read; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar starting at ``ts_ns``."""

    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float


def read_bars_csv(path: Path | str) -> list[Bar]:
    """Read ``Date,Open,High,Low,Close,Volume`` bars (the first column is the time).

    Raises:
        FeedError: naming the file and line of anything unreadable.
    """
    bars: list[Bar] = []
    with open(path, newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None or [h.strip().lower() for h in header[1:6]] != [
            "open", "high", "low", "close", "volume"
        ]:
            raise FeedError(f"{path}: expected a header ',Open,High,Low,Close,Volume'")
        for line_no, row in enumerate(rows, start=2):
            try:
                stamp = datetime.fromisoformat(row[0])
                values = [float(v) for v in row[1:6]]
            except (ValueError, IndexError) as error:
                raise FeedError(f"{path}:{line_no}: unreadable bar {row!r}: {error}") from None
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=timezone.utc)
            bars.append(Bar(_to_ns(stamp), *values))
    return bars


def _to_ns(stamp: datetime) -> int:
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1_000


def bundled_bars(symbol: str) -> list[Bar]:
    """The real bars the `backtesting` package ships for ``symbol``.

    Raises:
        FeedError: for a symbol not in :data:`BUNDLED_SYMBOLS`.
    """
    if symbol not in BUNDLED_SYMBOLS:
        raise FeedError(f"no bundled data for {symbol!r}; choose one of {BUNDLED_SYMBOLS}")
    data = resources.files("backtesting.test").joinpath(f"{symbol}.csv")
    with resources.as_file(data) as path:
        return read_bars_csv(path)


def bars_to_ticks(symbol: str, bars: Sequence[Bar], ticks_per_bar: int = 4) -> Iterator[Tick]:
    """Four ticks per bar along its OHLC path, in time order; or (``ticks_per_bar=1``) one, its close.

    A single tick carries the bar's whole volume and the bar's own time, so a
    strategy deciding on it sees each bar once, complete, as a bar-based
    backtester does.
    """
    if ticks_per_bar not in (1, 4):
        raise FeedError(f"a bar becomes 1 tick (its close) or 4 (its OHLC path), not {ticks_per_bar}")
    if ticks_per_bar == 1:
        for bar in bars:
            yield Tick(symbol, bar.ts_ns, _number(bar.close), _number(bar.volume))
        return
    for i, bar in enumerate(bars):
        if i + 1 < len(bars):
            period = bars[i + 1].ts_ns - bar.ts_ns
        else:
            period = bar.ts_ns - bars[i - 1].ts_ns if i else 0
        step = max(period // 4, 1)
        o, h, low, c, v = (_number(x) for x in (bar.open, bar.high, bar.low, bar.close, bar.volume))
        first, second = (low, h) if c >= o else (h, low)
        for k, price in enumerate((o, first, second, c)):
            yield Tick(symbol, bar.ts_ns + k * step, price, v / 4.0)


def _number(value: float | None) -> float:
    # A missing value (an empty or "nan" cell) stays a NaN: the tick is then
    # refused at ingest with its reason, not dropped here without one.
    return float("nan") if value is None else float(value)


def bundled_ticks(symbols: Sequence[str] = BUNDLED_SYMBOLS) -> Iterator[Tick]:
    """Ticks of the bundled symbols merged into one stream in time order."""
    streams = [bars_to_ticks(s, bundled_bars(s)) for s in symbols]
    return heapq.merge(*streams, key=lambda t: t.ts_ns)


@dataclass(frozen=True)
class RegimeWalk:
    """Parameters of the synthetic regime-switching walk (per tick)."""

    drift: tuple[float, float, float] = (2e-4, -2e-4, 0.0)  # bull, bear, sideways
    volatility: tuple[float, float, float] = (1.0e-3, 1.5e-3, 0.5e-3)
    stay_probability: float = 0.995
    spread_bps: float = 2.0


class SyntheticFeed:
    """Seeded regime-switching random walks for any number of symbols.

    The same seed and symbols give the same ticks, whatever the rate they are
    replayed at: timestamps advance by ``1 / rate_per_symbol`` seconds of
    simulated time per tick.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        seed: int = 7,
        start_ns: int = 1_700_000_000 * 1_000_000_000,
        tick_interval_ns: int = 10_000_000,
        walk: RegimeWalk = RegimeWalk(),
    ) -> None:
        if not symbols:
            raise FeedError("a synthetic feed needs at least one symbol")
        self.symbols = list(symbols)
        self._rng = np.random.default_rng(seed)
        self._walk = walk
        self._interval = tick_interval_ns
        n = len(self.symbols)
        self._price = 50.0 + 150.0 * self._rng.random(n)
        self._regime = self._rng.integers(0, 3, n)
        self._ts = np.full(n, start_ns, dtype=np.int64)
        self._drift = np.array(walk.drift)
        self._vol = np.array(walk.volatility)

    @staticmethod
    def symbol_names(count: int) -> list[str]:
        """Names ``SYN000``, ``SYN001``, ... for ``count`` synthetic symbols."""
        return [f"SYN{i:03d}" for i in range(count)]

    def next_round(self) -> list[Tick]:
        """One tick for every symbol (vectorised: one random draw per field)."""
        n = len(self.symbols)
        switch = self._rng.random(n) > self._walk.stay_probability
        self._regime = np.where(switch, self._rng.integers(0, 3, n), self._regime)
        shocks = self._rng.standard_normal(n)
        returns = self._drift[self._regime] + self._vol[self._regime] * shocks
        self._price = self._price * np.exp(returns)
        self._ts = self._ts + self._interval
        sizes = np.round(self._rng.lognormal(3.0, 1.0, n), 2)
        half_spread = self._price * self._walk.spread_bps * 0.5e-4
        return [
            Tick(
                sym,
                int(self._ts[i]),
                float(round(self._price[i], 6)),
                float(sizes[i]),
                float(round(self._price[i] - half_spread[i], 6)),
                float(round(self._price[i] + half_spread[i], 6)),
            )
            for i, sym in enumerate(self.symbols)
        ]

    def ticks(self, rounds: int) -> Iterator[Tick]:
        """``rounds`` rounds of one tick per symbol."""
        for _ in range(rounds):
            yield from self.next_round()

