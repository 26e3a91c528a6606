"""A user's CSV or Parquet file of bars or ticks becomes time-ordered ticks; a bad one, one clear error."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge.feeds import FeedError, bars_to_ticks, bundled_bars
from edge.user_data import read_user_data


def test_bars_csv_like_the_bundled_ones(tmp_path: Path) -> None:
    path = tmp_path / "acme.csv"
    path.write_text(",Open,High,Low,Close,Volume\n2020-01-03,10,12,9,11,400\n2020-01-02,10,11,9.5,10.5,800\n")
    data = read_user_data(path)
    assert (data.symbols, data.shape, len(data.ticks)) == (["ACME"], "bars", 8)
    assert [t.ts_ns for t in data.ticks] == sorted(t.ts_ns for t in data.ticks)  # rows out of order: sorted
    assert data.ticks[0].price == 10.0 and data.ticks[0].size == 200.0


def test_the_bundled_goog_csv_reads_as_the_feed_reads_it(tmp_path: Path) -> None:
    from importlib import resources

    with resources.as_file(resources.files("backtesting.test").joinpath("GOOG.csv")) as path:
        data = read_user_data(path)
    assert data.ticks == list(bars_to_ticks("GOOG", bundled_bars("GOOG")))


def test_ticks_parquet_with_symbols_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "prints.parquet"
    pq.write_table(pa.table({
        "Symbol": ["AAA", "BBB", "AAA"],
        "timestamp": pa.array([3_000_000_000, 1_000_000_000, 2_000_000_000], pa.timestamp("ns")),
        "price": [1.5, 2.5, 1.25], "size": [10, 20, 30], "bid": [1.4, 2.4, 1.2], "ask": [1.6, 2.6, 1.3],
    }), path)
    data = read_user_data(path)
    assert (data.symbols, data.shape) == (["AAA", "BBB"], "ticks")
    assert [(t.symbol, t.ts_ns, t.price, t.bid) for t in data.ticks] == [
        ("BBB", 1_000_000_000, 2.5, 2.4), ("AAA", 2_000_000_000, 1.25, 1.2), ("AAA", 3_000_000_000, 1.5, 1.4)]


@pytest.mark.parametrize(("name", "text", "says"), [
    ("x.csv", "timestamp,open,close\n2020-01-01,1,2\n", "expected bar columns"),
    ("x.csv", "timestamp,price,size\nyesterday,1,2\n", "not an ISO-8601 time"),
    ("x.csv", "timestamp,price,size\n2020-01-01,cheap,2\n", "not numeric"),
    ("x.csv", "timestamp,price,size,symbol\n2020-01-01,1,2,BAD SYMBOL\n", "is not a symbol"),
    ("x.parquet", "not parquet at all", "unreadable as Parquet"),
    ("x.csv", "timestamp,price,size\n", "no rows"),
])
def test_a_bad_file_gets_one_message_naming_it(tmp_path: Path, name: str, text: str, says: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FeedError, match=says) as caught:
        read_user_data(path)
    assert str(path) in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="no such file"):
        read_user_data(tmp_path / "nope.csv")
