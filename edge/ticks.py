"""Market ticks: the value object, its validation and its Redis Streams wire form.

A tick is (symbol, timestamp in ns, price, size, optional bid/ask). On the
wire it is a flat map of byte strings in the stream ``ticks:{symbol}``; the
stream entry id Redis assigns is the tick's id, which is what makes decisions
idempotent (entry ids only grow within a stream).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Mapping

from glassbox import GlassboxError, Settings

__all__ = [
    "INT64_MAX",
    "BadTick",
    "Tick",
    "TickBounds",
    "TickId",
    "decode_tick",
    "encode_tick",
    "parse_tick_id",
    "sent_ns_of",
    "short_repr",
    "validate_tick",
]


class BadTick(GlassboxError):
    """A tick that must not reach a decision; ``code`` names the rule it broke.

    Codes: ``malformed``, ``bad_timestamp`` (outside :class:`TickBounds`' time
    window), ``bad_price``, ``bad_size``, ``bad_quote`` (outside the bounds, not
    finite, or bid above ask), ``time_backwards``, ``unknown_symbol`` (at ingest, or
    swept from a stream no shard reads: :mod:`edge.stray_streams`),
    ``symbol_mismatch``, and ``processing_failed`` for a tick that repeatedly
    crashed its desk or whose decision could not be committed.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade print (or a quote-carrying trade) for one symbol."""

    symbol: str
    ts_ns: int
    price: float
    size: float
    bid: float | None = None
    ask: float | None = None


INT64_MAX = 2**63 - 1
"""The largest timestamp (ns) every later stage holds: events encode it as a signed 64-bit int
(2262-04-11), below both ``datetime``'s and PostgreSQL's ceilings."""


@dataclass(frozen=True, slots=True)
class TickBounds:
    """The values a tick may carry, so that every later stage can hold what follows from it.

    A timestamp must fit an int64 of ns and lie between ``earliest_ns`` and
    ``max_future_s`` past the wall clock: one tick stamped far in the future
    would otherwise be accepted and then make every real tick after it
    ``time_backwards``. Prices (and bid/ask) lie in ``[min_price, max_price]``
    and sizes in ``[0, max_size]``: with the defaults, notional (price × size,
    ≤ 1e27) and a sized quantity (equity / price) stay finite where an
    unbounded price made a decision's quantity NaN or infinite.
    """

    # Defaults: glassbox.Settings' tick_* fields (their one source).
    earliest_ns: int = Settings.tick_earliest_ns
    """No tick before this (ns since 1970; default 1970-01-01: replayed history is old)."""
    max_future_s: float | None = Settings.tick_max_future_s
    """Seconds a tick may be ahead of the wall clock; ``None``: only the int64 ceiling (replayed history)."""
    min_price: float = Settings.tick_min_price
    max_price: float = Settings.tick_max_price
    max_size: float = Settings.tick_max_size

    @classmethod
    def from_settings(cls, settings: Settings) -> TickBounds:
        """The bounds ``GLASSBOX_TICK_*`` chose (parsed in :class:`glassbox.Settings`)."""
        return cls(settings.tick_earliest_ns, settings.tick_max_future_s, settings.tick_min_price,
                   settings.tick_max_price, settings.tick_max_size)

    def for_history(self) -> TickBounds:
        """The same bounds without the wall-clock one: a backtest replays a finished past."""
        return replace(self, max_future_s=None)

    def latest_ns(self, now_ns: int | None = None) -> int:
        """The latest timestamp accepted at wall-clock time ``now_ns`` (now by default)."""
        if self.max_future_s is None:
            return INT64_MAX
        now = time.time_ns() if now_ns is None else now_ns
        return min(INT64_MAX, now + int(self.max_future_s * 1e9))


DEFAULT_BOUNDS = TickBounds()


TickId = tuple[int, int]
"""A stream entry id ``<ms>-<seq>`` as a comparable pair."""


def parse_tick_id(raw: bytes | str) -> TickId:
    """Turn a Redis stream entry id into a comparable ``(ms, seq)`` pair.

    Raises:
        BadTick: ``malformed`` when the id is not ``<int>-<int>``.
    """
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, sep, seq = text.partition("-")
    if not sep or not (ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        raise BadTick("malformed", f"stream entry id {text!r} is not <ms>-<seq>")
    return int(ms), int(seq)


def validate_tick(
    tick: Tick, last_ts_ns: int | None = None, bounds: TickBounds = DEFAULT_BOUNDS, latest_ns: int | None = None,
) -> None:
    """Check a tick's values against ``bounds``, and that its time does not go backwards.

    ``last_ts_ns`` is the timestamp of the previous accepted tick of the same
    symbol (equal timestamps are allowed: several prints can share one ns).
    ``latest_ns`` is ``bounds.latest_ns()`` when the caller checks many ticks
    at once (one clock read per batch); plain comparisons only, as this runs
    on every tick (a NaN fails every comparison, so it is refused too).

    Raises:
        BadTick: with the code of the first rule the tick breaks.
    """
    price, size, bid, ask, ts = tick.price, tick.size, tick.bid, tick.ask, tick.ts_ns
    low, high = bounds.min_price, bounds.max_price
    if type(price) is not float or not low <= price <= high:
        raise BadTick("bad_price", f"price {short_repr(price)} is not a number from {low:g} to {high:g}")
    if type(size) is not float or not 0.0 <= size <= bounds.max_size:
        raise BadTick("bad_size", f"size {short_repr(size)} is not a number from 0 to {bounds.max_size:g}")
    if bid is not None and (type(bid) is not float or not low <= bid <= high):
        raise BadTick("bad_quote", f"bid {short_repr(bid)} is not a number from {low:g} to {high:g}")
    if ask is not None and (type(ask) is not float or not low <= ask <= high):
        raise BadTick("bad_quote", f"ask {short_repr(ask)} is not a number from {low:g} to {high:g}")
    if bid is not None and ask is not None and bid > ask:
        raise BadTick("bad_quote", f"bid {bid} is above ask {ask}")
    latest = bounds.latest_ns() if latest_ns is None else latest_ns
    if type(ts) is not int or not bounds.earliest_ns <= ts <= latest:
        raise BadTick("bad_timestamp", f"timestamp {short_repr(ts)} ns is not from {bounds.earliest_ns} to {latest} "
                                       "(GLASSBOX_TICK_EARLIEST to the wall clock plus GLASSBOX_TICK_MAX_FUTURE_S)")
    if last_ts_ns is not None and ts < last_ts_ns:
        raise BadTick(
            "time_backwards",
            f"timestamp {ts} is before the previous tick's {last_ts_ns}",
        )


def short_repr(value: object) -> str:
    """A short repr for an error message or a dead letter, whatever the value (a huge int has no full repr)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= 60 else text[:57] + "..."


