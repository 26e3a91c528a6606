"""Event time in a shard's reads: the times ticks carry, against the stream time Redis took them in.

A shard's cross-shard view is windowed in event time (see :mod:`actors.shard`):
these read both times off the entries of a read before any desk validated
them, so a garbage time must never move a window (:func:`newest_valid`).
"""

from __future__ import annotations

from typing import Any

from edge.tick_stream import StreamEntry
from edge.ticks import TickBounds

__all__ = ["Batches", "newest_lag_ms", "newest_valid", "stream_ms", "tick_ns", "time_runs"]

Batches = dict[str, list[StreamEntry]]
"""A read: each symbol's entries, in stream order."""


def stream_ms(entry_id: bytes) -> int:
    """The ms part of a stream entry id ``<ms>-<seq>``: when Redis took the tick in (stream time)."""
    return int(entry_id.split(b"-", 1)[0])


def time_runs(batches: Batches) -> list[tuple[str, list[StreamEntry]]]:
    """The batches' entries in tick-time order across the symbols, as runs of one symbol's consecutive entries.

    Each symbol's entries keep their stream order: a tick whose time is unreadable or earlier than
    the one before it (the desk dead-letters it) sorts with the one before. Ties keep the batches'
    order, so a backtest's cycles (:func:`actors.backtest.tick_batches`) run in the same order as a
    live read of the same ticks.
    """
    if all(len(entries) <= 1 for entries in batches.values()):
        return list(batches.items())
    keyed = []
    for rank, (symbol, entries) in enumerate(batches.items()):
        at = -1
        for n, (_, fields) in enumerate(entries):
            at = max(at, tick_ns(fields))
            keyed.append((at, rank, n, symbol))
    keyed.sort()
    runs: list[tuple[str, list[StreamEntry]]] = []
    for _, _, n, symbol in keyed:
        if runs and runs[-1][0] == symbol:
            runs[-1][1].append(batches[symbol][n])
        else:
            runs.append((symbol, [batches[symbol][n]]))
    return runs


def newest_lag_ms(batches: Batches, otherwise: int, bounds: TickBounds) -> int:
    """Stream time less event time (ms) of the newest entry of ``batches`` with a time the desks accept;
    ``otherwise`` when none has one."""
    newest = max(filter(None, (newest_valid(entries, bounds) for entries in batches.values())), default=None)
    return newest[0] - newest[1] // 1_000_000 if newest is not None else otherwise


def newest_valid(entries: Any, bounds: TickBounds) -> tuple[int, int] | None:
    """(stream ms, event ns) of the newest entry whose time the desks accept (``bounds``); None when none has.

    The entries are not validated yet: a garbage one (a time past int64, or years ahead) will be
    dead-lettered by its desk and must not move the book's event-time window meanwhile.
    """
    latest_ns = bounds.latest_ns()
    for entry_id, fields in reversed(entries):
        ns = tick_ns(fields)
        if bounds.earliest_ns <= ns <= latest_ns:
            return stream_ms(entry_id), ns
    return None


def tick_ns(fields: Any) -> int:
    """A tick's event time as its stream fields carry it; -1 when they do not (the desk says why)."""
    try:
        return int(fields[b"ts"])
    except (KeyError, TypeError, ValueError):
        return -1
