"""Tick streams in Redis: publishing, consumer-group reading, acking, dead letters.

Each symbol has one stream ``{prefix}ticks:{symbol}``. Desks read them through
one consumer group; a shard's reader asks for all its symbols in one
``XREADGROUP`` call so a whole batch crosses the network in one round trip.
Ticks that break a rule go to ``{prefix}ticks:dead`` with their reason and
are counted per reason in ``{prefix}ticks:dead:count``; nothing bad reaches a
decision and nothing good is dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Sequence

import redis

from edge.shared_book import SharedBook, ShardBook
from edge.ticks import BadTick, Tick, TickBounds, encode_tick, short_repr, validate_tick

__all__ = [
    "DeadLetters",
    "PublishReport",
    "StreamEntry",
    "TickKeys",
    "TickPublisher",
    "TickReader",
]

StreamEntry = tuple[bytes, dict[bytes, bytes]]
"""One stream entry as redis-py returns it: (entry id, fields)."""


@dataclass(frozen=True)
class TickKeys:
    """Key names of one tick namespace (a prefix isolates tests and backtests)."""

    prefix: str = ""

    def stream(self, symbol: str) -> str:
        return f"{self.prefix}ticks:{symbol}"

    def symbol_of(self, stream: bytes | str) -> str:
        name = stream.decode() if isinstance(stream, bytes) else stream
        return name[len(self.prefix) + len("ticks:") :]

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}ticks:dead"

    @property
    def dead_letter_counts(self) -> str:
        return f"{self.prefix}ticks:dead:count"

    def feed_offset(self, feed: str) -> str:
        """Where a replayed feed called ``feed`` keeps how far it has published (it resumes there)."""
        return f"{self.prefix}feed:{feed}:offset"


class DeadLetters:
    """Records rejected ticks with their reason, and counts them per reason."""

    def __init__(self, client: redis.Redis, keys: TickKeys) -> None:
        self._client = client
        self._keys = keys

    def add(
        self,
        pipe: redis.client.Pipeline,
        symbol: str,
        error: BadTick,
        payload: Mapping[bytes, bytes] | None,
        stage: str,
        entry_id: bytes | None = None,
    ) -> None:
        """Queue one dead letter on ``pipe`` (the caller executes it with its other writes)."""
        entry = {
            b"symbol": (symbol if isinstance(symbol, str) else short_repr(symbol)).encode(
                "utf-8", "backslashreplace")[:200],
            b"code": error.code.encode(),
            b"reason": error.detail.encode("utf-8", "backslashreplace")[:1000],
            b"stage": stage.encode(),
            b"payload": _describe_payload(payload),
        }
        if entry_id is not None:
            entry[b"entry_id"] = entry_id
        pipe.xadd(self._keys.dead_letters, entry)
        pipe.hincrby(self._keys.dead_letter_counts, error.code, 1)

    def counts(self) -> dict[str, int]:
        """Dead letters recorded so far, per reason code."""
        raw = self._client.hgetall(self._keys.dead_letter_counts)
        return {k.decode(): int(v) for k, v in raw.items()}

    def entries(self, count: int = 100) -> list[dict[str, str]]:
        """The most recent dead letters, oldest first."""
        rows = self._client.xrevrange(self._keys.dead_letters, count=count)
        return [
            {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
            for _, fields in reversed(rows)
        ]


def _describe_payload(payload: Mapping[bytes, bytes] | None) -> bytes:
    if payload is None:
        return b""
    return b" ".join(k + b"=" + v for k, v in payload.items())[:2000]


@dataclass
class PublishReport:
    """What one publish call did."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class TickPublisher:
    """Validates ticks at the edge and appends the good ones to their streams.

    A tick of a symbol outside ``symbols``, with values outside ``bounds``, or
    older than the last one published for its symbol goes to the dead-letter
    stream instead. One call is one pipelined round trip however many ticks it
    carries.
    """

    def __init__(
        self, client: redis.Redis, keys: TickKeys, symbols: Iterable[str], bounds: TickBounds = TickBounds(),
    ) -> None:
        self._client = client
        self._keys = keys
        self._symbols = frozenset(symbols)
        self._bounds = bounds
        self._last_ts: dict[str, int] = {}
        self._dead = DeadLetters(client, keys)

    def publish(
        self, ticks: Iterable[Tick], stamp: bool = True, mark: tuple[str, int] | None = None
    ) -> PublishReport:
        """Append ``ticks`` in order; ``stamp`` adds the wall-clock send time for latency metrics.

        ``mark`` (key, value) is SET in the same transaction as the ticks, so
        a feed that records its offset there resumes exactly where it stopped.
        """
        report = PublishReport()
        pipe = self._client.pipeline(transaction=mark is not None)
        if mark is not None:
            pipe.set(*mark)
        latest_ns = self._bounds.latest_ns()
        for tick in ticks:
            try:
                self._check(tick, latest_ns)
            except BadTick as error:
                self._dead.add(pipe, tick.symbol, error, _fields_of(tick), "ingest")
                report.rejected[error.code] = report.rejected.get(error.code, 0) + 1
                continue
            self._last_ts[tick.symbol] = tick.ts_ns
            sent = time.time_ns() if stamp else None
            pipe.xadd(self._keys.stream(tick.symbol), encode_tick(tick, sent))
            report.accepted += 1
        if len(pipe):
            pipe.execute()
        return report

    def publish_raw(self, symbol: str, fields: Mapping[bytes, bytes]) -> bytes:
        """Append an unchecked payload (adapters that forward foreign data; tests of bad input)."""
        return self._client.xadd(self._keys.stream(symbol), dict(fields))

    def _check(self, tick: Tick, latest_ns: int) -> None:
        if type(tick.symbol) is not str or tick.symbol not in self._symbols:
            raise BadTick("unknown_symbol", f"symbol {short_repr(tick.symbol)} is not traded here")
        validate_tick(tick, self._last_ts.get(tick.symbol), self._bounds, latest_ns)