def encode_tick(tick: Tick, sent_ns: int | None = None) -> dict[bytes, bytes]:
    """The stream fields for a tick; ``sent_ns`` (wall clock at XADD) feeds latency metrics."""
    fields = {
        b"sym": tick.symbol.encode(),
        b"ts": str(tick.ts_ns).encode(),
        b"px": repr(tick.price).encode(),
        b"sz": repr(tick.size).encode(),
    }
    if tick.bid is not None:
        fields[b"bid"] = repr(tick.bid).encode()
    if tick.ask is not None:
        fields[b"ask"] = repr(tick.ask).encode()
    if sent_ns is not None:
        fields[b"sent"] = str(sent_ns).encode()
    return fields


def decode_tick(symbol: str, fields: Mapping[bytes, bytes]) -> Tick:
    """Parse stream fields back into a tick of the stream's ``symbol``.

    Only parses; call :func:`validate_tick` for the value rules.

    Raises:
        BadTick: ``malformed`` for missing or unparsable fields,
            ``symbol_mismatch`` when the payload names another symbol.
    """
    try:
        named = fields[b"sym"].decode()
        ts_ns = int(fields[b"ts"])
        price = float(fields[b"px"])
        size = float(fields[b"sz"])
        bid = float(fields[b"bid"]) if b"bid" in fields else None
        ask = float(fields[b"ask"]) if b"ask" in fields else None
    except KeyError as missing:
        raise BadTick("malformed", f"field {missing.args[0]!r} is missing") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BadTick("malformed", f"unparsable field: {error}") from None
    if named != symbol:
        raise BadTick("symbol_mismatch", f"payload names {named!r} on the stream of {symbol!r}")
    return Tick(symbol, ts_ns, price, size, bid, ask)


def sent_ns_of(fields: Mapping[bytes, bytes]) -> int | None:
    """The producer's wall-clock send time, when the tick carries a usable one (ns, int64)."""
    raw = fields.get(b"sent")
    if raw is None:
        return None
    try:
        sent = int(raw)
    except ValueError:
        return None
    return sent if 0 <= sent <= INT64_MAX else None  # latencies are int64 arithmetic
