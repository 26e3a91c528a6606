"""Tick validation and the stream wire form (pure code, no Redis)."""

import math

import pytest

from edge.ticks import (
    BadTick,
    Tick,
    decode_tick,
    encode_tick,
    parse_tick_id,
    validate_tick,
)

GOOD = Tick("GOOG", 1_000, 101.5, 10.0, 101.4, 101.6)


def test_round_trip_keeps_every_field():
    assert decode_tick("GOOG", encode_tick(GOOD, sent_ns=5)) == GOOD


def test_round_trip_without_quotes():
    tick = Tick("EURUSD", 7, 1.0716, 0.0)
    assert decode_tick("EURUSD", encode_tick(tick)) == tick


@pytest.mark.parametrize(
    "tick, code",
    [
        (Tick("GOOG", 1, math.nan, 1.0), "bad_price"),
        (Tick("GOOG", 1, math.inf, 1.0), "bad_price"),
        (Tick("GOOG", 1, -1.0, 1.0), "bad_price"),
        (Tick("GOOG", 1, 0.0, 1.0), "bad_price"),
        (Tick("GOOG", 1, 1.0, math.nan), "bad_size"),
        (Tick("GOOG", 1, 1.0, -0.5), "bad_size"),
        (Tick("GOOG", 1, 1.0, math.inf), "bad_size"),
        (Tick("GOOG", 1, 1.0, 1.0, bid=math.nan), "bad_quote"),
        (Tick("GOOG", 1, 1.0, 1.0, bid=1.2, ask=1.1), "bad_quote"),
        (Tick("GOOG", -1, 1.0, 1.0), "bad_timestamp"),
    ],
)
def test_bad_values_are_named(tick, code):
    with pytest.raises(BadTick) as caught:
        validate_tick(tick)
    assert caught.value.code == code


def test_time_going_backwards_is_refused_and_equal_time_is_not():
    validate_tick(GOOD, last_ts_ns=GOOD.ts_ns)
    with pytest.raises(BadTick) as caught:
        validate_tick(GOOD, last_ts_ns=GOOD.ts_ns + 1)
    assert caught.value.code == "time_backwards"


@pytest.mark.parametrize(
    "fields",
    [
        {b"sym": b"GOOG", b"ts": b"1", b"px": b"1.0"},
        {b"sym": b"GOOG", b"ts": b"x", b"px": b"1.0", b"sz": b"1"},
        {b"sym": b"GOOG", b"ts": b"1", b"px": b"abc", b"sz": b"1"},
        {b"sym": b"\xff", b"ts": b"1", b"px": b"1", b"sz": b"1"},
    ],
)
def test_malformed_payloads_are_named(fields):
    with pytest.raises(BadTick) as caught:
        decode_tick("GOOG", fields)
    assert caught.value.code in {"malformed", "symbol_mismatch"}


def test_payload_for_another_symbol_is_refused():
    with pytest.raises(BadTick) as caught:
        decode_tick("MSFT", encode_tick(GOOD))
    assert caught.value.code == "symbol_mismatch"


def test_tick_ids_order_numerically():
    assert parse_tick_id(b"10-0") > parse_tick_id(b"9-5")
    with pytest.raises(BadTick):
        parse_tick_id("nope")


@pytest.mark.parametrize("raw", ["²-1", "1-٣", "-1", "1-", "1--2", " 1-2"])
def test_a_stream_id_that_is_not_ascii_digits_is_malformed(raw):
    """str.isdigit() accepts '²' and '٣', which int() refuses: only ASCII digits make an entry id."""
    with pytest.raises(BadTick) as caught:
        parse_tick_id(raw)
    assert caught.value.code == "malformed"