def _fields_of(tick: Tick) -> dict[bytes, bytes]:
    """A refused tick's fields for its dead letter, whatever it holds (its wire form when it has one)."""
    try:
        return encode_tick(tick)
    except (AttributeError, UnicodeError, ValueError):
        names = ("symbol", "ts_ns", "price", "size", "bid", "ask")
        return {name.encode(): short_repr(getattr(tick, name)).encode("utf-8", "backslashreplace") for name in names}


class TickReader:
    """One consumer of the desks' consumer group over a set of symbol streams.

    The consumer name is stable per shard, so after a crash the restarted
    reader first gets back its own unacknowledged entries (``pending``) before
    it reads new ones.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: TickKeys,
        symbols: Sequence[str],
        group: str = "desks",
        consumer: str = "shard-0",
    ) -> None:
        self._client = client
        self._keys = keys
        self._symbols = list(symbols)
        self.group = group
        self.consumer = consumer
        self.dead_letters = DeadLetters(client, keys)

    def ensure_group(self) -> None:
        """Create the consumer group on every stream (from the start) if it is missing."""
        for symbol in self._symbols:
            try:
                self._client.xgroup_create(
                    self._keys.stream(symbol), self.group, id="0", mkstream=True
                )
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    def pending(self, count: int, symbols: Sequence[str] | None = None) -> Iterator[dict[str, list[StreamEntry]]]:
        """Pages of entries delivered to this consumer earlier and never acknowledged.

        Pages through the whole pending list (``count`` per stream per page),
        so a crashed consumer gets back every tick it had not finished.
        """
        cursors = {self._keys.stream(s): "0" for s in (symbols or self._symbols)}
        while cursors:
            page = self._read(cursors, count, block_ms=None)
            cursors = {
                self._keys.stream(symbol): entries[-1][0].decode()
                for symbol, entries in page.items()
                if len(entries) == count
            }
            if page:
                yield page

    def read(
        self, count: int, block_ms: int, acks: Mapping[str, Sequence[bytes]] | None = None,
        exchange: tuple[SharedBook, ShardBook] | None = None,
    ) -> dict[str, list[StreamEntry]]:
        """New entries for any of the symbols, waiting up to ``block_ms``.

        ``acks`` (symbol -> entry ids whose work is durable) are acknowledged
        in the same round trip, just before the read: a consumer that acks
        what it committed and then waits for more crosses the network once.
        ``exchange`` (the shared book and this shard's figures) rides on that
        round trip too (:meth:`SharedBook.received` takes its replies).
        """
        streams = {self._keys.stream(s): ">" for s in self._symbols}
        if not acks and exchange is None:
            return self._read(streams, count, block_ms)
        pipe = self._client.pipeline(transaction=False)
        queued = 0
        if exchange is not None:
            queued = exchange[0].queue_exchange(pipe, exchange[1])
        for symbol, entry_ids in (acks or {}).items():
            if entry_ids:
                pipe.xack(self._keys.stream(symbol), self.group, *entry_ids)
        pipe.xreadgroup(self.group, self.consumer, streams, count=count, block=block_ms)
        replies = pipe.execute()
        if exchange is not None:
            exchange[0].received(replies[:queued])
        return self._batches(replies[-1])

    def _read(
        self, streams: dict[str, str], count: int, block_ms: int | None
    ) -> dict[str, list[StreamEntry]]:
        reply = self._client.xreadgroup(
            self.group, self.consumer, streams, count=count, block=block_ms
        )
        return self._batches(reply)

    def _batches(self, reply: object) -> dict[str, list[StreamEntry]]:
        batches: dict[str, list[StreamEntry]] = {}
        for stream, entries in _stream_items(reply):
            if entries:
                batches[self._keys.symbol_of(stream)] = entries
        return batches

    def ack(self, acks: Mapping[str, Sequence[bytes]]) -> None:
        """Acknowledge entries (symbol -> entry ids) once the work they caused is durable."""
        pipe = self._client.pipeline(transaction=False)
        for symbol, entry_ids in acks.items():
            if entry_ids:
                pipe.xack(self._keys.stream(symbol), self.group, *entry_ids)
        if len(pipe):
            pipe.execute()

    def reject(self, symbol: str, entry: StreamEntry, error: BadTick, stage: str) -> None:
        """Dead-letter one entry and acknowledge it, atomically."""
        pipe = self._client.pipeline(transaction=True)
        self.dead_letters.add(pipe, symbol, error, entry[1], stage, entry[0])
        pipe.xack(self._keys.stream(symbol), self.group, entry[0])
        pipe.execute()


def _stream_items(reply: object) -> Iterable[tuple[bytes, list[StreamEntry]]]:
    # RESP2 answers a list of [stream, entries]; RESP3 a dict.
    if not reply:
        return ()
    if isinstance(reply, dict):
        return reply.items()
    return ((stream, entries) for stream, entries in reply)  # type: ignore[union-attr]
