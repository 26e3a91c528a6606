"""Ticks or bars a user brings, as a CSV or Parquet file, turned into time-ordered ticks.

Accepted columns (names in any case; extra columns are ignored):

- a time column: ``timestamp``, ``time``, ``date`` or ``datetime`` (else the
  first column), ISO-8601 text or a timestamp type; without a time zone it is UTC;
- bars: ``open``, ``high``, ``low``, ``close``, ``volume`` (four ticks per bar
  along its OHLC path, as the bundled data);
- or ticks: ``price`` and ``size`` (or ``volume``), optionally ``bid``, ``ask``;
- optionally ``symbol``; without it the file's name is the symbol
  (``aapl.parquet`` → ``AAPL``).

Values are checked again at ingest like every tick (a NaN price becomes a
dead letter with its reason); here a file that cannot be read as either
shape is refused with one message naming the file and the problem.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from edge.feeds import Bar, FeedError, bars_to_ticks
from edge.ticks import Tick

__all__ = ["UserData", "read_user_data"]

_TIME_COLUMNS = ("timestamp", "time", "date", "datetime")
_BAR_COLUMNS = ("open", "high", "low", "close", "volume")
_SYMBOL = re.compile(r"[A-Za-z0-9._-]{1,32}")


@dataclass(frozen=True)
class UserData:
    """A user's file as ticks in time order, and the symbols they trade."""

    path: Path
    symbols: list[str]
    ticks: list[Tick]
    shape: str
    """``bars`` or ``ticks``: how the file was read."""


def read_user_data(path: Path | str, ticks_per_bar: int = 4) -> UserData:
    """Read ``path`` (``.csv`` or ``.parquet``); bars become ``ticks_per_bar`` ticks each (4 or 1).

    Raises:
        FeedError: the file is missing, unreadable, or has neither bar nor tick columns.
    """
    path = Path(path)
    table = _read_table(path)
    columns = {name.strip().lower(): name for name in table.column_names}
    time_column = next((columns[c] for c in _TIME_COLUMNS if c in columns), table.column_names[0])
    stamps = _timestamps_ns(table.column(time_column), path)
    symbols = _symbols(table, columns, path)
    if all(c in columns for c in _BAR_COLUMNS):
        values = {c: _floats(table, columns[c], path) for c in _BAR_COLUMNS}
        per_symbol: dict[str, list[Bar]] = {}
        for i, symbol in enumerate(symbols):
            per_symbol.setdefault(symbol, []).append(Bar(stamps[i], *(values[c][i] for c in _BAR_COLUMNS)))
        streams = [bars_to_ticks(s, sorted(b, key=lambda bar: bar.ts_ns), ticks_per_bar) for s, b in per_symbol.items()]
        ticks = list(heapq.merge(*streams, key=lambda t: t.ts_ns))
        shape = "bars"
    elif "price" in columns and ("size" in columns or "volume" in columns):
        price = _floats(table, columns["price"], path)
        size = _floats(table, columns.get("size") or columns["volume"], path)
        bid = _floats(table, columns["bid"], path) if "bid" in columns else [None] * len(price)
        ask = _floats(table, columns["ask"], path) if "ask" in columns else [None] * len(price)
        ticks = sorted((Tick(symbols[i], stamps[i], price[i], size[i], bid[i], ask[i]) for i in range(len(price))),
                       key=lambda t: t.ts_ns)
        shape = "ticks"
    else:
        raise FeedError(f"{path}: expected bar columns ({', '.join(_BAR_COLUMNS)}) or tick columns (price, size); "
                        f"found {', '.join(table.column_names)}")
    if not ticks:
        raise FeedError(f"{path}: no rows")
    return UserData(path, sorted(set(symbols), key=symbols.index), ticks, shape)


def _read_table(path: Path) -> pa.Table:
    if not path.is_file():
        raise FeedError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pq.read_table(path)
        # Times stay text here: one parser below for every spelling the user may have used.
        return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in _TIME_COLUMNS + tuple(c.title() for c in _TIME_COLUMNS)}))
    except (pa.ArrowInvalid, OSError) as error:
        raise FeedError(f"{path}: unreadable as {'Parquet' if path.suffix.lower() == '.parquet' else 'CSV'}: "
                        f"{error}") from None


def _timestamps_ns(column: pa.ChunkedArray, path: Path) -> list[int]:
    try:
        if pa.types.is_timestamp(column.type):
            stamps = column if column.type.tz else pc.assume_timezone(column, "UTC")
        else:
            stamps = _parse_text_times(column, path)
        return [int(v) for v in pc.cast(stamps, pa.timestamp("ns", "UTC")).cast(pa.int64()).to_pylist()]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise FeedError(f"{path}: unreadable times in column {column!r}: {error}") from None


def _parse_text_times(column: pa.ChunkedArray, path: Path) -> pa.Array:
    parsed = []
    for row, text in enumerate(column.to_pylist(), start=1):
        try:
            stamp = datetime.fromisoformat(str(text).strip())
        except ValueError:
            raise FeedError(f"{path}: row {row}: {text!r} is not an ISO-8601 time") from None
        parsed.append(stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc))
    return pa.array(parsed, pa.timestamp("us", "UTC"))


def _floats(table: pa.Table, name: str, path: Path) -> list[float]:
    try:
        return pc.cast(table.column(name), pa.float64()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise FeedError(f"{path}: column {name!r} is not numeric: {error}") from None


def _symbols(table: pa.Table, columns: dict[str, str], path: Path) -> list[str]:
    if "symbol" in columns:
        symbols = [str(s) for s in table.column(columns["symbol"]).to_pylist()]
    else:
        symbols = [path.stem.upper()] * table.num_rows
    bad = next((s for s in symbols if not _SYMBOL.fullmatch(s)), None)
    if bad is not None:
        raise FeedError(f"{path}: {bad!r} is not a symbol (letters, digits, '.', '_', '-'; at most 32)")
    return symbols
