"""Tick streams no shard reads: found and emptied into the dead letters as ``unknown_symbol``.

A shard reads only the streams of the symbols it owns, so a raw ``XADD`` to
``{prefix}ticks:<a symbol nobody trades>`` (which bypasses the publisher's
``unknown_symbol`` check) would otherwise sit there unread for ever. The
sweeper finds such streams with ``SCAN MATCH {prefix}ticks:* TYPE stream``
(the dead-letter stream and the known symbols' streams left out) and moves
their entries to ``{prefix}ticks:dead`` with stage ``sweep``. Entries a
consumer group of the stream was already handed (a symbol traded by an
earlier run) are history, not strays, and stay.

Exactly once: each batch of dead letters and the ``XDEL`` of its entries are
one ``MULTI``/``EXEC`` under ``WATCH`` of the stream, so two sweepers (or a
producer adding meanwhile) cannot move one entry twice, and a crash moves it
either wholly or not at all.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable, Iterator

import redis

from edge.tick_stream import DeadLetters, TickKeys
from edge.ticks import BadTick, parse_tick_id

__all__ = ["SWEEP_EVERY_S", "SWEEP_STAGE", "StraySweeper", "sweep_stray_streams", "tick_streams"]

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 5.0
"""How often ``glassbox up``'s supervisor sweeps (one SCAN of the namespace: cheap)."""

SWEEP_STAGE = "sweep"
"""The stage of the dead letters the sweep writes (their entries are deleted from the stream)."""

_BATCH = 500


def sweep_stray_streams(client: redis.Redis, keys: TickKeys, symbols: Iterable[str]) -> int:
    """Dead-letter every undelivered entry of the namespace's tick streams outside ``symbols``; how many.

    Raises:
        redis.RedisError: when Redis cannot be reached (nothing is moved twice; sweep again later).
    """
    known = {keys.stream(s).encode() for s in symbols} | {keys.dead_letters.encode()}
    dead = DeadLetters(client, keys)
    moved = 0
    for name in tick_streams(client, keys):
        if name not in known:
            moved += _empty_stream(client, keys, dead, name)
    return moved


def tick_streams(client: redis.Redis, keys: TickKeys) -> Iterator[bytes]:
    """Every stream named ``{prefix}ticks:*`` (the dead-letter stream included), by ``SCAN``."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in keys.prefix) + "ticks:*"
    for name in client.scan_iter(match=pattern, count=1_000, _type="stream"):
        yield name if isinstance(name, bytes) else name.encode()


def _empty_stream(client: redis.Redis, keys: TickKeys, dead: DeadLetters, name: bytes) -> int:
    symbol = name[len(keys.prefix.encode()) + len(b"ticks:"):].decode("utf-8", "backslashreplace")
    error = BadTick("unknown_symbol", f"stream {name.decode('utf-8', 'backslashreplace')[:200]!r} "
                                      "belongs to no symbol this system trades")
    moved = 0
    while True:
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(name)
                start = _undelivered_from(pipe, name)
                entries = pipe.xrange(name, min=start, count=_BATCH)
                if not entries:
                    return moved
                pipe.multi()
                for entry_id, fields in entries:
                    dead.add(pipe, symbol, error, fields, SWEEP_STAGE, entry_id)
                pipe.xdel(name, *[entry_id for entry_id, _ in entries])
                pipe.execute()
            except redis.WatchError:
                continue  # the stream changed meanwhile: read it again
        moved += len(entries)
        log.warning("moved %d entries of stray stream %r to the dead letters", len(entries), name)


def _undelivered_from(pipe: redis.client.Pipeline, name: bytes) -> str:
    """``-`` or just past the newest entry any consumer group of the stream was handed."""
    last = None
    for group in pipe.xinfo_groups(name):
        delivered = group.get("last-delivered-id") or group.get(b"last-delivered-id")
        if delivered and (last is None or parse_tick_id(delivered) > parse_tick_id(last)):
            last = delivered
    if last is None or parse_tick_id(last) == (0, 0):
        return "-"
    return "(" + (last.decode() if isinstance(last, bytes) else last)


class StraySweeper:
    """Sweeps at most every ``every_s`` seconds, when :meth:`maybe_sweep` is called (a watch loop)."""

    def __init__(self, client: redis.Redis, keys: TickKeys, symbols: Iterable[str],
                 every_s: float = SWEEP_EVERY_S) -> None:
        self._client = client
        self._keys = keys
        self._symbols = list(symbols)
        self._every_s = every_s
        self._last = float("-inf")

    def maybe_sweep(self) -> int:
        """Sweep if it is time; entries moved (0 when Redis cannot answer now: it is tried again later)."""
        now = time.monotonic()
        if now - self._last < self._every_s:
            return 0
        self._last = now
        try:
            return sweep_stray_streams(self._client, self._keys, self._symbols)
        except redis.RedisError as error:
            log.warning("sweeping stray tick streams failed (%r); trying again in %g s", error, self._every_s)
            return 0
