"""Market ticks: the value object, its validation and its Redis Streams wire form.

A tick is (symbol, timestamp in ns, price, size, optional bid/ask). On the
wire it is a flat map of byte strings in the stream ``ticks:{symbol}``; the
stream entry id Redis assigns is the tick's id, which is what makes decisions
idempotent (entry ids only grow within a stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from glassbox import GlassboxError

__all__ = [
    "BadTick",
    "Tick",
    "TickId",
    "decode_tick",
    "encode_tick",
    "parse_tick_id",
    "sent_ns_of",
    "validate_tick",
]


class BadTick(GlassboxError):
    """A tick that must not reach a decision; ``code`` names the rule it broke.

    Codes: ``malformed``, ``bad_price``, ``bad_size``, ``bad_quote``,
    ``time_backwards``, ``unknown_symbol``, ``symbol_mismatch``, and
    ``processing_failed`` for a tick that repeatedly crashed its desk.
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


TickId = tuple[int, int]
"""A stream entry id ``<ms>-<seq>`` as a comparable pair."""


def parse_tick_id(raw: bytes | str) -> TickId:
    """Turn a Redis stream entry id into a comparable ``(ms, seq)`` pair.

    Raises:
        BadTick: ``malformed`` when the id is not ``<int>-<int>``.
    """
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, sep, seq = text.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit():
        raise BadTick("malformed", f"stream entry id {text!r} is not <ms>-<seq>")
    return int(ms), int(seq)


def validate_tick(tick: Tick, last_ts_ns: int | None = None) -> None:
    """Check a tick's values, and that its time does not go backwards.

    ``last_ts_ns`` is the timestamp of the previous accepted tick of the same
    symbol (equal timestamps are allowed: several prints can share one ns).

    Raises:
        BadTick: with the code of the first rule the tick breaks.
    """
    if not (isinstance(tick.price, float) and math.isfinite(tick.price) and tick.price > 0):
        raise BadTick("bad_price", f"price {tick.price!r} is not a finite positive number")
    if not (isinstance(tick.size, float) and math.isfinite(tick.size) and tick.size >= 0):
        raise BadTick("bad_size", f"size {tick.size!r} is not a finite non-negative number")
    for name, value in (("bid", tick.bid), ("ask", tick.ask)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise BadTick("bad_quote", f"{name} {value!r} is not a finite positive number")
    if tick.bid is not None and tick.ask is not None and tick.bid > tick.ask:
        raise BadTick("bad_quote", f"bid {tick.bid} is above ask {tick.ask}")
    if tick.ts_ns < 0:
        raise BadTick("malformed", f"timestamp {tick.ts_ns} is negative")
    if last_ts_ns is not None and tick.ts_ns < last_ts_ns:
        raise BadTick(
            "time_backwards",
            f"timestamp {tick.ts_ns} is before the previous tick's {last_ts_ns}",
        )


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
    """The producer's wall-clock send time, when the tick carries one."""
    raw = fields.get(b"sent")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None
