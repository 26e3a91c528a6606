"""Backtest sources: named, parsed with clear errors, cut to whole UTC days."""

from __future__ import annotations

from datetime import date

import pytest

from edge.feeds import FeedError
from edge.history import load_history, parse_source


def test_bundled_goog_cut_to_a_range_is_one_tick_per_bar_at_the_close() -> None:
    history = load_history(parse_source("bundled:GOOG"), date(2005, 1, 1), date(2012, 12, 31))
    assert history.symbols == ("GOOG",)
    assert len(history.ticks) == 2013
    first = history.ticks[0]
    assert (first.price, first.ts_ns) == (202.71, 1104710400 * 1_000_000_000)  # 2005-01-03's close
    assert len(load_history(parse_source("bundled:GOOG"), date(2005, 1, 3), date(2005, 1, 3), 4).ticks) == 4


def test_all_bundled_symbols_merge_in_time_order() -> None:
    history = load_history(parse_source("bundled"))
    assert set(history.symbols) == {"GOOG", "EURUSD", "BTCUSD"}
    stamps = [t.ts_ns for t in history.ticks]
    assert stamps == sorted(stamps)


def test_synthetic_is_seeded_and_spaced_as_asked() -> None:
    source = parse_source("synthetic", synthetic_symbols=3, synthetic_ticks=5, tick_interval_s=60, seed=4)
    a, b = load_history(source), load_history(source)
    assert a.ticks == b.ticks and len(a.ticks) == 15
    assert a.ticks[3].ts_ns - a.ticks[0].ts_ns == 60 * 1_000_000_000
    assert source.describe() == "synthetic:3x5@60s,seed=4"


@pytest.mark.parametrize("text,message", [
    ("bundled:AAPL", "no bundled data for AAPL"),
    ("nasdaq", "unknown source"),
    ("csv:/no/such/file.csv", "no such file"),
])
def test_bad_sources_are_refused_with_the_accepted_forms(text: str, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        load_history(parse_source(text))


def test_a_range_outside_the_data_says_what_the_data_covers() -> None:
    with pytest.raises(FeedError, match="covers 2004-08-19 to 2013-03-01"):
        load_history(parse_source("bundled:GOOG"), date(2020, 1, 1))
    with pytest.raises(FeedError, match="before --from"):
        load_history(parse_source("bundled:GOOG"), date(2010, 1, 1), date(2009, 1, 1))
