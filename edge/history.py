"""Historical ticks for a backtest: a named source, cut to a date range.

Sources:

- ``bundled`` (GOOG, EURUSD and BTCUSD) or ``bundled:GOOG`` (one or more,
  comma-separated): the real bars the ``backtesting`` package ships;
- ``synthetic``: the seeded regime-switching walk, ``symbols`` × ``ticks``
  ticks ``tick_interval_s`` apart;
- ``csv:PATH`` (or a path ending in ``.csv`` / ``.parquet``): a user's file
  of bars or ticks (see :mod:`edge.user_data`).

Bars become one tick each, at the bar's close (``ticks_per_bar=1``, the
default for backtests), or four along the OHLC path as ``glassbox up`` feeds
them (``ticks_per_bar=4``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from edge.feeds import (
    BUNDLED_SYMBOLS,
    FeedError,
    SyntheticFeed,
    bars_to_ticks,
    bundled_bars,
)
from edge.ticks import Tick
from edge.user_data import read_user_data

__all__ = ["History", "HistorySource", "load_history", "parse_source"]


@dataclass(frozen=True)
class HistorySource:
    """Where a backtest's ticks come from (parsed from ``--source``)."""

    kind: str
    """``bundled``, ``synthetic`` or ``file``."""
    symbols: tuple[str, ...] = ()
    path: Path | None = None
    synthetic_symbols: int = 100
    synthetic_ticks: int = 100_000
    tick_interval_s: float = 60.0
    seed: int = 7

    def describe(self) -> str:
        if self.kind == "bundled":
            return "bundled:" + ",".join(self.symbols)
        if self.kind == "file":
            return f"file:{self.path.name if self.path else ''}"
        return (f"synthetic:{self.synthetic_symbols}x{self.synthetic_ticks}"
                f"@{self.tick_interval_s:g}s,seed={self.seed}")


def parse_source(text: str, *, synthetic_symbols: int = 100, synthetic_ticks: int = 100_000,
                 tick_interval_s: float = 60.0, seed: int = 7) -> HistorySource:
    """Parse ``--source``.

    Raises:
        FeedError: for a source that names nothing known, with the accepted forms.
    """
    text = text.strip()
    if text == "bundled":
        return HistorySource("bundled", BUNDLED_SYMBOLS)
    if text.startswith("bundled:"):
        symbols = tuple(s.strip().upper() for s in text.removeprefix("bundled:").split(",") if s.strip())
        unknown = [s for s in symbols if s not in BUNDLED_SYMBOLS]
        if not symbols or unknown:
            raise FeedError(f"no bundled data for {', '.join(unknown) or 'nothing'}; "
                            f"choose from {', '.join(BUNDLED_SYMBOLS)} (e.g. bundled:GOOG)")
        return HistorySource("bundled", symbols)
    if text == "synthetic":
        if synthetic_symbols < 1 or synthetic_ticks < 1 or not tick_interval_s > 0:
            raise FeedError("a synthetic source needs >= 1 symbol, >= 1 tick and a positive tick interval")
        return HistorySource("synthetic", synthetic_symbols=synthetic_symbols, synthetic_ticks=synthetic_ticks,
                             tick_interval_s=tick_interval_s, seed=seed)
    path_text = text.removeprefix("csv:").removeprefix("file:")
    if text.startswith(("csv:", "file:")) or path_text.lower().endswith((".csv", ".parquet")):
        return HistorySource("file", path=Path(path_text))
    raise FeedError(f"unknown source {text!r}: use bundled, bundled:GOOG, synthetic, or csv:PATH "
                    "(a .csv or .parquet file of bars or ticks)")


@dataclass(frozen=True)
class History:
    """A backtest's input: ticks in time order and the symbols they cover."""

    source: HistorySource
    symbols: tuple[str, ...]
    ticks: list[Tick]

    @property
    def start_ns(self) -> int:
        return self.ticks[0].ts_ns

    @property
    def end_ns(self) -> int:
        return self.ticks[-1].ts_ns


def load_history(source: HistorySource, start: date | None = None, end: date | None = None,
                 ticks_per_bar: int = 1) -> History:
    """The source's ticks from ``start`` through ``end`` (whole UTC days, both included).

    Raises:
        FeedError: when the source cannot be read, or nothing falls in the range.
    """
    if start is not None and end is not None and end < start:
        raise FeedError(f"--to {end} is before --from {start}")
    if source.kind == "bundled":
        streams = [bars_to_ticks(s, bundled_bars(s), ticks_per_bar) for s in source.symbols]
        ticks = list(heapq.merge(*streams, key=lambda t: t.ts_ns))
    elif source.kind == "file":
        assert source.path is not None
        ticks = read_user_data(source.path, ticks_per_bar).ticks
    else:
        feed = SyntheticFeed(SyntheticFeed.symbol_names(source.synthetic_symbols), seed=source.seed,
                             tick_interval_ns=int(source.tick_interval_s * 1e9))
        ticks = list(feed.ticks(source.synthetic_ticks))
    low = _day_ns(start) if start else None
    high = _day_ns(end) + 86_400 * 1_000_000_000 if end else None
    chosen = [t for t in ticks if (low is None or t.ts_ns >= low) and (high is None or t.ts_ns < high)]
    if not chosen:
        first, last = (_day(ticks[0].ts_ns), _day(ticks[-1].ts_ns)) if ticks else ("-", "-")
        raise FeedError(f"{source.describe()} has no data from {start or 'the start'} to {end or 'the end'}; "
                        f"it covers {first} to {last}")
    if chosen[0].ts_ns < 0:
        raise FeedError(f"{source.describe()} has ticks before 1970, which a tick id cannot name")
    symbols = tuple(sorted({t.symbol for t in chosen}))
    return History(source, symbols, chosen)


def _day_ns(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1_000_000_000


def _day(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).date().isoformat()
